"""Sizes as `docker run --memory` writes them: "256m", "1g", "512k", "1048576"."""

from __future__ import annotations

import re

from runner.errors import RunnerError

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([bkmgt]?)(?:i?b)?\s*$", re.IGNORECASE)
_FACTORS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(text: str, *, what: str = "size") -> int:
    """Parse a byte size with an optional b/k/m/g/t suffix (powers of 1024); raise RunnerError."""
    match = _SIZE.match(text)
    if match is None:
        raise RunnerError(f"{what} {text!r} is not a size: write it like 256m, 1g or 512k")
    value = int(float(match.group(1)) * _FACTORS[match.group(2).lower()])
    if value <= 0:
        raise RunnerError(f"{what} {text!r} must be more than zero")
    return value
