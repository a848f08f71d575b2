"""End to end: a real worker runs a job whose artifacts `expire_in: 1 hour`; its end stamps the
time, and once a newer pipeline of the ref succeeded and the time passed, the sweep removes the
files the worker stored, while the newer pipeline's stay."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update

from runner.artifacts import ArtifactStore
from tests.web.e2e.conftest import wait_for
from tests.web.test_mirrors import Project
from web.artifact_expiry import expire_artifacts
from web.db.clock import database_now
from web.db.models import Job
from web.db.schemas import RepositoryRead
from web.orchestration import Services, create_pipeline_for_ref
from web.tasks import EmbeddedWorker

PIPELINE = """
image: busybox:latest
build:
  script: [mkdir -p out, echo made > out/app.txt]
  artifacts: {paths: [out/], expire_in: 1 hour}
"""


def test_a_real_jobs_artifacts_expire_an_hour_after_it_ended(
    services: Services, worker: EmbeddedWorker, project: Project, repository: RepositoryRead
) -> None:
    store = ArtifactStore(services.settings.artifacts_dir)
    runs = []
    for message in ("first", "second"):
        project.commit({".kapal.yml": PIPELINE, "note.txt": message})
        project.push()
        created = create_pipeline_for_ref(
            services=services, repository_id=repository.id, ref="main"
        )
        detail = wait_for(services, created.id)
        assert detail.status == "success", detail
        (job,) = detail.jobs
        assert job.finished_at is not None and job.artifacts_expire_at is not None
        assert abs(job.artifacts_expire_at - job.finished_at - timedelta(hours=1)) < timedelta(
            seconds=30
        )
        assert (store.job_dir(job.pipeline_id, "build") / "out" / "app.txt").is_file()
        runs.append(job)
    first, second = runs

    assert expire_artifacts(settings=services.settings, database=services.database) == []
    with services.database.transaction() as session:  # an hour and more later
        past = database_now(session) - timedelta(minutes=1)
        session.execute(
            update(Job).where(Job.id.in_([first.id, second.id])).values(artifacts_expire_at=past)
        )

    swept = expire_artifacts(settings=services.settings, database=services.database)

    assert swept == [first.id]  # the second is main's latest successful pipeline: kept
    assert not store.has(first.pipeline_id, "build")
    assert store.has(second.pipeline_id, "build")
