"""Child pipelines in the database: a `trigger:` job started, the pipelines it started.

A trigger job runs on no worker: `start_trigger_job` moves it to `running` with `worker`
`DOWNSTREAM_WORKER` (a compare-and-set, as `claim_job`), and its child pipeline is recorded
beside it (`create_child_pipeline`, `pipelines.parent_job_id`); the child's end decides the
job's (`web.orchestration`). The sweep of lost workers leaves such jobs alone.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from web.db.clock import database_now_sql
from web.db.models import Job, Pipeline
from web.db.pipelines import FINISHED_STATUSES, create_pipeline
from web.db.schemas import PipelineCreate, PipelineRead
from web.db.session import rowcount

__all__ = [
    "CHILD_SOURCE",
    "DOWNSTREAM_WORKER",
    "PLAN_SENT_AGAIN",
    "child_pipelines",
    "create_child_pipeline",
    "pipeline_depth",
    "start_trigger_job",
    "stuck_children",
    "unfinished_children",
    "wait_again_for_child",
]

DOWNSTREAM_WORKER = "downstream"
"""The `worker` of a running `trigger:` job: no worker runs it, its child pipeline ends it. Never
a worker's name (those are `kapal@host.pid`)."""
CHILD_SOURCE = "parent_pipeline"


def start_trigger_job(*, session: Session, job_id: int, from_statuses: Collection[str]) -> bool:
    """Move a trigger job to `running` under `DOWNSTREAM_WORKER`, only from `from_statuses` and
    when no one asked to cancel it; whether it moved (of two callers at once, one gets True)."""
    now = database_now_sql(session)
    moved = rowcount(
        session.execute(
            update(Job)
            .where(
                Job.id == job_id,
                Job.status.in_(sorted(from_statuses)),
                Job.cancel_requested.is_(False),
            )
            .values(
                status="running",
                worker=DOWNSTREAM_WORKER,
                queued_at=func.coalesce(Job.queued_at, now),
                started_at=now,
            )
        )
    )
    return moved == 1


def wait_again_for_child(*, session: Session, job_id: int) -> bool:
    """Move a finished trigger job (its child pipeline was retried) back to `running` under
    `DOWNSTREAM_WORKER`, its end and exit code cleared and its start now (its duration is the
    retried child's wait, not the pause before it); whether it moved. Only the current attempt
    moves, and only when no one asked to cancel it."""
    now = database_now_sql(session)
    moved = rowcount(
        session.execute(
            update(Job)
            .where(
                Job.id == job_id,
                Job.status.in_(sorted(FINISHED_STATUSES)),
                Job.worker == DOWNSTREAM_WORKER,
                Job.retried.is_(False),
                Job.cancel_requested.is_(False),
            )
            .values(status="running", reason="", exit_code=None, started_at=now, finished_at=None)
        )
    )
    return moved == 1


def create_child_pipeline(*, session: Session, parent: PipelineRead, job_id: int) -> PipelineRead:
    """Record (status `created`) the child pipeline trigger job `job_id` of `parent` starts:
    the parent's repository, commit and ref, source `parent_pipeline`."""
    return create_pipeline(
        session=session,
        new=PipelineCreate(
            repository_id=parent.repository_id,
            source=CHILD_SOURCE,
            ref=parent.ref,
            tag=parent.tag,
            sha=parent.sha,
            before_sha=parent.before_sha,
            message=parent.message,
            author_name=parent.author_name,
            author_email=parent.author_email,
            trigger=parent.trigger,
            parent_job_id=job_id,
        ),
    )


def child_pipelines(*, session: Session, job_ids: Sequence[int]) -> dict[int, int]:
    """The child pipeline each of these trigger job attempts started: job id -> pipeline id."""
    if not job_ids:
        return {}
    rows = session.execute(
        select(Pipeline.parent_job_id, Pipeline.id).where(Pipeline.parent_job_id.in_(job_ids))
    )
    return {job_id: pipeline_id for job_id, pipeline_id in rows if job_id is not None}


def unfinished_children(
    *,
    session: Session,
    pipeline_id: int,
    job_ids: Collection[int] | None = None,
    stopping: bool = False,
) -> list[int]:
    """The unfinished child pipelines started by the trigger jobs of `pipeline_id`, oldest
    first: those of `job_ids` only, when given; with `stopping`, those whose trigger job still
    runs and was asked to cancel."""
    query = (
        select(Pipeline.id)
        .join(Job, Job.id == Pipeline.parent_job_id)
        .where(Job.pipeline_id == pipeline_id, Pipeline.status.not_in(sorted(FINISHED_STATUSES)))
    )
    if job_ids is not None:
        query = query.where(Job.id.in_(sorted(job_ids)))
    if stopping:
        query = query.where(
            Job.cancel_requested.is_(True),
            Job.status == "running",
            Job.worker == DOWNSTREAM_WORKER,
        )
    return list(session.scalars(query.order_by(Pipeline.id)))


def pipeline_depth(*, session: Session, pipeline: PipelineRead, limit: int = 10) -> int:
    """How many levels below its first pipeline `pipeline` is (0: not a child pipeline)."""
    depth = 0
    job_id = pipeline.parent_job_id
    while job_id is not None and depth < limit:
        depth += 1
        job_id = session.scalar(
            select(Pipeline.parent_job_id)
            .join(Job, Job.pipeline_id == Pipeline.id)
            .where(Job.id == job_id)
        )
    return depth


PLAN_SENT_AGAIN = "its plan request sent again"


def stuck_children(
    *, session: Session, before: datetime, once: bool = False
) -> tuple[list[int], list[int]]:
    """What a lost message may have left (see `web.orchestration.recover_children`): child
    pipelines still `created` since before `before` (with `once`, those not sent again yet,
    now marked sent: of several callers at once, one gets each), and the child pipelines that
    finished while their trigger job still runs."""
    query = select(Pipeline.id).where(
        Pipeline.parent_job_id.is_not(None),
        Pipeline.status == "created",
        Pipeline.created_at < before,
    )
    if once:
        query = query.where(Pipeline.reason != PLAN_SENT_AGAIN)
    created = list(session.scalars(query.order_by(Pipeline.id)))
    if once:
        created = [
            child
            for child in created
            if rowcount(
                session.execute(
                    update(Pipeline)
                    .where(
                        Pipeline.id == child,
                        Pipeline.status == "created",
                        Pipeline.reason != PLAN_SENT_AGAIN,
                    )
                    .values(reason=PLAN_SENT_AGAIN)
                )
            )
            == 1
        ]
    ended = list(
        session.scalars(
            select(Pipeline.id)
            .join(Job, Job.id == Pipeline.parent_job_id)
            .where(
                Job.status == "running",
                Job.worker == DOWNSTREAM_WORKER,
                Pipeline.status.in_(sorted(FINISHED_STATUSES)),
            )
            .order_by(Pipeline.id)
        )
    )
    return created, ended
