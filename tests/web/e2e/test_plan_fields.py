"""End to end in the service (a real Celery worker, the real runtime): a delayed job started by
a delayed `advance_pipeline` message, dotenv variables and coverage through the worker, and
`workflow: auto_cancel: on_job_failure: all` stopping a running job."""

from __future__ import annotations

from datetime import timedelta

from tests.web.e2e.conftest import wait_for
from tests.web.test_mirrors import Project
from web.db.logs import read_log
from web.db.schemas import RepositoryRead
from web.orchestration import Services, create_pipeline_for_ref
from web.tasks import EmbeddedWorker

DELAYED = """
stages: [build, test]
image: busybox:latest
build:
  stage: build
  script:
    - echo "VERSION=1.2.3" > build.env
    - printf '<coverage line-rate="0.75" lines-covered="3" lines-valid="4"/>' > coverage.xml
  artifacts:
    reports:
      dotenv: build.env
      coverage_report: {coverage_format: cobertura, path: coverage.xml}
later:
  stage: test
  when: delayed
  start_in: 2 seconds
  script: [echo "version $VERSION"]
"""

AUTO_CANCEL = """
workflow:
  auto_cancel:
    on_job_failure: all
image: busybox:latest
fails: {script: [exit 1]}
slow: {script: [sleep 300]}
"""


def test_a_delayed_job_starts_after_its_start_in_with_the_dotenv_variables(
    services: Services, worker: EmbeddedWorker, project: Project, repository: RepositoryRead
) -> None:
    project.commit({".kapal.yml": DELAYED})
    project.push()
    created = create_pipeline_for_ref(services=services, repository_id=repository.id, ref="main")
    scheduled = wait_for(
        services, created.id, lambda p: any(j.status == "scheduled" for j in p.jobs)
    )
    assert scheduled.status == "running"
    detail = wait_for(services, created.id)
    assert detail.status == "success", detail
    jobs = {job.name: job for job in detail.jobs}
    built, started = jobs["build"].finished_at, jobs["later"].started_at
    assert built is not None and started is not None
    assert started - built >= timedelta(seconds=2)  # it waited its start_in
    with services.database.transaction() as session:
        build_log = read_log(session=session, job_id=jobs["build"].id).lines
        later_log = read_log(session=session, job_id=jobs["later"].id).lines
    assert "kapal: coverage 75.00% (coverage.xml)" in build_log
    assert "version 1.2.3" in later_log


def test_a_failed_job_stops_the_running_ones_with_auto_cancel(
    services: Services, worker: EmbeddedWorker, project: Project, repository: RepositoryRead
) -> None:
    project.commit({".kapal.yml": AUTO_CANCEL})
    project.push()
    created = create_pipeline_for_ref(services=services, repository_id=repository.id, ref="main")
    detail = wait_for(services, created.id)
    jobs = {job.name: job for job in detail.jobs}
    assert detail.status == "failed", detail
    assert jobs["fails"].status == "failed"
    assert jobs["slow"].status == "canceled"  # stopped long before its 300 s
