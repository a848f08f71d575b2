"""Counts for `/metrics` and for recovery: pipelines and jobs by status, jobs waiting too long,
and the job run-time histogram.

The histogram (`kapal_job_duration_seconds`) is kept in the `job_durations` table as counters
that only grow, one row per end status, so that a scrape reads a handful of rows however many
jobs ran. What counts: a job attempt that moves from `running` to a finished status, once per
such move, with the run time `finished_at - started_at` (GitLab's job duration). Attempts
canceled or skipped before they ran do not count; a retry is a new attempt and counts on its
own; a `trigger:` job reopened by its retried child pipeline counts again when it ends again
(from its first start). The one writer is `web.db.jobs.set_job_status`, which calls
`count_job_end` only when its UPDATE moved the row out of `running`: a repeated report or a
compare-and-set that lost moves nothing and counts nothing.

Lifecycle of a count: `count_job_end` notes it on the session; the session's commit adds it to
the counter row (`INSERT ... ON CONFLICT DO UPDATE SET count = count + n`, safe under
concurrent writers on SQLite and PostgreSQL) as the transaction's last statement, so the hot
counter row is locked only while committing, never while the transaction waits for a pipeline
or repository lock (which could deadlock two job ends); a rollback, of the transaction or of a
savepoint the count was noted in, drops it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import event, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, SessionTransaction

from web.db.models import DURATION_BUCKETS, Job, JobDurations, Pipeline
from web.db.schemas import JobRead

# session.info key of the job ends noted in the session's transaction, not yet written
_NOTED = "kapal.job_ends"


def count_pipelines_by_status(*, session: Session) -> dict[str, int]:
    """How many pipelines are in each status (statuses with none are absent)."""
    rows = session.execute(select(Pipeline.status, func.count()).group_by(Pipeline.status))
    return {status: count for status, count in rows}


def count_jobs_by_status(*, session: Session) -> dict[str, int]:
    """How many current job attempts (not retried ones) are in each status; `pending` is the
    queue depth."""
    rows = session.execute(
        select(Job.status, func.count()).where(Job.retried.is_(False)).group_by(Job.status)
    )
    return {status: count for status, count in rows}


def list_jobs_by_status(
    *,
    session: Session,
    statuses: Collection[str],
    queued_before: datetime | None = None,
    limit: int = 100,
) -> list[JobRead]:
    """Current job attempts in these statuses, oldest first (to re-enqueue after a restart, or
    to find the running jobs of a worker that died); with `queued_before`, only those queued
    before then."""
    query = select(Job).where(Job.status.in_(sorted(statuses)), Job.retried.is_(False))
    if queued_before is not None:
        query = query.where(Job.queued_at < queued_before)
    rows = session.scalars(query.order_by(Job.id).limit(max(1, limit)))
    return [JobRead.model_validate(r) for r in rows]


@dataclass(frozen=True)
class DurationHistogram:
    """The run-time histogram of the job attempts that ended in one status: `buckets` holds
    (upper bound in seconds, attempts that ran at most that long), cumulative; `count` is also
    the `+Inf` bucket."""

    status: str
    buckets: tuple[tuple[int, int], ...]
    count: int
    sum_seconds: float


def bucket_column(bound: int) -> str:
    """The `job_durations` column counting the runs of at most `bound` seconds."""
    return f"le_{bound}"


def count_job_end(
    *, session: Session, status: str, started: datetime | None, finished: datetime | None
) -> None:
    """Count a job attempt that ran from `started` to `finished` and ended `status`; written
    when the session's transaction commits (see the module's docstring). Call it only when the
    attempt's row moved out of `running` in this transaction."""
    seconds = 0.0
    if started is not None and finished is not None:
        seconds = max(0.0, (finished - started).total_seconds())
    owner = session.get_nested_transaction() or session.get_transaction()
    session.info.setdefault(_NOTED, []).append((owner, status, seconds))


def job_duration_histograms(*, session: Session) -> list[DurationHistogram]:
    """The run-time histogram of every end status that has one, by status."""
    rows = session.scalars(select(JobDurations).order_by(JobDurations.status))
    return [
        DurationHistogram(
            status=row.status,
            buckets=tuple((b, int(getattr(row, bucket_column(b)))) for b in DURATION_BUCKETS),
            count=row.count,
            sum_seconds=row.sum_seconds,
        )
        for row in rows
    ]


def _add_to_counters(session: Session, status: str, runs: list[float]) -> None:
    """Add these run times to the status's counter row (made on its first end)."""
    values: dict[str, Any] = {"status": status, "count": len(runs), "sum_seconds": sum(runs)}
    for bound in DURATION_BUCKETS:
        values[bucket_column(bound)] = sum(1 for seconds in runs if seconds <= bound)
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    statement = insert(JobDurations).values(values)
    table = JobDurations.__table__.c
    statement = statement.on_conflict_do_update(
        index_elements=[table.status],
        set_={name: table[name] + statement.excluded[name] for name in values if name != "status"},
    )
    session.execute(statement)


@event.listens_for(Session, "before_commit")
def _write_noted_ends(session: Session) -> None:
    """At the commit of a transaction (not of a savepoint), add its noted job ends to the
    counters, statuses in a fixed order (two committing transactions lock them alike)."""
    if session.in_nested_transaction() or not session.info.get(_NOTED):
        return
    by_status: dict[str, list[float]] = defaultdict(list)
    for _owner, status, seconds in session.info.pop(_NOTED):
        by_status[status].append(seconds)
    for status in sorted(by_status):
        _add_to_counters(session, status, by_status[status])


def _within(transaction: SessionTransaction | None, outer: SessionTransaction) -> bool:
    while transaction is not None:
        if transaction is outer:
            return True
        transaction = transaction.parent
    return False


@event.listens_for(Session, "after_soft_rollback")
def _drop_noted_ends(session: Session, previous_transaction: SessionTransaction) -> None:
    """A transaction or savepoint rolled back: forget the job ends noted inside it."""
    noted = session.info.get(_NOTED)
    if noted:
        session.info[_NOTED] = [n for n in noted if not _within(n[0], previous_transaction)]


@event.listens_for(Session, "after_transaction_end")
def _forget_noted_ends(session: Session, transaction: SessionTransaction) -> None:
    """The outermost transaction ended however (committed, rolled back, closed): nothing it
    noted is left for the session's next one."""
    if transaction.parent is None:
        session.info.pop(_NOTED, None)
