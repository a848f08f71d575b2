"""Serialising whoever changes one pipeline (its jobs' next steps, retries, cancelation), or
what a repository's pipelines share (its `resource_group`s)."""

from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.orm import Session

from web.db.models import Pipeline, Repository
from web.db.session import rowcount
from web.errors import NotFoundError


def lock_pipeline(*, session: Session, pipeline_id: int) -> None:
    """Hold the pipeline until the transaction ends: others locking it wait until then.

    A write to the pipeline row: on PostgreSQL it holds the row lock, on SQLite the database's
    write lock, so two workers finishing jobs of one pipeline decide the next jobs one at a time
    and each reads what the other committed.
    """
    changed = rowcount(
        session.execute(
            update(Pipeline)
            .where(Pipeline.id == pipeline_id)
            .values(lock_version=Pipeline.lock_version + 1)
            .execution_options(synchronize_session=False)
        )
    )
    if not changed:
        raise NotFoundError(f"pipeline {pipeline_id} does not exist")


def lock_repository(*, session: Session, repository_id: int) -> None:
    """Hold the repository until the transaction ends: what its pipelines share (a
    `resource_group`) is checked and taken by one transaction at a time.

    A write that changes nothing: on PostgreSQL it holds the row lock (FOR NO KEY UPDATE, so
    pipelines are still created meanwhile), on SQLite the database's write lock. Take it after
    `lock_pipeline`, never before, so two transactions never wait for each other.
    """
    changed = rowcount(
        session.execute(
            update(Repository)
            .where(Repository.id == repository_id)
            .values(updated_at=Repository.updated_at)
            .execution_options(synchronize_session=False)
        )
    )
    if not changed:
        raise NotFoundError(f"repository {repository_id} does not exist")
