"""Service version names sort in the order the rollouts happened (pruning keeps the newest)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from runner.ship.services import _next_version


def _roll(versions: Path, count: int) -> list[str]:
    made = []
    for _ in range(count):
        name = _next_version(versions)
        (versions / name).mkdir(parents=True)
        made.append(name)
    return made


def test_many_rollouts_in_one_second_sort_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(time, "strftime", lambda _fmt: "20261205135941")
    made = _roll(tmp_path, 40)
    assert made == sorted(made) and len(set(made)) == 40
    assert made[0] == "20261205135941-000000"


def test_a_clock_set_back_still_sorts_after_the_newest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(time, "strftime", lambda _fmt: "20261205135941")
    before = _roll(tmp_path, 2)
    monkeypatch.setattr(time, "strftime", lambda _fmt: "20250101000000")
    after = _roll(tmp_path, 2)
    assert before + after == sorted(before + after)


@pytest.mark.parametrize(
    "existing",
    ["20261205135941-af0842", "20261205135941-ffffff", "20261205135941-zz", "20261205135941"],
)
def test_names_from_older_releases_are_followed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, existing: str
) -> None:
    (tmp_path / existing).mkdir()
    monkeypatch.setattr(time, "strftime", lambda _fmt: "20261205135941")
    following = _roll(tmp_path, 3)
    assert [existing, *following] == sorted([existing, *following])
    assert len(set(following)) == 3


def test_a_later_second_starts_a_new_counter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(time, "strftime", lambda _fmt: "20261205135941")
    _roll(tmp_path, 3)
    monkeypatch.setattr(time, "strftime", lambda _fmt: "20261205135942")
    assert _next_version(tmp_path) == "20261205135942-000000"
