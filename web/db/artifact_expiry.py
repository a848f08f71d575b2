"""Artifact expiry in the database: when a job attempt's artifacts expire, which are due, and the
claim that lets one sweep (of any number racing) remove them.

    stamp_artifacts_expiry   at a job attempt's end, in the transaction that ends it: its
                             artifacts expire `seconds` from now (None: never)
    due_artifacts            attempts whose artifacts are past their time, in finished pipelines
                             whose ancestors are finished too, and not of the latest successful
                             pipeline of their (repository, ref), which keeps its artifacts
    claim_expired            compare-and-set kept -> expired: True for exactly one claimant
    release_claim            expired -> kept again, when removing the files failed
    expired_artifacts_of     what a download of expired artifacts is answered with
    expired_local_names      (pipeline, job) whose every attempt's artifacts expired: a tree of
                             them left on a worker's own disk may go

Times are the database's (`web.db.clock`): workers on machines whose clocks differ agree on what
is due.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import exists, func, select, update
from sqlalchemy.orm import Session, aliased

from web.db.clock import database_now, database_now_sql
from web.db.models import Artifact, Job, Pipeline
from web.db.session import rowcount

FINISHED_PIPELINES = ("success", "failed", "canceled", "skipped")
MAX_ANCESTORS = 16  # a chain of parent pipelines longer than this is not followed further


@dataclass(frozen=True)
class DueArtifacts:
    """A job attempt whose artifacts are due to go; `owner`: the store's tree of its job holds
    this attempt's files (it is the latest attempt of its job that kept artifacts), so removing
    them is this claim's to do."""

    job_id: int
    pipeline_id: int
    name: str
    owner: bool


def stamp_artifacts_expiry(
    *, session: Session, job_id: int, seconds: int | None
) -> datetime | None:
    """Have the attempt's artifacts expire `seconds` from now, its end (None: never), when it
    recorded any; returns the time set (None too when it kept none)."""
    if session.scalar(select(Artifact.id).where(Artifact.job_id == job_id).limit(1)) is None:
        return None
    expire_at = None if seconds is None else database_now(session) + timedelta(seconds=seconds)
    session.execute(
        update(Job)
        .where(Job.id == job_id)
        .values(artifacts_expire_at=expire_at)
        .execution_options(synchronize_session=False)
    )
    session.execute(
        update(Artifact)
        .where(Artifact.job_id == job_id)
        .values(expire_at=expire_at)
        .execution_options(synchronize_session=False)
    )
    return expire_at


def due_artifacts(
    *, session: Session, after: int = 0, limit: int = 200
) -> tuple[list[DueArtifacts], int | None]:
    """Of the next `limit` attempts (by id, after `after`) whose artifacts are past their time,
    those that may go (see the module docstring), and the last id looked at (None: no more)."""
    candidates = _candidates(session, after, limit)
    last = candidates[-1][0] if candidates else None
    return _select_due(session, candidates), last


def _candidates(session: Session, after: int, limit: int) -> list[tuple[int, int, str]]:
    rows = session.execute(
        select(Job.id, Job.pipeline_id, Job.name)
        .where(
            Job.artifacts_expired.is_(False),
            Job.artifacts_expire_at.is_not(None),
            Job.artifacts_expire_at <= database_now_sql(session),
            Job.id > after,
        )
        .order_by(Job.id)
        .limit(limit)
    ).all()
    return [(job_id, pipeline_id, name) for job_id, pipeline_id, name in rows]


def _select_due(session: Session, candidates: Sequence[tuple[int, int, str]]) -> list[DueArtifacts]:
    """Of (job id, pipeline id, name) past their time, those that may go, in the order given."""
    kept: dict[int, bool] = {}
    for pipeline_id in {pipeline_id for _, pipeline_id, _ in candidates}:
        kept[pipeline_id] = _keeps_artifacts(session, pipeline_id)
    owners = _owners(session, {(p, n) for _, p, n in candidates if not kept[p]})
    return [
        DueArtifacts(job_id, pipeline_id, name, owners.get((pipeline_id, name)) == job_id)
        for job_id, pipeline_id, name in candidates
        if not kept[pipeline_id]
    ]


def _keeps_artifacts(session: Session, pipeline_id: int) -> bool:
    """Whether the pipeline's artifacts stay whatever their time: it or a parent pipeline is
    not finished (a later job, or a child's `include: artifact`, may still read them), or its
    top pipeline is the latest successful one of its (repository, ref)."""
    current: int | None = pipeline_id
    top = None
    for _ in range(MAX_ANCESTORS):
        if current is None:
            break
        row = session.execute(
            select(Pipeline.id, Pipeline.repository_id, Pipeline.ref, Pipeline.status)
            .add_columns(Job.pipeline_id)
            .outerjoin(Job, Job.id == Pipeline.parent_job_id)
            .where(Pipeline.id == current)
        ).first()
        if row is None:
            return False  # deleted meanwhile: nothing to keep
        if row.status not in FINISHED_PIPELINES:
            return True
        top, current = row, row.pipeline_id
    if top is None or current is not None:
        return True  # a chain too long to follow: kept, rather than guessed
    if top.status != "success":
        return False
    newer = aliased(Pipeline)
    return not session.scalar(
        select(
            exists().where(
                newer.repository_id == top.repository_id,
                newer.ref == top.ref,
                newer.status == "success",
                newer.parent_job_id.is_(None),
                newer.id > top.id,
            )
        )
    )


def _owners(session: Session, jobs: Iterable[tuple[int, str]]) -> dict[tuple[int, str], int]:
    """For each (pipeline, job name): its latest attempt that recorded artifacts."""
    wanted = set(jobs)
    if not wanted:
        return {}
    rows = session.execute(
        select(Job.pipeline_id, Job.name, func.max(Job.id))
        .join(Artifact, Artifact.job_id == Job.id)
        .where(Job.pipeline_id.in_(sorted({p for p, _ in wanted})))
        .group_by(Job.pipeline_id, Job.name)
    ).all()
    return {(p, n): job_id for p, n, job_id in rows if (p, n) in wanted}


def claim_expired(*, session: Session, job_id: int) -> bool:
    """Mark the attempt's artifacts expired if they still are kept, past their time, and its
    pipeline finished: a compare-and-set, True for exactly one of any number of sweeps."""
    finished = select(Pipeline.id).where(Pipeline.status.in_(FINISHED_PIPELINES))
    changed = rowcount(
        session.execute(
            update(Job)
            .where(
                Job.id == job_id,
                Job.artifacts_expired.is_(False),
                Job.artifacts_expire_at <= database_now_sql(session),
                Job.pipeline_id.in_(finished.scalar_subquery()),
            )
            .values(artifacts_expired=True)
            .execution_options(synchronize_session=False)
        )
    )
    return changed == 1


def release_claim(*, session: Session, job_id: int) -> None:
    """Mark the attempt's artifacts kept again (their removal failed: a later sweep retries)."""
    session.execute(
        update(Job)
        .where(Job.id == job_id)
        .values(artifacts_expired=False)
        .execution_options(synchronize_session=False)
    )


def expired_artifacts_of(
    *, session: Session, job_id: int
) -> tuple[str, datetime | None, dict[str, Any] | None] | None:
    """The name, expiry time and pipeline plan of the attempt when its artifacts expired; None
    when they have not."""
    row = session.execute(
        select(Job.name, Job.artifacts_expire_at, Pipeline.plan)
        .join(Pipeline, Pipeline.id == Job.pipeline_id)
        .where(Job.id == job_id, Job.artifacts_expired.is_(True))
    ).first()
    return None if row is None else (row[0], row[1], row[2])


def expired_local_names(*, session: Session, pipeline_ids: Sequence[int]) -> list[tuple[int, str]]:
    """(pipeline id, job name) of these pipelines whose latest attempt that kept artifacts has
    had them expire: the trees of those jobs on any machine may go."""
    if not pipeline_ids:
        return []
    latest = (
        select(func.max(Job.id))
        .join(Artifact, Artifact.job_id == Job.id)
        .where(Job.pipeline_id.in_(list(pipeline_ids)))
        .group_by(Job.pipeline_id, Job.name)
    )
    rows = session.execute(
        select(Job.pipeline_id, Job.name).where(
            Job.id.in_(latest.scalar_subquery()), Job.artifacts_expired.is_(True)
        )
    ).all()
    return sorted((pipeline_id, name) for pipeline_id, name in rows)
