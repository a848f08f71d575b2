"""Pipelines: record, read, list with cursor pagination, change status, lock for advancing."""

from __future__ import annotations

from typing import Any

from pydantic import TypeAdapter
from sqlalchemy import func, literal, select, update
from sqlalchemy.orm import Session, aliased

from pipeline.plan import Plan
from web.db.jobs import create_jobs
from web.db.locks import lock_pipeline
from web.db.models import Job, Pipeline, Repository, UTCDateTime, utcnow
from web.db.paging import MAX_PAGE, decode_cursor
from web.db.schemas import JobCreate, JobRead, Page, PipelineCreate, PipelineDetail, PipelineRead
from web.db.session import rowcount
from web.errors import NotFoundError

__all__ = [
    "create_pipeline",
    "delete_pipeline",
    "get_pipeline",
    "get_pipeline_detail",
    "get_pipeline_plan",
    "latest_pipeline",
    "latest_pipelines",
    "list_pipelines",
    "lock_pipeline",
    "record_plan",
    "set_pipeline_plan",
    "set_pipeline_status",
]

FINISHED_STATUSES = frozenset({"success", "failed", "canceled", "skipped"})


def _row(session: Session, pipeline_id: int) -> Pipeline:
    row = session.get(Pipeline, pipeline_id)
    if row is None:
        raise NotFoundError(f"pipeline {pipeline_id} does not exist")
    return row


def create_pipeline(*, session: Session, new: PipelineCreate) -> PipelineRead:
    """Record a pipeline (status `created` unless given); its jobs come with `create_jobs`."""
    row = Pipeline(**new.model_dump())
    if row.status in FINISHED_STATUSES:
        row.finished_at = utcnow()
    session.add(row)
    session.flush()
    return PipelineRead.model_validate(row)


def delete_pipeline(*, session: Session, pipeline_id: int) -> bool:
    """Delete a pipeline with its jobs and logs (a trigger that gave none); False when unknown."""
    row = session.get(Pipeline, pipeline_id)
    if row is None:
        return False
    session.delete(row)
    session.flush()
    return True


def get_pipeline(*, session: Session, pipeline_id: int) -> PipelineRead | None:
    """The pipeline with this id, or None."""
    row = session.get(Pipeline, pipeline_id)
    return None if row is None else PipelineRead.model_validate(row)


def get_pipeline_detail(*, session: Session, pipeline_id: int) -> PipelineDetail | None:
    """The pipeline with every job attempt, in plan order, or None.

    One statement, so one snapshot: on PostgreSQL each statement of a READ COMMITTED
    transaction sees the database anew, and a pipeline read apart from its jobs could show
    them finished while it still runs.
    """
    child, by_job = aliased(Pipeline), aliased(Job)
    # the child pipeline a `trigger:` job started, and the parent of a child pipeline
    downstream = (
        select(child.id)
        .where(child.parent_job_id == Job.id)
        .order_by(child.id.desc())
        .limit(1)
        .correlate(Job)
        .scalar_subquery()
    )
    parent = (
        select(by_job.pipeline_id)
        .where(by_job.id == Pipeline.parent_job_id)
        .correlate(Pipeline)
        .scalar_subquery()
    )
    rows = session.execute(
        select(Pipeline, parent, Job, downstream)
        .outerjoin(Job, Job.pipeline_id == Pipeline.id)
        .where(Pipeline.id == pipeline_id)
        .order_by(Job.position, Job.attempt)
    ).all()
    if not rows:
        return None
    row, parent_id = rows[0][0], rows[0][1]
    jobs = [_job_read(job, child_id) for _, _, job, child_id in rows if job is not None]
    return PipelineDetail(
        **PipelineRead.model_validate(row).model_dump(), jobs=jobs, parent_pipeline_id=parent_id
    )


def _job_read(job: Job, downstream: int | None) -> JobRead:
    read = JobRead.model_validate(job)
    if downstream is None:
        return read
    return read.model_copy(update={"downstream_pipeline_id": downstream})


def get_pipeline_plan(*, session: Session, pipeline_id: int) -> dict[str, Any] | None:
    """The Plan JSON the pipeline ran (None before planning or when planning failed)."""
    return _row(session, pipeline_id).plan


def set_pipeline_plan(*, session: Session, pipeline_id: int, plan: dict[str, Any]) -> None:
    """Store the Plan JSON a pipeline runs."""
    _row(session, pipeline_id).plan = plan
    session.flush()


def record_plan(*, session: Session, pipeline_id: int, plan: Plan) -> list[JobRead]:
    """Store the Plan a pipeline runs and a job row for each of its jobs, in plan order.

    Jobs the plan leaves out are `skipped` with its reason; the others are `created`, for the
    scheduler to move on (pending, manual...). Returns the jobs as recorded.
    """
    set_pipeline_plan(session=session, pipeline_id=pipeline_id, plan=plan.to_dict())
    return create_jobs(
        session=session,
        pipeline_id=pipeline_id,
        jobs=[
            JobCreate(
                name=job.name,
                stage=job.stage,
                position=position,
                status="created" if job.runs else "skipped",
                reason=job.skip_reason or "",
                when=job.when,
                allow_failure=job.allow_failure,
                image=job.image.name if job.image is not None else None,
                tags=list(job.tags),
            )
            for position, job in enumerate(plan.jobs)
        ],
    )


# The columns a listed pipeline shows: PipelineRead's, never the plan (kilobytes of JSON each)
_LISTED = tuple(Pipeline.__table__.c[name] for name in PipelineRead.model_fields)
_LISTED_ROWS: TypeAdapter[list[PipelineRead]] = TypeAdapter(list[PipelineRead])


def list_pipelines(
    *,
    session: Session,
    repository_id: int | None = None,
    ref: str | None = None,
    status: str | None = None,
    source: str | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> Page[PipelineRead]:
    """Pipelines newest first, filtered; pass `next_cursor` back as `cursor` for the next page.

    One statement whatever the page size: the listed columns only (a Core select, no ORM rows),
    `id < cursor` for the page after a cursor, read from an index on the filters and id
    (`ix_pipelines_*`, revisions 0001 and 0004) and stopped after `limit` + 1 rows.
    """
    limit = max(1, min(limit, MAX_PAGE))
    query = select(*_LISTED)
    if repository_id is not None:
        query = query.where(Pipeline.repository_id == repository_id)
    if ref is not None:
        query = query.where(Pipeline.ref == ref)
    if status is not None:
        query = query.where(Pipeline.status == status)
    if source is not None:
        query = query.where(Pipeline.source == source)
    if cursor is not None:
        query = query.where(Pipeline.id < decode_cursor(cursor))
    rows = session.execute(query.order_by(Pipeline.id.desc()).limit(limit + 1)).all()
    more = len(rows) > limit
    items = _LISTED_ROWS.validate_python([row._asdict() for row in rows[:limit]])
    return Page[PipelineRead](items=items, next_cursor=str(items[-1].id) if more else None)


def latest_pipeline(
    *, session: Session, repository_id: int, ref: str | None = None
) -> PipelineRead | None:
    """The newest pipeline of a repository (of one branch or tag when `ref` is given)."""
    page = list_pipelines(session=session, repository_id=repository_id, ref=ref, limit=1)
    return page.items[0] if page.items else None


def latest_pipelines(*, session: Session) -> dict[int, PipelineRead]:
    """Each repository's newest pipeline, by repository id (none for a repository without any).

    One statement for any number of repositories: per repository, the highest pipeline id (the
    newest, as `list_pipelines` orders them) read from the index on (repository_id, id), then
    that pipeline's listed columns.
    """
    other = aliased(Pipeline)
    newest = (
        select(func.max(other.id))
        .where(other.repository_id == Repository.id)
        .correlate(Repository)
        .scalar_subquery()
    )
    query = select(*_LISTED).select_from(Repository).join(Pipeline, Pipeline.id == newest)
    items = _LISTED_ROWS.validate_python([row._asdict() for row in session.execute(query)])
    return {item.repository_id: item for item in items}


def set_pipeline_status(
    *,
    session: Session,
    pipeline_id: int,
    status: str,
    reason: str | None = None,
    only_from: frozenset[str] | set[str] | None = None,
) -> bool:
    """Move a pipeline to `status` (stamping start/finish); with `only_from`, only from those.

    Returns whether the row changed: a compare-and-set, safe against concurrent writers.
    """
    now = utcnow()
    values: dict[str, Any] = {"status": status}
    if reason is not None:
        values["reason"] = reason
    query = update(Pipeline).where(Pipeline.id == pipeline_id)
    if only_from is not None:
        query = query.where(Pipeline.status.in_(sorted(only_from)))
    if status == "running":
        # the first start only: a retried pipeline keeps its original start
        values["started_at"] = func.coalesce(Pipeline.started_at, literal(now, UTCDateTime()))
        values["finished_at"] = None
    elif status in FINISHED_STATUSES:
        values["finished_at"] = now
    changed = rowcount(session.execute(query.values(**values)))
    if changed == 0 and session.get(Pipeline, pipeline_id) is None:
        raise NotFoundError(f"pipeline {pipeline_id} does not exist")
    return bool(changed)
