"""The service layer acts on plan fields of issue 10: delayed jobs (scheduled, then started by
a delayed advance) and `workflow: auto_cancel: on_job_failure`, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from runner.engine.recorder import JobStatus
from tests.web.service_support import KeptJobs, register
from tests.web.test_mirrors import Project
from web.db.jobs import claim_job, list_jobs
from web.db.models import Job, utcnow
from web.db.pipelines import get_pipeline
from web.db.schemas import JobRead, RepositoryRead
from web.orchestration import (
    JobEnd,
    Services,
    advance,
    cancel_pipeline,
    create_pipeline_for_ref,
    finish_job,
    play_job,
    requeue_pending,
)

DELAYED = """
stages: [build, test, deploy]
image: busybox:latest
build: {stage: build, script: ["true"]}
smoke: {stage: test, when: delayed, start_in: 10 minutes, script: ["true"]}
ship: {stage: deploy, script: ["true"]}
"""

AUTO_CANCEL = """
workflow:
  auto_cancel:
    on_job_failure: all
stages: [test, deploy]
image: busybox:latest
unit: {stage: test, script: ["false"]}
lint: {stage: test, script: ["true"]}
slow: {stage: test, script: ["sleep 60"]}
ship: {stage: deploy, script: ["true"]}
"""


@pytest.fixture
def repository(services: Services, tmp_path: Path) -> tuple[Project, RepositoryRead]:
    project = Project(tmp_path / "repos")
    return project, register(services, project)


def start(services: Services, repo: tuple[Project, RepositoryRead], text: str) -> int:
    project, repository = repo
    project.commit({".kapal.yml": text})
    project.push()
    return create_pipeline_for_ref(services=services, repository_id=repository.id, ref="main").id


def current(services: Services, pipeline_id: int) -> dict[str, JobRead]:
    with services.database.transaction() as session:
        jobs = list_jobs(session=session, pipeline_id=pipeline_id, include_retried=False)
    return {job.name: job for job in jobs}


def claim(services: Services, job: JobRead) -> None:
    with services.database.transaction() as session:
        assert claim_job(session=session, job_id=job.id, worker="test-worker")


def end(services: Services, job: JobRead, status: JobStatus, exit_code: int = 0) -> None:
    finish_job(services=services, job_id=job.id, end=JobEnd(status, exit_code=exit_code))


def pipeline_status(services: Services, pipeline_id: int) -> str:
    with services.database.transaction() as session:
        found = get_pipeline(session=session, pipeline_id=pipeline_id)
    assert found is not None
    return found.status


def finished_ago(services: Services, job: JobRead, seconds: float) -> None:
    """Pretend `job` finished `seconds` ago (the clock of a delayed job starts then)."""
    with services.database.transaction() as session:
        session.execute(
            update(Job)
            .where(Job.id == job.id)
            .values(finished_at=utcnow() - timedelta(seconds=seconds))
        )


def built(services: Services, repo: tuple[Project, RepositoryRead]) -> tuple[int, JobRead]:
    """A DELAYED pipeline whose build job succeeded (its smoke job is then scheduled)."""
    pipeline_id = start(services, repo, DELAYED)
    build = current(services, pipeline_id)["build"]
    claim(services, build)
    end(services, build, JobStatus.SUCCESS)
    return pipeline_id, build


def test_a_delayed_job_is_scheduled_then_started_by_a_delayed_advance(
    services: Services, kept: KeptJobs, repository: tuple[Project, RepositoryRead]
) -> None:
    pipeline_id, build = built(services, repository)
    smoke = current(services, pipeline_id)["smoke"]
    assert (smoke.status, smoke.reason) == ("scheduled", "delayed: starts 10m from now")
    assert smoke.id not in kept.sent
    assert kept.later == [(pipeline_id, 601.0)]  # a second more, so it is due then
    assert pipeline_status(services, pipeline_id) == "running"
    # an advance that comes early starts nothing and sends itself again for the rest
    assert advance(services=services, pipeline_id=pipeline_id) == []
    assert current(services, pipeline_id)["smoke"].status == "scheduled"
    (_, again) = kept.later[1]
    assert 590.0 < again <= 601.0
    # once its start_in has passed since build finished, the advance starts it
    finished_ago(services, build, 600)
    assert advance(services=services, pipeline_id=pipeline_id) == [smoke.id]
    assert current(services, pipeline_id)["smoke"].status == "pending"
    assert current(services, pipeline_id)["ship"].status == "created"


def test_a_worker_start_wakes_pipelines_with_scheduled_jobs(
    services: Services, kept: KeptJobs, repository: tuple[Project, RepositoryRead]
) -> None:
    pipeline_id, build = built(services, repository)
    finished_ago(services, build, 700)  # its delayed message was lost meanwhile
    requeue_pending(services=services)
    smoke = current(services, pipeline_id)["smoke"]
    assert smoke.status == "pending" and smoke.id in kept.sent


def test_canceling_the_pipeline_cancels_a_scheduled_job(
    services: Services, kept: KeptJobs, repository: tuple[Project, RepositoryRead]
) -> None:
    pipeline_id, build = built(services, repository)
    cancel_pipeline(services=services, pipeline_id=pipeline_id)
    jobs = current(services, pipeline_id)
    assert jobs["smoke"].status == "canceled" and jobs["ship"].status == "canceled"
    assert pipeline_status(services, pipeline_id) == "canceled"
    # the delayed advance, when it comes, starts nothing
    finished_ago(services, build, 700)
    assert advance(services=services, pipeline_id=pipeline_id) == []


def test_a_failed_job_cancels_the_others_with_auto_cancel_on_job_failure(
    services: Services, kept: KeptJobs, repository: tuple[Project, RepositoryRead]
) -> None:
    pipeline_id = start(services, repository, AUTO_CANCEL)
    jobs = current(services, pipeline_id)
    claim(services, jobs["unit"])
    claim(services, jobs["slow"])  # lint stays pending: no worker took it yet
    end(services, jobs["unit"], JobStatus.FAILED, exit_code=1)
    jobs = current(services, pipeline_id)
    reason = "unit failed (workflow: auto_cancel: on_job_failure: all)"
    assert (jobs["lint"].status, jobs["lint"].reason) == ("canceled", reason)
    assert (jobs["ship"].status, jobs["ship"].reason) == ("canceled", reason)
    assert jobs["slow"].status == "running" and jobs["slow"].cancel_requested  # its worker stops it
    assert pipeline_status(services, pipeline_id) == "running"
    end(services, jobs["slow"], JobStatus.CANCELED)
    assert current(services, pipeline_id)["slow"].status == "canceled"
    assert pipeline_status(services, pipeline_id) == "failed"


def test_without_auto_cancel_a_failure_lets_the_stage_finish(
    services: Services, kept: KeptJobs, repository: tuple[Project, RepositoryRead]
) -> None:
    text = AUTO_CANCEL.replace("workflow:\n  auto_cancel:\n    on_job_failure: all\n", "")
    pipeline_id = start(services, repository, text)
    jobs = current(services, pipeline_id)
    claim(services, jobs["unit"])
    end(services, jobs["unit"], JobStatus.FAILED, exit_code=1)
    jobs = current(services, pipeline_id)
    assert jobs["lint"].status == "pending" and not jobs["slow"].cancel_requested


def test_a_scheduled_job_can_be_played_at_once(
    services: Services, kept: KeptJobs, repository: tuple[Project, RepositoryRead]
) -> None:
    pipeline_id, _ = built(services, repository)
    smoke = current(services, pipeline_id)["smoke"]
    played = play_job(services=services, job_id=smoke.id, who="alice")
    assert (played.status, played.reason) == ("pending", "played by alice")
    assert smoke.id in kept.sent
