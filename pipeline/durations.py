"""Durations as GitLab writes them: "1h 30m", "10 minutes", "3600", "2 days and 4 hours"."""

from __future__ import annotations

import re

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
    "w": 604800,
    "wk": 604800,
    "week": 604800,
    "weeks": 604800,
    "mo": 2592000,
    "month": 2592000,
    "months": 2592000,
    "y": 31536000,
    "yr": 31536000,
    "year": 31536000,
    "years": 31536000,
}
_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([a-z]*)")
_SEPARATORS = re.compile(r"\s*(?:,|\band\b)?\s*")


def parse_duration(text: str) -> int | None:
    """Whole seconds in a GitLab duration (a bare number is seconds), or None when it is not one."""
    seconds = parse_seconds(text)
    return None if seconds is None else int(seconds)


def parse_seconds(text: str) -> float | None:
    """Seconds in a GitLab duration, fractions kept ("0.5s"), or None when it is not one."""
    cleaned = text.strip().lower()
    if not cleaned or len(cleaned) > 100:
        return None
    if re.fullmatch(r"\d+", cleaned):
        return float(cleaned)
    if m := re.fullmatch(r"(\d+):([0-5]\d)(?::([0-5]\d))?", cleaned):
        hours, minutes, seconds = int(m[1]), int(m[2]), int(m[3] or 0)
        return float(hours * 3600 + minutes * 60 + seconds)
    total = 0.0
    pos = 0
    found = False
    while pos < len(cleaned):
        sep = _SEPARATORS.match(cleaned, pos)
        if sep and sep.end() > pos:
            pos = sep.end()
            continue
        part = _PART.match(cleaned, pos)
        if not part or part.end() == pos:
            return None
        unit = part[2] or "s"
        if unit not in _UNITS:
            return None
        total += float(part[1]) * _UNITS[unit]
        found = True
        pos = part.end()
    return total if found else None
