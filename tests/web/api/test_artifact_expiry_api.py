"""Expired artifacts through the API: the job says when its artifacts expire, and a download of
artifacts the sweep removed answers 410 Gone saying when they expired and by which expire_in."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from pipeline import TriggerContext, loads, plan
from runner.artifacts import ArtifactStore
from tests.web.api.conftest import AUTH, add_pipeline, error_of, register
from web.artifact_expiry import expire_artifacts
from web.db.clock import database_now
from web.db.models import Job, Pipeline
from web.db.results import add_artifact
from web.db.schemas import ArtifactCreate
from web.orchestration import Services
from web.settings import Settings

PLANNED = """
image: busybox:latest
build: {script: ["true"], artifacts: {paths: [out/], expire_in: 3 days}}
"""


def _kept_artifacts(
    services: Services, settings: Settings, *, expire_in: str | None
) -> tuple[int, int]:
    """A failed pipeline whose job `build` kept artifacts that expired an hour ago; its plan
    says `expire_in` when given. Returns (job id, artifact id)."""
    repo = register(services)
    pipeline_id, (job_id,) = add_pipeline(
        services, repo.id, status="failed", jobs={"build": "success"}
    )
    workspace = settings.data_dir / "workspace"
    (workspace / "out").mkdir(parents=True)
    (workspace / "out" / "app.txt").write_text("built")
    ArtifactStore(settings.artifacts_dir).save(pipeline_id, "build", workspace, ["out/app.txt"])
    with services.database.transaction() as session:
        artifact_id = add_artifact(
            session=session,
            job_id=job_id,
            artifact=ArtifactCreate(
                name="build", path=f"{pipeline_id}/build", size=5, sha256="0" * 64
            ),
        ).id
        moment = database_now(session) - timedelta(hours=1)
        session.execute(update(Job).where(Job.id == job_id).values(artifacts_expire_at=moment))
        if expire_in is not None:
            made = plan(loads(PLANNED), TriggerContext(source="push", branch="main"))
            session.execute(
                update(Pipeline).where(Pipeline.id == pipeline_id).values(plan=made.to_dict())
            )
    return job_id, artifact_id


@pytest.mark.parametrize("expire_in", [None, "3 days"])
def test_a_download_of_expired_artifacts_answers_410_saying_why(
    client: TestClient, services: Services, settings: Settings, expire_in: str | None
) -> None:
    job_id, artifact_id = _kept_artifacts(services, settings, expire_in=expire_in)
    job = client.get(f"/api/v1/jobs/{job_id}", headers=AUTH).json()
    assert job["artifacts_expire_at"] is not None and job["artifacts_expired"] is False
    download = f"/api/v1/jobs/{job_id}/artifacts/{artifact_id}"
    assert client.get(download, headers=AUTH).status_code == 200  # not swept yet

    assert expire_artifacts(settings=settings, database=services.database) == [job_id]

    answer = client.get(download, headers=AUTH)
    assert answer.status_code == 410, answer.text
    message = error_of(answer)
    assert message.startswith("the artifacts of job 'build'")
    assert " expired at 20" in message and " UTC" in message
    if expire_in is None:
        assert "KAPAL_ARTIFACTS_EXPIRE_IN=30 days" in message
    else:
        assert "`artifacts: expire_in: 3 days`" in message
    job = client.get(f"/api/v1/jobs/{job_id}", headers=AUTH).json()
    assert job["artifacts_expired"] is True
    # the list still says what there was
    listed = client.get(f"/api/v1/jobs/{job_id}/artifacts", headers=AUTH).json()
    assert [a["id"] for a in listed] == [artifact_id]


def test_the_dashboard_shows_expired_artifacts_with_no_download_link(
    client: TestClient, services: Services, settings: Settings
) -> None:
    job_id, artifact_id = _kept_artifacts(services, settings, expire_in=None)
    link = f'href="/jobs/{job_id}/artifacts/{artifact_id}"'
    page = client.get(f"/jobs/{job_id}", headers=AUTH)
    assert page.status_code == 200 and link in page.text
    assert ", expire 20" in page.text
    pipeline_id = client.get(f"/api/v1/jobs/{job_id}", headers=AUTH).json()["pipeline_id"]
    assert link in client.get(f"/pipelines/{pipeline_id}", headers=AUTH).text

    expire_artifacts(settings=settings, database=services.database)

    job_page = client.get(f"/jobs/{job_id}", headers=AUTH)
    assert job_page.status_code == 200
    assert link not in job_page.text
    assert '<span class="artifact-expired">build</span>' in job_page.text
    assert "(expired 20" in job_page.text
    pipeline_page = client.get(f"/pipelines/{pipeline_id}", headers=AUTH)
    assert pipeline_page.status_code == 200
    assert link not in pipeline_page.text
    assert 'class="muted artifact-expired">expired<' in pipeline_page.text
