"""GitLab's auto-cancel of redundant pipelines in the service: a new pipeline for a ref cancels
the older one of that ref as the older pipeline's `workflow: auto_cancel: on_new_commit` and
its jobs' `interruptible:` say, in a real worker on the real runtime."""

from __future__ import annotations

import pytest

from tests.web.e2e.conftest import wait_for
from tests.web.test_mirrors import Project
from web.db.schemas import JobRead, PipelineDetail, RepositoryRead
from web.orchestration import Services, cancel_pipeline, create_pipeline_for_ref
from web.tasks import EmbeddedWorker

_pushes: list[str] = []
SLEEP = "  image: busybox:latest\n  script: ['echo up', 'sleep 600']\n"


def _push(services: Services, project: Project, repository: RepositoryRead, text: str) -> int:
    _pushes.append(text)
    project.commit({".kapal.yml": text, "change": f"push {len(_pushes)}"})
    project.push()
    return create_pipeline_for_ref(services=services, repository_id=repository.id, ref="main").id


def _job(detail: PipelineDetail, name: str) -> JobRead:
    return next(j for j in detail.jobs if j.name == name and not j.retried)


def _all_up(*names: str):  # type: ignore[no-untyped-def]
    return lambda d: all(_job(d, n).status == "running" and _job(d, n).log_lines for n in names)


@pytest.fixture(autouse=True)
def _stop_what_runs(services: Services) -> object:
    yield None
    from web.db.models import Pipeline

    with services.database.transaction() as session:
        ids = list(session.scalars(Pipeline.__table__.select().with_only_columns(Pipeline.id)))
    for pipeline_id in ids:
        cancel_pipeline(services=services, pipeline_id=pipeline_id)
    for pipeline_id in ids:
        wait_for(services, pipeline_id, timeout=60)


def test_a_newer_pipeline_cancels_an_older_one_whose_started_jobs_are_interruptible(
    services: Services, worker: EmbeddedWorker, project: Project, repository: RepositoryRead
) -> None:
    text = "slow:\n  interruptible: true\n" + SLEEP
    older = _push(services, project, repository, text)
    wait_for(services, older, _all_up("slow"))
    newer = _push(services, project, repository, text)
    detail = wait_for(services, older)
    assert detail.status == "canceled"
    assert detail.reason == f"auto-canceled: pipeline #{newer} for the same ref is newer"
    assert _job(detail, "slow").status == "canceled"
    wait_for(services, newer, _all_up("slow"))


def test_a_started_job_that_is_not_interruptible_keeps_the_older_pipeline(
    services: Services, worker: EmbeddedWorker, project: Project, repository: RepositoryRead
) -> None:
    text = "slow:\n  interruptible: false\n" + SLEEP
    older = _push(services, project, repository, text)
    wait_for(services, older, _all_up("slow"))
    newer = _push(services, project, repository, text)
    wait_for(services, newer, _all_up("slow"))
    detail = wait_for(services, older, lambda d: True)
    assert (detail.status, detail.reason) == ("running", "")
    assert _job(detail, "slow").status == "running" and not _job(detail, "slow").cancel_requested


def test_on_new_commit_interruptible_cancels_only_the_interruptible_jobs(
    services: Services, worker: EmbeddedWorker, project: Project, repository: RepositoryRead
) -> None:
    text = (
        "workflow:\n  auto_cancel:\n    on_new_commit: interruptible\n"
        "keep:\n  interruptible: false\n" + SLEEP + "drop:\n  interruptible: true\n" + SLEEP
    )
    older = _push(services, project, repository, text)
    wait_for(services, older, _all_up("keep", "drop"))
    newer = _push(
        services, project, repository, "quick:\n  image: busybox:latest\n  script: ['true']\n"
    )
    detail = wait_for(services, older, lambda d: _job(d, "drop").status == "canceled")
    assert _job(detail, "keep").status == "running"
    assert detail.reason == (
        f"interruptible jobs auto-canceled: pipeline #{newer} for the same ref is newer"
    )
    assert wait_for(services, newer).status == "success"


def test_on_new_commit_none_cancels_nothing(
    services: Services, worker: EmbeddedWorker, project: Project, repository: RepositoryRead
) -> None:
    text = (
        "workflow:\n  auto_cancel:\n    on_new_commit: none\nslow:\n  interruptible: true\n" + SLEEP
    )
    older = _push(services, project, repository, text)
    wait_for(services, older, _all_up("slow"))
    newer = _push(
        services, project, repository, "quick:\n  image: busybox:latest\n  script: ['true']\n"
    )
    assert wait_for(services, newer).status == "success"
    detail = wait_for(services, older, lambda d: True)
    assert (detail.status, _job(detail, "slow").status) == ("running", "running")
