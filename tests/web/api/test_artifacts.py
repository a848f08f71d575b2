"""Artifact downloads: a job's artifact directory as a .tar.gz, links kept as links (never
followed out of the directory), and rows pointing out of the artifacts root refused."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

from fastapi.testclient import TestClient

from tests.web.api.conftest import add_pipeline, error_of, register
from web.db.results import add_artifact
from web.db.schemas import ArtifactCreate
from web.orchestration import Services
from web.settings import Settings


def _artifact(services: Services, job_id: int, path: str) -> int:
    with services.database.transaction() as session:
        return add_artifact(
            session=session,
            job_id=job_id,
            artifact=ArtifactCreate(name="build", path=path, size=1, sha256="0" * 64),
        ).id


def test_download_is_a_tarball_with_links_kept_as_links(
    client: TestClient, services: Services, settings: Settings, tmp_path: Path
) -> None:
    repo = register(services)
    pipeline_id, (job_id,) = add_pipeline(services, repo.id, jobs={"build": "success"})
    secret = tmp_path / "host-secret"
    secret.write_text("host only")
    directory = settings.artifacts_dir / str(pipeline_id) / "build"
    (directory / "out").mkdir(parents=True)
    (directory / "out" / "app.txt").write_text("made")
    (directory / "out" / "leak").symlink_to(secret)  # a job's attempt to read the host
    artifact_id = _artifact(services, job_id, f"{pipeline_id}/build")
    listed = client.get(f"/api/v1/jobs/{job_id}/artifacts").json()
    assert [a["id"] for a in listed] == [artifact_id]
    answer = client.get(f"/api/v1/jobs/{job_id}/artifacts/{artifact_id}")
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/gzip"
    with tarfile.open(fileobj=io.BytesIO(answer.content)) as archive:
        members = {m.name: m for m in archive.getmembers()}
        assert set(members) == {"build/out", "build/out/app.txt", "build/out/leak"}
        app = archive.extractfile("build/out/app.txt")
        assert app is not None and app.read() == b"made"
        assert members["build/out/leak"].issym()
        assert members["build/out/leak"].linkname == str(secret)
    assert b"host only" not in answer.content


def test_paths_out_of_the_artifacts_root_are_refused(
    client: TestClient, services: Services, settings: Settings, tmp_path: Path
) -> None:
    repo = register(services)
    pipeline_id, (job_id, other) = add_pipeline(
        services, repo.id, jobs={"a": "success", "b": "success"}
    )
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "x").write_text("host only")
    settings.artifacts_dir.mkdir(parents=True)
    (settings.artifacts_dir / "linked").symlink_to(outside)
    for path in ("../../outside", "/etc", "linked"):
        artifact_id = _artifact(services, job_id, path)
        answer = client.get(f"/api/v1/jobs/{job_id}/artifacts/{artifact_id}")
        assert answer.status_code == 404, path
        error_of(answer)
    elsewhere = _artifact(services, other, f"{pipeline_id}/b")
    assert client.get(f"/api/v1/jobs/{job_id}/artifacts/{elsewhere}").status_code == 404
    gone = _artifact(services, job_id, f"{pipeline_id}/gone")
    answer = client.get(f"/api/v1/jobs/{job_id}/artifacts/{gone}")
    assert answer.status_code == 404
    assert "gone" in error_of(answer)
