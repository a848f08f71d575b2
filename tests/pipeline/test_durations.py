"""GitLab duration strings (timeout, artifacts: expire_in) parsed to seconds."""

from __future__ import annotations

import pytest

from pipeline.durations import parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("3600", 3600),
        ("10m", 600),
        ("1h 30m", 5400),
        ("1h30m", 5400),
        ("1 hour", 3600),
        ("30 minutes", 1800),
        ("2 days and 4 hours", 2 * 86400 + 4 * 3600),
        ("1 week", 7 * 86400),
        ("1.5h", 5400),
        ("90 sec", 90),
        ("1:30", 5400),
        ("  2H  ", 7200),
    ],
)
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "forever", "1 fortnight", "h", "10 m m", "1:99", "x" * 200])
def test_not_durations(text: str) -> None:
    assert parse_duration(text) is None
