"""Jobs: create a pipeline's jobs, read them, claim one for a worker, move statuses, retry."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from sqlalchemy import ColumnElement, Update, func, select, update
from sqlalchemy.orm import Session

from web.db.clock import database_now, database_now_sql
from web.db.locks import lock_pipeline
from web.db.models import Job, Pipeline
from web.db.schemas import JobCreate, JobRead
from web.db.session import rowcount
from web.db.stats import count_job_end
from web.errors import ConflictError, NotFoundError

FINISHED_STATUSES = frozenset({"success", "failed", "canceled", "skipped"})


def _row(session: Session, job_id: int) -> Job:
    row = session.get(Job, job_id)
    if row is None:
        raise NotFoundError(f"job {job_id} does not exist")
    return row


def create_jobs(*, session: Session, pipeline_id: int, jobs: Sequence[JobCreate]) -> list[JobRead]:
    """Record the jobs of a pipeline (first attempts), returned in the order given."""
    if session.get(Pipeline, pipeline_id) is None:
        raise NotFoundError(f"pipeline {pipeline_id} does not exist")
    now = database_now(session)
    rows = [
        Job(
            pipeline_id=pipeline_id,
            **job.model_dump(),
            queued_at=now if job.status == "pending" else None,
        )
        for job in jobs
    ]
    session.add_all(rows)
    session.flush()
    return [JobRead.model_validate(r) for r in rows]


def get_job(*, session: Session, job_id: int) -> JobRead | None:
    """The job attempt with this id, or None."""
    row = session.get(Job, job_id)
    return None if row is None else JobRead.model_validate(row)


def list_jobs(*, session: Session, pipeline_id: int, include_retried: bool = True) -> list[JobRead]:
    """A pipeline's job attempts in plan order (each job's attempts oldest first)."""
    query = select(Job).where(Job.pipeline_id == pipeline_id)
    if not include_retried:
        query = query.where(Job.retried.is_(False))
    rows = session.scalars(query.order_by(Job.position, Job.attempt))
    return [JobRead.model_validate(r) for r in rows]


def is_cancel_requested(*, session: Session, job_id: int) -> bool:
    """Whether someone asked to cancel this job (what a running job's watcher polls);
    False for an unknown job."""
    return bool(session.scalar(select(Job.cancel_requested).where(Job.id == job_id)))


def claim_job(*, session: Session, job_id: int, worker: str) -> bool:
    """Move a job pending -> running for `worker`, only if it is still pending.

    One compare-and-set UPDATE: of any number of workers claiming the same job at once (a
    redelivered message, two processes), exactly one gets True, on SQLite and PostgreSQL alike.
    """
    now = database_now_sql(session)
    claimed = rowcount(
        session.execute(
            update(Job)
            .where(Job.id == job_id, Job.status == "pending", Job.cancel_requested.is_(False))
            .values(status="running", worker=worker, started_at=now)
        )
    )
    return claimed == 1


def set_job_status(
    *,
    session: Session,
    job_id: int,
    status: str,
    reason: str | None = None,
    exit_code: int | None = None,
    only_from: Collection[str] | None = None,
) -> bool:
    """Move a job to `status` (stamping queue/start/finish); with `only_from`, only from those.

    Returns whether the row changed: a compare-and-set, safe against concurrent writers.
    """
    now = database_now_sql(session)
    values: dict[str, Any] = {"status": status}
    if reason is not None:
        values["reason"] = reason
    if exit_code is not None:
        values["exit_code"] = exit_code
    if status == "pending":
        values["queued_at"] = func.coalesce(Job.queued_at, now)
    elif status == "running":
        values["started_at"] = func.coalesce(Job.started_at, now)
    elif status in FINISHED_STATUSES:
        values["finished_at"] = now
    query = update(Job).where(Job.id == job_id)
    if only_from is not None:
        query = query.where(Job.status.in_(sorted(only_from)))
    if status not in FINISHED_STATUSES or (only_from is not None and "running" not in only_from):
        changed = rowcount(session.execute(query.values(**values)))
    else:
        changed = _end_job(session, job_id, status, query.values(**values))
    if changed == 0:
        _row(session, job_id)  # NotFoundError for an unknown id
    return changed == 1


def _end_job(session: Session, job_id: int, status: str, move: Update) -> int:
    """Run `move` (an end status); an attempt it moves out of `running` counts in the run-time
    histogram (`count_job_end`), once: the move from `running` and the others are two
    compare-and-sets, and a job that started running between them is tried again."""
    while True:
        ended = session.execute(
            move.where(Job.status == "running").returning(Job.started_at, Job.finished_at)
        ).first()
        if ended is not None:
            count_job_end(
                session=session, status=status, started=ended.started_at, finished=ended.finished_at
            )
            return 1
        changed = rowcount(session.execute(move.where(Job.status != "running")))
        if changed or session.scalar(select(Job.status).where(Job.id == job_id)) != "running":
            return changed


def busy_jobs_of_repository(
    *, session: Session, repository_id: int, except_pipeline: int
) -> list[tuple[int, str]]:
    """The current pending and running jobs of the repository's pipelines other than
    `except_pipeline`, as (pipeline id, job name), oldest pipeline first."""
    rows = session.execute(
        select(Job.pipeline_id, Job.name)
        .join(Pipeline, Pipeline.id == Job.pipeline_id)
        .where(
            Pipeline.repository_id == repository_id,
            Pipeline.id != except_pipeline,
            Job.retried.is_(False),
            Job.status.in_(("pending", "running")),
        )
        .order_by(Job.pipeline_id, Job.position)
    )
    return [(pipeline_id, name) for pipeline_id, name in rows]


def _waiting_for(repository_id: int, reason: str) -> tuple[ColumnElement[bool], ...]:
    """The repository's jobs not started (`created`, `scheduled`) whose reason starts with
    `reason` (needs the jobs joined to their pipelines)."""
    return (
        Pipeline.repository_id == repository_id,
        Job.retried.is_(False),
        Job.status.in_(("created", "scheduled")),
        Job.reason.startswith(reason, autoescape=True),
    )


def oldest_pipeline_waiting(*, session: Session, repository_id: int, reason: str) -> int | None:
    """The oldest pipeline of the repository with a job not started (`created`, `scheduled`)
    whose reason starts with `reason` (what it waits for), or None."""
    return session.scalar(
        select(Job.pipeline_id)
        .join(Pipeline, Pipeline.id == Job.pipeline_id)
        .where(*_waiting_for(repository_id, reason))
        .order_by(Job.pipeline_id)
        .limit(1)
    )


def rename_waits(*, session: Session, repository_id: int, reason: str, new_reason: str) -> None:
    """Give every job of the repository not started whose reason starts with `reason` (what
    it waits for) `new_reason` instead (who holds it now).

    Jobs another transaction is changing are left to it (on PostgreSQL, SKIP LOCKED): waiting
    for them could deadlock with it, and it says what they wait for itself once it decides.
    """
    waiting = (
        select(Job.id)
        .join(Pipeline, Pipeline.id == Job.pipeline_id)
        .where(*_waiting_for(repository_id, reason))
        .with_for_update(of=Job, skip_locked=True, key_share=True)
    )
    session.execute(
        update(Job)
        .where(Job.id.in_(waiting.scalar_subquery()))
        .values(reason=new_reason)
        .execution_options(synchronize_session=False)
    )


def set_job_image(*, session: Session, job_id: int, image: str, digest: str | None) -> None:
    """Record the image a job runs in and its digest once resolved."""
    row = _row(session, job_id)
    row.image = image
    row.image_digest = digest
    session.flush()


WAITING_STATUSES = frozenset({"created", "pending", "manual", "scheduled"})


def request_job_cancel(*, session: Session, job_id: int) -> JobRead:
    """Mark an unfinished job for cancelation; one that has not started is canceled at once.

    A running job keeps its status until its worker, which watches `cancel_requested`, stops it.
    A finished job is left as it is.
    """
    row = _row(session, job_id)
    session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status.not_in(sorted(FINISHED_STATUSES)))
        .values(cancel_requested=True)
    )
    set_job_status(
        session=session,
        job_id=job_id,
        status="canceled",
        reason="canceled before it started",
        only_from=WAITING_STATUSES,
    )
    session.refresh(row)
    return JobRead.model_validate(row)


def request_pipeline_cancel(*, session: Session, pipeline_id: int) -> list[JobRead]:
    """Cancel every unfinished current job of a pipeline; returns the running ones, which their
    workers stop (they watch `cancel_requested`)."""
    lock_pipeline(session=session, pipeline_id=pipeline_id)
    current = (Job.pipeline_id == pipeline_id, Job.retried.is_(False))
    session.execute(
        update(Job)
        .where(*current, Job.status.not_in(sorted(FINISHED_STATUSES)))
        .values(cancel_requested=True)
    )
    session.execute(
        update(Job)
        .where(*current, Job.status.in_(sorted(WAITING_STATUSES)))
        .values(
            status="canceled",
            reason="canceled before it started",
            finished_at=database_now_sql(session),
        )
    )
    running = session.scalars(
        select(Job)
        .where(*current, Job.status == "running")
        .order_by(Job.position)
        .execution_options(populate_existing=True)
    )
    return [JobRead.model_validate(r) for r in running]


def retry_job(*, session: Session, job_id: int, status: str = "pending") -> JobRead:
    """A new attempt of a job whose latest attempt is finished; returns the new attempt.

    The pipeline is locked first (`lock_pipeline`), so two concurrent retries of one job make one
    new attempt: the second finds it unfinished and gets ConflictError.
    """
    old = _row(session, job_id)
    lock_pipeline(session=session, pipeline_id=old.pipeline_id)
    latest = session.scalars(
        select(Job)
        .where(Job.pipeline_id == old.pipeline_id, Job.name == old.name)
        .order_by(Job.attempt.desc())
        .limit(1)
        .execution_options(populate_existing=True)
    ).one()
    if latest.status not in FINISHED_STATUSES:
        raise ConflictError(
            f"job {old.name!r} (attempt {latest.attempt}) is {latest.status}; "
            "retry it once it has finished, or cancel it first"
        )
    session.execute(
        update(Job)
        .where(Job.pipeline_id == old.pipeline_id, Job.name == old.name)
        .values(retried=True)
    )
    now = database_now(session)
    new = Job(
        pipeline_id=old.pipeline_id,
        name=old.name,
        stage=old.stage,
        position=old.position,
        status=status,
        when=old.when,
        allow_failure=old.allow_failure,
        attempt=latest.attempt + 1,
        image=old.image,
        tags=list(old.tags),
        queued_at=now if status == "pending" else None,
    )
    session.add(new)
    session.flush()
    return JobRead.model_validate(new)
