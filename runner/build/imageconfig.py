"""The image config a build writes, field by field as Docker writes it."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

__all__ = ["DEFAULT_PATH", "go_duration_ns", "history_entry", "rfc3339"]

DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 10**9, "m": 60 * 10**9}
_UNITS["h"] = 3600 * 10**9


def rfc3339(epoch: int) -> str:
    """`epoch` as the RFC 3339 UTC timestamp Docker writes in `created`."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def history_entry(epoch: int, created_by: str, *, empty: bool) -> dict[str, Any]:
    """One `history` item; `empty_layer` is set for steps that produced no layer."""
    entry: dict[str, Any] = {
        "created": rfc3339(epoch),
        "created_by": created_by,
        "comment": "buildkit.dockerfile.v0",
    }
    if empty:
        entry["empty_layer"] = True
    return entry


def go_duration_ns(text: str) -> int:
    """Parse a Go duration ("30s", "1m30s", "500ms") into nanoseconds; ValueError if malformed."""
    text = text.strip()
    if text == "0":
        return 0
    pos, total = 0, 0.0
    while pos < len(text):
        match = _DURATION_PART.match(text, pos)
        if not match:
            raise ValueError(f"'{text}' is not a duration like 30s, 1m30s or 500ms")
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if not text:
        raise ValueError("empty duration")
    return int(total)
