"""A `trigger:` job on the server: the worker fails it with a clear reason (parent-child
pipelines run under `kapal run` only for now) instead of crashing; the other jobs run on."""

from __future__ import annotations

from tests.web.e2e.conftest import wait_for
from tests.web.test_mirrors import Project
from web.db.schemas import RepositoryRead
from web.orchestration import Services, create_pipeline_for_ref
from web.tasks import EmbeddedWorker

PIPELINE = """
child:
  trigger: {include: child.yml, strategy: depend}
other-project:
  trigger: group/other
  allow_failure: true
"""
CHILD = "inner:\n  image: busybox:latest\n  script: [echo inner]\n"


def test_a_trigger_job_fails_on_the_server_saying_why(
    services: Services, worker: EmbeddedWorker, project: Project, repository: RepositoryRead
) -> None:
    project.commit({".kapal.yml": PIPELINE, "child.yml": CHILD})
    project.push()
    created = create_pipeline_for_ref(services=services, repository_id=repository.id, ref="main")
    detail = wait_for(services, created.id)
    jobs = {job.name: job for job in detail.jobs}
    assert detail.status == "failed", detail
    assert jobs["child"].status == "failed"
    assert "run under `kapal run` only for now" in (jobs["child"].reason or "")
    assert jobs["other-project"].status == "failed"
    assert "needs a GitLab server" in (jobs["other-project"].reason or "")
    assert "inner" not in jobs  # no child pipeline was made
