"""Durations as GitLab writes them: "30s", "10m", "1h 30m", "2 hours 5 minutes"."""

from __future__ import annotations

import re

from runner.errors import RunnerError

_UNITS = {
    "s": 1,
    "sec": 1,
    "secs": 1,
    "second": 1,
    "seconds": 1,
    "m": 60,
    "min": 60,
    "mins": 60,
    "minute": 60,
    "minutes": 60,
    "h": 3600,
    "hr": 3600,
    "hrs": 3600,
    "hour": 3600,
    "hours": 3600,
    "d": 86400,
    "day": 86400,
    "days": 86400,
}
_PART = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*", re.IGNORECASE)


def format_duration(seconds: float) -> str:
    """Format seconds like GitLab: 600 -> "10m", 5400 -> "1h 30m", 0.25 -> "0.25s"."""
    if seconds < 60 and seconds != int(seconds):
        return f"{seconds:.2f}".rstrip("0").rstrip(".") + "s"
    total = round(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{v}{u}" for v, u in ((hours, "h"), (minutes, "m"), (secs, "s")) if v]
    return " ".join(parts) or "0s"


def parse_duration(text: str) -> float:
    """Parse "30s", "10m", "1h 30m", "1h30m" or a bare number of seconds; raise RunnerError."""
    stripped = text.strip()
    pos = 0
    total = 0.0
    count = 0
    while pos < len(stripped):
        match = _PART.match(stripped, pos)
        unit = match.group(2).lower() if match else ""
        if match is None or match.end() == pos or (unit and unit not in _UNITS):
            break
        total += float(match.group(1)) * _UNITS.get(unit, 1)
        pos = match.end()
        count += 1
    if count == 0 or pos != len(stripped) or total <= 0:
        raise RunnerError(
            f"cannot read duration {text!r}: write it like 30s, 10m or 1h 30m (a positive duration)"
        )
    return total
