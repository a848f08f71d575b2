"""Artifact downloads when workers keep artifacts in an object store (KAPAL_OBJECT_STORE): the web
process, on a machine of its own, serves what a worker elsewhere uploaded to the S3 server."""

from __future__ import annotations

import io
import secrets
import tarfile
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from runner.artifacts import SharedArtifactStore
from tests.support.registry import free_port
from tests.support.s3 import S3Server, make_bucket
from tests.web.api.conftest import ADMIN, add_pipeline, error_of, register
from web.db.results import add_artifact
from web.db.schemas import ArtifactCreate
from web.orchestration import Services
from web.settings import Settings

BUCKET = "kapal-web"


@pytest.fixture
def settings(tmp_path: Path, database_url: str, s3_server: S3Server) -> Settings:
    """The web process's settings: the test database and an object store on the S3 server."""
    make_bucket(s3_server, BUCKET)
    return Settings(
        data_dir=tmp_path / "web-data",
        database_url=database_url,
        secret_key=SecretStr("test key"),
        admin_token=SecretStr(ADMIN),
        public_url="http://kapal.test",
        object_store=f"s3://{BUCKET}/{secrets.token_hex(6)}",
        s3_endpoint=s3_server.endpoint,
        s3_access_key=SecretStr(s3_server.access_key),
        s3_secret_key=SecretStr(s3_server.secret_key),
        s3_region="us-east-1",
    )


def test_an_artifact_a_worker_uploaded_is_downloaded_from_the_store(
    client: TestClient, services: Services, settings: Settings, tmp_path: Path
) -> None:
    repo = register(services)
    pipeline_id, (job_id,) = add_pipeline(services, repo.id, jobs={"build": "success"})
    worker = tmp_path / "worker-data"  # another machine: its disk is not the web's
    workspace = worker / "workspace"
    (workspace / "out").mkdir(parents=True)
    (workspace / "out" / "app.txt").write_text("made on a worker")
    (workspace / "out" / "leak").symlink_to("/etc/shadow")
    objects = settings.open_object_store()
    assert objects is not None
    store = SharedArtifactStore(worker / "artifacts", objects, scratch=worker / "scratch")
    store.save(pipeline_id, "build", workspace, ["out/app.txt", "out/leak"])
    with services.database.transaction() as session:
        artifact_id = add_artifact(
            session=session,
            job_id=job_id,
            artifact=ArtifactCreate(
                name="build", path=f"{pipeline_id}/build", size=16, sha256="0" * 64
            ),
        ).id

    answer = client.get(f"/api/v1/jobs/{job_id}/artifacts/{artifact_id}")
    assert answer.status_code == 200, answer.text
    with tarfile.open(fileobj=io.BytesIO(answer.content)) as archive:
        members = {m.name: m for m in archive.getmembers()}
        assert set(members) == {"build/out", "build/out/app.txt", "build/out/leak"}
        app = archive.extractfile("build/out/app.txt")
        assert app is not None and app.read() == b"made on a worker"
        assert members["build/out/leak"].issym()
    assert not settings.artifacts_dir.exists()  # served from the store, nothing kept

    objects.delete(SharedArtifactStore.object_key(pipeline_id, "build"))
    answer = client.get(f"/api/v1/jobs/{job_id}/artifacts/{artifact_id}")
    assert answer.status_code == 404
    assert "gone" in error_of(answer)


def test_an_unreachable_store_answers_503_naming_the_setting(
    client: TestClient, services: Services, settings: Settings
) -> None:
    repo = register(services)
    pipeline_id, (job_id,) = add_pipeline(services, repo.id, jobs={"build": "success"})
    with services.database.transaction() as session:
        artifact_id = add_artifact(
            session=session,
            job_id=job_id,
            artifact=ArtifactCreate(
                name="build", path=f"{pipeline_id}/build", size=1, sha256="0" * 64
            ),
        ).id
    settings.s3_endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    answer = client.get(f"/api/v1/jobs/{job_id}/artifacts/{artifact_id}")
    assert answer.status_code == 503
    assert "KAPAL_S3_ENDPOINT" in error_of(answer)
