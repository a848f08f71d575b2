"""Durations shown and read the GitLab way: "30s", "10m", "1h 30m" (parsing is `pipeline`'s)."""

from __future__ import annotations

from runner.errors import RunnerError


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
    # Imported here: the `pipeline` package costs ~0.2 s to import, which only --timeout pays.
    from pipeline.durations import parse_seconds

    seconds = parse_seconds(text)
    if seconds is None or seconds <= 0:
        raise RunnerError(
            f"cannot read duration {text!r}: write it like 30s, 10m or 1h 30m (a positive duration)"
        )
    return seconds
