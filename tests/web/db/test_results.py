"""Artifacts, test cases and built images recorded against jobs."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from tests.web.db.factories import make_jobs, make_pipeline, make_repository
from web.db.encryption import SecretCipher
from web.db.results import (
    add_artifact,
    add_built_image,
    add_test_cases,
    get_artifact,
    list_artifacts,
    list_built_images,
    list_test_cases,
)
from web.db.schemas import ArtifactCreate, JobRead, TestCaseCreate
from web.db.session import Database
from web.errors import NotFoundError


def _jobs(database: Database, cipher: SecretCipher) -> list[JobRead]:
    with database.transaction() as session:
        repo = make_repository(session, cipher)
        pipeline = make_pipeline(session, repo.id)
        make_pipeline(session, repo.id)  # another pipeline, whose rows must not show
        return make_jobs(session, pipeline.id, "build", "test")


def test_artifacts(database: Database, cipher: SecretCipher) -> None:
    build, test = _jobs(database, cipher)
    archive = ArtifactCreate(
        name="dist",
        path="1/build/artifacts.tar",
        files=["dist/app.whl", "dist/app.tar.gz"],
        size=12345,
        sha256="f" * 64,
    )
    with database.transaction() as session:
        stored = add_artifact(session=session, job_id=build.id, artifact=archive)
    with database.transaction() as session:
        assert list_artifacts(session=session, job_id=build.id) == [stored]
        assert list_artifacts(session=session, job_id=test.id) == []
        assert get_artifact(session=session, artifact_id=stored.id) == stored
        assert get_artifact(session=session, artifact_id=stored.id + 1) is None
    assert stored.files == ["dist/app.whl", "dist/app.tar.gz"] and stored.size == 12345
    with pytest.raises(NotFoundError), database.transaction() as session:
        add_artifact(session=session, job_id=test.id + 10, artifact=archive)


def test_test_cases(database: Database, cipher: SecretCipher) -> None:
    build, test = _jobs(database, cipher)
    cases = [
        TestCaseCreate(suite="tests.test_app", name="test_ok", status="passed", duration=0.01),
        TestCaseCreate(
            suite="tests.test_app",
            name="test_bad",
            status="failed",
            duration=1.5,
            message="assert 1 == 2",
        ),
    ]
    with database.transaction() as session:
        assert add_test_cases(session=session, job_id=test.id, cases=cases) == 2
        assert (
            add_test_cases(
                session=session,
                job_id=build.id,
                cases=[TestCaseCreate(suite="s", name="n", status="skipped")],
            )
            == 1
        )
    with database.transaction() as session:
        every = list_test_cases(session=session, pipeline_id=test.pipeline_id)
        of_test = list_test_cases(session=session, pipeline_id=test.pipeline_id, job_id=test.id)
        assert list_test_cases(session=session, pipeline_id=test.pipeline_id + 1) == []
    assert [(c.name, c.status) for c in every] == [
        ("test_ok", "passed"),
        ("test_bad", "failed"),
        ("n", "skipped"),
    ]
    assert [c.message for c in of_test] == ["", "assert 1 == 2"]
    assert of_test[1].duration == 1.5
    with pytest.raises(ValidationError):
        TestCaseCreate(suite="s", name="n", status="exploded")


def test_built_images(database: Database, cipher: SecretCipher) -> None:
    build, _test = _jobs(database, cipher)
    digest = "sha256:" + "1" * 64
    with database.transaction() as session:
        image = add_built_image(
            session=session, job_id=build.id, tag="registry.local/shop:abc", digest=digest
        )
    with database.transaction() as session:
        assert list_built_images(session=session, pipeline_id=build.pipeline_id) == [image]
        assert list_built_images(session=session, pipeline_id=build.pipeline_id + 1) == []
    assert (image.tag, image.digest, image.pushed) == ("registry.local/shop:abc", digest, False)
    with pytest.raises(NotFoundError), database.transaction() as session:
        add_built_image(session=session, job_id=999, tag="t", digest=digest)
