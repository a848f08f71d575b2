"""The server fetches `include: remote/project` when it plans a pushed commit or a child
pipeline (SQLite and PostgreSQL): from allowed addresses only, in the worker's planning step,
cached under its data dir, a refusal recorded as the pipeline's positioned plan failure."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest

from pipeline.plan import Plan
from runner.engine.recorder import JobStatus
from tests.support.file_server import Files, serve_files
from tests.support.gitlab_api import GitLabAPI, serve_gitlab
from tests.support.gitlab_api import Project as GitLabProject
from tests.web.service_support import KeptJobs
from tests.web.test_mirrors import Project
from tests.web.test_orchestration import _current, _detail, _run, _trigger
from web.db.pipelines import get_pipeline_plan
from web.db.schemas import RepositoryRead
from web.orchestration import (
    Services,
    create_pipeline_for_ref,
    create_pipeline_from_trigger,
    plan_recorded_pipeline,
)

REMOTE_JOBS = b"remote-job:\n  image: busybox:latest\n  script: [echo remote]\n"


@pytest.fixture
def files() -> Iterator[tuple[Files, int]]:
    served = Files(bodies={"/ci/jobs.yml": REMOTE_JOBS})
    with serve_files(served) as port:
        yield served, port


def _with(services: Services, **settings: Any) -> Services:
    return dataclasses.replace(services, settings=services.settings.model_copy(update=settings))


def _push(services: Services, project: Project, repository: RepositoryRead, text: str) -> int:
    project.commit({".kapal.yml": text})
    project.push()
    return create_pipeline_for_ref(services=services, repository_id=repository.id, ref="main").id


def _plan(services: Services, pipeline_id: int) -> Plan:
    with services.database.transaction() as session:
        data = get_pipeline_plan(session=session, pipeline_id=pipeline_id)
    assert data is not None
    return Plan.from_dict(data)


def _remote(port: int) -> str:
    return (
        f"include:\n  - remote: http://127.0.0.1:{port}/ci/jobs.yml\n"
        "local-job:\n  image: busybox:latest\n  script: [echo local]\n"
    )


def test_a_remote_include_from_an_allowed_host_is_planned_in_the_worker_and_cached(
    services: Services,
    kept: KeptJobs,
    project: Project,
    repository: RepositoryRead,
    files: tuple[Files, int],
) -> None:
    served, port = files
    services = _with(services, include_allowed_hosts="127.0.0.1/32")
    sha = project.commit({".kapal.yml": _remote(port)})
    project.push()
    outcome = create_pipeline_from_trigger(
        services=services, repository_id=repository.id, trigger=_trigger(sha), plan_now=False
    )
    assert outcome.pipeline is not None and outcome.pipeline.status == "created"
    assert served.hosts == []  # the webhook was answered without fetching
    ((pipeline_id, request),) = kept.plans
    planned = plan_recorded_pipeline(services=services, pipeline_id=pipeline_id, **request)
    assert planned.pipeline is not None and planned.pipeline.status == "running"
    assert set(_current(services, pipeline_id)) == {"local-job", "remote-job"}
    assert served.hosts == [f"127.0.0.1:{port}"]
    assert any((services.settings.data_dir / "includes").iterdir())  # kept for offline plans


def test_a_remote_include_of_an_internal_address_fails_the_pipeline_saying_why(
    services: Services,
    kept: KeptJobs,
    project: Project,
    repository: RepositoryRead,
    files: tuple[Files, int],
) -> None:
    served, port = files
    pipeline_id = _push(services, project, repository, _remote(port))
    detail = _detail(services, pipeline_id)
    assert detail.status == "failed" and detail.jobs == [] and kept.sent == []
    assert ".kapal.yml:2:" in detail.reason
    assert "127.0.0.1 is a loopback address" in detail.reason
    assert "KAPAL_INCLUDE_ALLOWED_HOSTS" in detail.reason
    assert "Traceback" not in detail.reason
    assert served.hosts == []  # never connected


def test_a_redirect_to_an_internal_address_fails_the_pipeline(
    services: Services, project: Project, repository: RepositoryRead
) -> None:
    inner = Files(bodies={"/latest/meta-data": b"leak:\n  script: [x]\n"})
    with serve_files(inner, host="127.0.0.2") as inner_port:
        outer = Files(redirects={"/ci/jobs.yml": f"http://127.0.0.2:{inner_port}/latest/meta-data"})
        with serve_files(outer) as port:
            allowed = _with(services, include_allowed_hosts="127.0.0.1")
            pipeline_id = _push(allowed, project, repository, _remote(port))
    detail = _detail(services, pipeline_id)
    assert detail.status == "failed"
    assert "127.0.0.2 is a loopback address" in detail.reason
    assert inner.hosts == [] and len(outer.hosts) == 1


GITLAB_PIPELINE = """
include:
  - project: acme/ci
    ref: main
    file: /templates/test.yml
  - remote: $CI_SERVER_URL/api/v4/projects/acme%2Fci/repository/files/extra.yml/raw?ref=main
show:
  image: busybox:latest
  script: [echo $CI_SERVER_FQDN]
"""


def test_project_includes_and_server_variables_come_from_kapal_gitlab_url(
    services: Services, project: Project, repository: RepositoryRead
) -> None:
    api = GitLabAPI(
        projects={
            "acme/ci": GitLabProject(
                {
                    "main": {
                        "templates/test.yml": b"shared:\n  image: busybox:latest\n  script: [x]\n",
                        "extra.yml": b"extra:\n  image: busybox:latest\n  script: [y]\n",
                    }
                }
            )
        }
    )
    with serve_gitlab(api) as url:
        # the instance is on 127.0.0.1, with no allow-list: the operator's own origin is trusted
        gitlab = _with(services, gitlab_url=url)
        pipeline_id = _push(gitlab, project, repository, GITLAB_PIPELINE)
        detail = _detail(gitlab, pipeline_id)
        assert detail.status == "running", detail.reason
        assert set(_current(gitlab, pipeline_id)) == {"shared", "extra", "show"}
        port = url.rsplit(":", 1)[1]
        show = {v.name: v.value for v in _plan(gitlab, pipeline_id).job("show").variables}
        assert show["CI_SERVER_URL"] == url
        assert show["CI_SERVER_HOST"] == "127.0.0.1"
        assert show["CI_SERVER_PORT"] == port
        assert show["CI_SERVER_PROTOCOL"] == "http"
        assert show["CI_SERVER_FQDN"] == f"127.0.0.1:{port}"
    # the instance gone, a later commit still plans: the last copies kept under the data dir
    # answer when it cannot be reached
    offline = _push(gitlab, project, repository, GITLAB_PIPELINE.replace("show:", "show2:"))
    assert _detail(gitlab, offline).status == "running", _detail(gitlab, offline).reason
    # without an instance, the project include is one clear positioned error
    bare = _push(services, project, repository, GITLAB_PIPELINE)
    reason = _detail(services, bare).reason
    assert _detail(services, bare).status == "failed"
    assert ".kapal.yml:5:" in reason and "needs a GitLab instance" in reason


CHILD_PARENT = """
stages: [child]
start-child:
  stage: child
  trigger: {include: ci/child.yml, strategy: depend}
"""


def test_a_child_pipeline_fetches_its_remote_includes(
    services: Services,
    kept: KeptJobs,
    project: Project,
    repository: RepositoryRead,
    files: tuple[Files, int],
) -> None:
    _, port = files
    child_file = f"include:\n  - remote: http://127.0.0.1:{port}/ci/jobs.yml\n"
    allowed = _with(services, include_allowed_hosts="127.0.0.1")
    project.commit({".kapal.yml": CHILD_PARENT, "ci/child.yml": child_file})
    project.push()
    parent = create_pipeline_for_ref(services=allowed, repository_id=repository.id, ref="main")
    child = _detail(allowed, parent.id).jobs[0].downstream_pipeline_id
    assert child is not None
    while kept.plans:  # the worker's planning step
        pipeline_id, request = kept.plans.pop(0)
        plan_recorded_pipeline(services=allowed, pipeline_id=pipeline_id, **request)
    assert _detail(allowed, child).status == "running", _detail(allowed, child).reason
    assert set(_current(allowed, child)) == {"remote-job"}
    _run(allowed, _current(allowed, child)["remote-job"], JobStatus.SUCCESS)
    assert _detail(allowed, parent.id).status == "success"
    # not allowed: the parent, whose plan checks its children's files, fails saying where
    project.commit({"ci/child.yml": child_file + "# again\n"})
    project.push()
    refused = create_pipeline_for_ref(services=services, repository_id=repository.id, ref="main")
    detail = _detail(services, refused.id)
    assert detail.status == "failed" and detail.jobs == []
    assert "ci/child.yml:2:" in detail.reason and "127.0.0.1 is a loopback" in detail.reason
