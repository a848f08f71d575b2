"""End to end: a push to a local bare repository runs its pipeline in a real Celery worker on
the real runtime, and the database holds its jobs, logs and test cases."""

from __future__ import annotations

from tests.web.e2e.conftest import wait_for
from tests.web.test_mirrors import Project
from web.db.logs import read_log
from web.db.results import list_artifacts, list_test_cases
from web.db.schemas import RepositoryRead
from web.orchestration import Services, create_pipeline_for_ref, create_pipeline_from_trigger
from web.tasks import EmbeddedWorker

JUNIT = (
    '<testsuite name="unit"><testcase classname="shop.cart" name="adds" time="0.5"/>'
    '<testcase classname="shop.cart" name="removes" time="0.1">'
    '<failure message="off by one">boom</failure></testcase></testsuite>'
)

PIPELINE = f"""
stages: [build, test]
image: busybox:latest
build:
  stage: build
  script:
    - echo building $CI_COMMIT_SHORT_SHA
    - mkdir -p out && echo made > out/app.txt
  artifacts:
    paths: [out/]
test:
  stage: test
  script:
    - cat out/app.txt
    - echo '{JUNIT}' > report.xml
  artifacts:
    reports:
      junit: report.xml
"""


def test_a_pipeline_runs_to_success_with_logs_artifacts_and_test_cases(
    services: Services, worker: EmbeddedWorker, project: Project, repository: RepositoryRead
) -> None:
    sha = project.commit({".kapal.yml": PIPELINE})
    project.push()
    created = create_pipeline_for_ref(services=services, repository_id=repository.id, ref="main")
    assert created.sha == sha
    detail = wait_for(services, created.id)
    assert detail.status == "success", detail
    jobs = {job.name: job for job in detail.jobs}
    assert [jobs["build"].status, jobs["test"].status] == ["success", "success"]
    assert jobs["build"].worker == worker.name
    assert jobs["build"].exit_code == 0
    assert jobs["build"].image_digest and jobs["build"].image_digest.startswith("sha256:")
    built, tested = jobs["build"].finished_at, jobs["test"].started_at
    assert jobs["build"].started_at and built and tested and tested >= built
    with services.database.transaction() as session:
        build_log = read_log(session=session, job_id=jobs["build"].id).lines
        test_log = read_log(session=session, job_id=jobs["test"].id).lines
        cases = list_test_cases(session=session, pipeline_id=created.id)
        artifacts = list_artifacts(session=session, job_id=jobs["build"].id)
    assert f"building {sha[:8]}" in build_log
    assert "made" in test_log  # the build job's artifact reached the test job
    assert [(c.suite, c.name, c.status) for c in cases] == [
        ("shop.cart", "adds", "passed"),
        ("shop.cart", "removes", "failed"),
    ]
    assert artifacts and artifacts[0].files == ["out/app.txt"]


FAILING = """
stages: [build, test, deploy]
image: busybox:latest
build:
  stage: build
  script: [echo compiling, exit 3]
test:
  stage: test
  script: [echo never]
cleanup:
  stage: deploy
  when: on_failure
  script: [echo cleaning up]
"""


def test_a_failing_job_fails_the_pipeline_and_skips_the_jobs_after_it(
    services: Services, worker: EmbeddedWorker, project: Project, repository: RepositoryRead
) -> None:
    project.commit({".kapal.yml": FAILING})
    project.push()
    created = create_pipeline_for_ref(services=services, repository_id=repository.id, ref="main")
    detail = wait_for(services, created.id)
    jobs = {job.name: job for job in detail.jobs}
    assert detail.status == "failed"
    assert (jobs["build"].status, jobs["build"].exit_code) == ("failed", 3)
    assert jobs["build"].reason == "exited with code 3"
    assert (jobs["test"].status, jobs["test"].reason) == ("skipped", "build failed")
    assert jobs["test"].started_at is None and jobs["test"].worker is None
    assert jobs["cleanup"].status == "success"


def test_a_webhook_pipeline_planned_by_the_worker_runs_to_success(
    services: Services, worker: EmbeddedWorker, project: Project, repository: RepositoryRead
) -> None:
    from tests.web.test_orchestration import _trigger

    sha = project.commit({".kapal.yml": "hello:\n  image: busybox:latest\n  script: [echo hi]\n"})
    project.push()
    outcome = create_pipeline_from_trigger(
        services=services, repository_id=repository.id, trigger=_trigger(sha), plan_now=False
    )
    assert outcome.pipeline is not None and outcome.pipeline.status == "created"
    detail = wait_for(services, outcome.pipeline.id)
    assert detail.status == "success" and [j.status for j in detail.jobs] == ["success"]
