"""Job logs: append lines in chunks, read the lines after an offset (an index range scan)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from web.db.models import Job, LogChunk
from web.db.schemas import LogSlice
from web.db.session import rowcount
from web.errors import NotFoundError

# How many chunks one read fetches at most: bounds the memory of a reader of a huge log.
MAX_CHUNKS_PER_READ = 256


def append_log(*, session: Session, job_id: int, lines: Sequence[str]) -> int:
    """Append lines (without their newlines) to a job's log; returns the log's line count after.

    The job row's counter is bumped first, in the same transaction: concurrent appenders to one
    job are serialised by its row lock (PostgreSQL) or the write lock (SQLite), never interleaved.
    """
    # a line holding "\n" would shift every later line number: split it
    flat = [part for line in lines for part in line.split("\n")]
    if not flat:
        job = session.get(Job, job_id)
        if job is None:
            raise NotFoundError(f"job {job_id} does not exist")
        return job.log_lines
    if not rowcount(
        session.execute(
            update(Job)
            .where(Job.id == job_id)
            .values(log_lines=Job.log_lines + len(flat))
            .execution_options(synchronize_session=False)
        )
    ):
        raise NotFoundError(f"job {job_id} does not exist")
    end = session.scalar(
        select(Job.log_lines).where(Job.id == job_id).execution_options(populate_existing=True)
    )
    assert end is not None
    session.add(
        LogChunk(
            job_id=job_id, first_line=end - len(flat), end_line=end, text="\n".join(flat) + "\n"
        )
    )
    session.flush()
    return end


def read_log(
    *, session: Session, job_id: int, offset: int = 0, limit: int | None = None
) -> LogSlice:
    """Lines from `offset` (0-based) on, at most `limit`; `next_offset` is where to continue."""
    offset = max(offset, 0)
    query = (
        select(LogChunk.first_line, LogChunk.text)
        .where(LogChunk.job_id == job_id, LogChunk.end_line > offset)
        .order_by(LogChunk.end_line)
        .limit(MAX_CHUNKS_PER_READ)
    )
    lines: list[str] = []
    for first_line, text in session.execute(query):
        chunk = text.split("\n")[:-1]
        start = max(offset + len(lines) - first_line, 0)
        lines.extend(chunk[start:])
        if limit is not None and len(lines) >= limit:
            lines = lines[:limit]
            break
    return LogSlice(offset=offset, lines=lines, next_offset=offset + len(lines))


def log_line_count(*, session: Session, job_id: int) -> int:
    """How many lines a job's log holds."""
    count = session.scalar(select(Job.log_lines).where(Job.id == job_id))
    if count is None:
        raise NotFoundError(f"job {job_id} does not exist")
    return count
