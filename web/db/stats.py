"""Counts for `/metrics` and for recovery: pipelines and jobs by status, jobs waiting too long."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from web.db.models import Job, Pipeline
from web.db.schemas import JobRead


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


def recent_job_durations(*, session: Session, limit: int = 10_000) -> list[tuple[str, float]]:
    """(status, seconds from start to finish) of the most recently finished job attempts."""
    rows = session.execute(
        select(Job.status, Job.started_at, Job.finished_at)
        .where(Job.started_at.is_not(None), Job.finished_at.is_not(None))
        .order_by(Job.id.desc())
        .limit(max(1, limit))
    )
    return [
        (status, max(0.0, (finished - started).total_seconds()))
        for status, started, finished in rows
        if started is not None and finished is not None
    ]
