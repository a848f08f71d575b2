"""How values read on a page: durations, ages, short shas, first lines (Jinja filters)."""

from __future__ import annotations

from datetime import UTC, datetime

FINISHED_STATUSES = frozenset({"success", "failed", "canceled", "skipped"})
STATUSES = (
    "created",
    "pending",
    "scheduled",
    "running",
    "manual",
    "success",
    "failed",
    "canceled",
    "skipped",
)
SOURCES = ("push", "merge_request_event", "api", "web")
STATUS_WORDS = {
    "created": "created",
    "pending": "pending",
    "running": "running",
    "manual": "manual",
    "success": "passed",
    "failed": "failed",
    "canceled": "canceled",
    "skipped": "skipped",
}


def utc(moment: datetime) -> datetime:
    """`moment` as an aware UTC datetime (SQLite gives naive ones)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def seconds_between(start: datetime | None, end: datetime | None, now: datetime) -> float | None:
    """Seconds from `start` to `end` (to `now` while unfinished); None before a start."""
    if start is None:
        return None
    return max(0.0, ((utc(end) if end is not None else now) - utc(start)).total_seconds())


def duration(seconds: float | None) -> str:
    """`1h 02m`, `3m 07s`, `12s`, or an en dash when there is none."""
    if seconds is None:
        return "–"
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


def age(moment: datetime | None, now: datetime) -> str:
    """How long ago `moment` was: `just now`, `5 min ago`, `3 h ago`, `2 days ago`."""
    if moment is None:
        return "–"
    seconds = (now - utc(moment)).total_seconds()
    if seconds < 45:
        return "just now"
    if seconds < 3600:
        return f"{max(1, round(seconds / 60))} min ago"
    if seconds < 86400:
        return f"{round(seconds / 3600)} h ago"
    days = round(seconds / 86400)
    return f"{days} day{'s' if days != 1 else ''} ago"


def iso(moment: datetime | None) -> str:
    """ISO 8601 in UTC (for `datetime` attributes and titles), or empty."""
    return "" if moment is None else utc(moment).isoformat(timespec="seconds")


def first_line(text: str, limit: int = 100) -> str:
    """The first line of a commit message, cut to `limit` characters."""
    line = text.strip().split("\n", 1)[0]
    return line if len(line) <= limit else line[: limit - 1] + "…"


def status_word(status: str) -> str:
    """The word a status is shown as (`success` reads `passed`)."""
    return STATUS_WORDS.get(status, status)


SOURCE_WORDS = {"merge_request_event": "merge request", "parent_pipeline": "parent pipeline"}


def source_word(source: str) -> str:
    """The words a pipeline source is shown as (`merge_request_event` reads `merge request`)."""
    return SOURCE_WORDS.get(source, source)


def web_link(url: str | None) -> str | None:
    """`url` when it is an http(s) address to link to, else None (a pipeline file names an
    environment's URL: `javascript:` and other schemes are shown, never linked)."""
    if url and url.strip().lower().startswith(("http://", "https://")):
        return url.strip()
    return None


def size(count: int) -> str:
    """A byte count as `812 B`, `1.4 kB`, `12.0 MB`."""
    value = float(count)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{count} B"
