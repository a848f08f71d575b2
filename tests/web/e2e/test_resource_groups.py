"""End to end, in a real Celery worker on the real runtime: two pipelines deploying to one
`resource_group` run their deploy jobs one after the other, although the worker has threads
for both."""

from __future__ import annotations

import pytest

from tests.web.e2e.conftest import wait_for
from tests.web.test_mirrors import Project
from web.db.jobs import list_jobs
from web.db.schemas import JobRead, RepositoryRead
from web.orchestration import Services, create_pipeline_for_ref

DEPLOY = """
workflow: {{auto_cancel: {{on_new_commit: none}}}}
deploy:
  image: busybox:latest
  resource_group: production
  script: [echo deploying {n}, sleep 2, echo deployed {n}]
"""


def _deploy(services: Services, pipeline_id: int) -> JobRead:
    with services.database.transaction() as session:
        (job,) = list_jobs(session=session, pipeline_id=pipeline_id)
    return job


def test_two_pipelines_deploy_to_one_resource_group_one_after_the_other(
    request: pytest.FixtureRequest,
    services: Services,
    project: Project,
    repository: RepositoryRead,
) -> None:
    pipelines = []
    for n in (1, 2):
        project.commit({".kapal.yml": DEPLOY.format(n=n)})
        project.push()
        created = create_pipeline_for_ref(
            services=services, repository_id=repository.id, ref="main"
        )
        pipelines.append(created.id)
    first, second = pipelines
    assert _deploy(services, first).status == "pending"
    waiting = _deploy(services, second)
    assert waiting.status == "created"
    assert waiting.reason == (
        f"waiting for resource_group production (held by pipeline {first} job deploy)"
    )
    request.getfixturevalue("worker")
    for pipeline_id in pipelines:
        assert wait_for(services, pipeline_id).status == "success"
    before, after = _deploy(services, first), _deploy(services, second)
    assert before.finished_at is not None and after.started_at is not None
    assert after.started_at >= before.finished_at
