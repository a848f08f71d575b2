"""What jobs leave behind: artifacts archives, JUnit test cases, images built."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from web.db.models import Artifact, BuiltImage, Job, TestCase
from web.db.schemas import (
    ArtifactCreate,
    ArtifactRead,
    BuiltImageRead,
    TestCaseCreate,
    TestCaseRead,
)
from web.errors import NotFoundError


def _job(session: Session, job_id: int) -> Job:
    row = session.get(Job, job_id)
    if row is None:
        raise NotFoundError(f"job {job_id} does not exist")
    return row


def add_artifact(*, session: Session, job_id: int, artifact: ArtifactCreate) -> ArtifactRead:
    """Record an artifacts archive a job produced."""
    _job(session, job_id)
    row = Artifact(job_id=job_id, **artifact.model_dump())
    session.add(row)
    session.flush()
    return ArtifactRead.model_validate(row)


def list_artifacts(*, session: Session, job_id: int) -> list[ArtifactRead]:
    """A job's artifacts archives, oldest first."""
    rows = session.scalars(select(Artifact).where(Artifact.job_id == job_id).order_by(Artifact.id))
    return [ArtifactRead.model_validate(r) for r in rows]


def get_artifact(*, session: Session, artifact_id: int) -> ArtifactRead | None:
    """The artifacts archive with this id, or None."""
    row = session.get(Artifact, artifact_id)
    return None if row is None else ArtifactRead.model_validate(row)


def add_test_cases(*, session: Session, job_id: int, cases: Sequence[TestCaseCreate]) -> int:
    """Record a job's JUnit test cases; returns how many."""
    job = _job(session, job_id)
    session.add_all(
        TestCase(pipeline_id=job.pipeline_id, job_id=job_id, **case.model_dump()) for case in cases
    )
    session.flush()
    return len(cases)


def list_test_cases(
    *, session: Session, pipeline_id: int, job_id: int | None = None
) -> list[TestCaseRead]:
    """A pipeline's test cases (of one job when `job_id` is given), in the order recorded."""
    query = select(TestCase).where(TestCase.pipeline_id == pipeline_id)
    if job_id is not None:
        query = query.where(TestCase.job_id == job_id)
    return [TestCaseRead.model_validate(r) for r in session.scalars(query.order_by(TestCase.id))]


def add_built_image(
    *, session: Session, job_id: int, tag: str, digest: str, pushed: bool = False
) -> BuiltImageRead:
    """Record an image a job built."""
    _job(session, job_id)
    row = BuiltImage(job_id=job_id, tag=tag, digest=digest, pushed=pushed)
    session.add(row)
    session.flush()
    return BuiltImageRead.model_validate(row)


def list_built_images(*, session: Session, pipeline_id: int) -> list[BuiltImageRead]:
    """The images a pipeline's jobs built, oldest first."""
    rows = session.scalars(
        select(BuiltImage)
        .join(Job, Job.id == BuiltImage.job_id)
        .where(Job.pipeline_id == pipeline_id)
        .order_by(BuiltImage.id)
    )
    return [BuiltImageRead.model_validate(r) for r in rows]
