"""`trigger:` jobs on the server, with a real worker and the real runtime: a child pipeline runs
at the parent's commit with the variables its trigger job forwards, its end is the trigger
job's (`strategy: depend`); another project's pipeline fails saying it needs a GitLab server."""

from __future__ import annotations

from tests.web.e2e.conftest import wait_for
from tests.web.test_mirrors import Project
from web.db.logs import read_log
from web.db.schemas import RepositoryRead
from web.orchestration import Services, create_pipeline_for_ref
from web.tasks import EmbeddedWorker

PIPELINE = """
variables: {GREETING: hello}
child:
  variables: {WHO: "$GREETING from the parent"}
  trigger: {include: ci/child.yml, strategy: depend}
other-project:
  trigger: group/other
  allow_failure: true
"""
CHILD = """
inner:
  image: busybox:latest
  script: ['echo "inner says $WHO ($CI_PIPELINE_SOURCE)"']
"""


def test_a_child_pipeline_runs_on_the_server_and_its_end_is_the_trigger_jobs(
    services: Services, worker: EmbeddedWorker, project: Project, repository: RepositoryRead
) -> None:
    project.commit({".kapal.yml": PIPELINE, "ci/child.yml": CHILD})
    project.push()
    created = create_pipeline_for_ref(services=services, repository_id=repository.id, ref="main")
    detail = wait_for(services, created.id)
    jobs = {job.name: job for job in detail.jobs}
    assert detail.status == "success", detail
    child_id = jobs["child"].downstream_pipeline_id
    assert child_id is not None
    assert (jobs["child"].status, jobs["child"].reason) == (
        "success",
        f"child pipeline #{child_id} passed",
    )
    assert jobs["other-project"].status == "failed"  # allowed to
    assert "needs a GitLab server" in jobs["other-project"].reason
    child = wait_for(services, child_id)
    assert (child.status, child.source, child.parent_pipeline_id) == (
        "success",
        "parent_pipeline",
        created.id,
    )
    [inner] = child.jobs
    with services.database.transaction() as session:
        lines = read_log(session=session, job_id=inner.id).lines
    assert "inner says hello from the parent (parent_pipeline)" in lines
