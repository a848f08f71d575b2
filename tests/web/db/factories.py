"""Rows the database tests start from: a repository, a pipeline with jobs."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from web.db.encryption import SecretCipher
from web.db.jobs import create_jobs
from web.db.pipelines import create_pipeline
from web.db.repos import create_repository
from web.db.schemas import (
    JobCreate,
    JobRead,
    PipelineCreate,
    PipelineRead,
    Provider,
    RepositoryCreate,
    RepositoryRead,
)


def make_repository(
    session: Session, cipher: SecretCipher, name: str = "acme/shop", **fields: Any
) -> RepositoryRead:
    """Register a repository named `name`."""
    values: dict[str, Any] = {
        "name": name,
        "clone_url": f"https://git.example/{name}.git",
        "provider": Provider.GITHUB,
        "webhook_secret": "hook-secret-value",
        **fields,
    }
    return create_repository(session=session, cipher=cipher, new=RepositoryCreate(**values))


def make_pipeline(
    session: Session, repository_id: int, ref: str = "main", **fields: Any
) -> PipelineRead:
    """Record a push pipeline on `ref`."""
    values: dict[str, Any] = {
        "repository_id": repository_id,
        "source": "push",
        "ref": ref,
        "sha": "a" * 40,
        **fields,
    }
    return create_pipeline(session=session, new=PipelineCreate(**values))


def make_jobs(
    session: Session, pipeline_id: int, *names: str, status: str = "pending"
) -> list[JobRead]:
    """Record jobs named `names` in stage `test`, in that order."""
    return create_jobs(
        session=session,
        pipeline_id=pipeline_id,
        jobs=[
            JobCreate(name=n, stage="test", position=i, status=status) for i, n in enumerate(names)
        ],
    )
