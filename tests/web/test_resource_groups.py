"""`resource_group` across pipelines, on SQLite and PostgreSQL: at most one job of a group of a
repository is pending or running at a time, whatever pipeline it belongs to; the others wait,
`created` with the reason, and start oldest first as the group frees up. A dispatcher keeps
what it is sent; the tests play the worker's part (`claim_job`, `finish_job`)."""

from __future__ import annotations

import threading
from itertools import count
from pathlib import Path

import pytest

from runner.engine.recorder import JobStatus
from tests.web.service_support import KeptJobs, register
from tests.web.test_mirrors import Project
from web.db.jobs import claim_job, get_job, list_jobs, set_job_status
from web.db.schemas import JobRead, RepositoryRead
from web.errors import ConflictError
from web.orchestration import (
    JobEnd,
    Services,
    cancel_job,
    cancel_pipeline,
    create_pipeline_for_ref,
    finish_job,
    play_job,
    requeue_pending,
    retry_job,
)

DEPLOY = """
workflow: {auto_cancel: {on_new_commit: none}}
image: busybox:latest
deploy: {stage: deploy, resource_group: production, script: ["true"]}
"""

BUILD_THEN_DEPLOY = """
workflow: {auto_cancel: {on_new_commit: none}}
stages: [build, deploy]
image: busybox:latest
build: {stage: build, script: ["true"]}
deploy: {stage: deploy, resource_group: production, script: ["true"]}
"""

MANUAL_DEPLOY = """
workflow: {auto_cancel: {on_new_commit: none}}
image: busybox:latest
deploy: {stage: deploy, resource_group: production, when: manual, script: ["true"]}
"""

_commits = count()


def _pipeline(services: Services, project: Project, repository: RepositoryRead, text: str) -> int:
    """A new commit of `text` on main, and its pipeline (older pipelines are not canceled)."""
    project.commit({".kapal.yml": text, "n": str(next(_commits))})
    project.push()
    return create_pipeline_for_ref(services=services, repository_id=repository.id, ref="main").id


def _job(services: Services, pipeline_id: int, name: str = "deploy") -> JobRead:
    with services.database.transaction() as session:
        jobs = list_jobs(session=session, pipeline_id=pipeline_id, include_retried=False)
        (found,) = [job for job in jobs if job.name == name]
        again = get_job(session=session, job_id=found.id)
    assert again is not None
    return again


def _claim(services: Services, job: JobRead) -> None:
    with services.database.transaction() as session:
        assert claim_job(session=session, job_id=job.id, worker="test-worker")


def _run(services: Services, job: JobRead, status: JobStatus = JobStatus.SUCCESS) -> None:
    """Play a worker: claim the job, then report how it ended."""
    _claim(services, job)
    finish_job(services=services, job_id=job.id, end=JobEnd(status, exit_code=0))


def _waiting(holder_pipeline: int) -> str:
    return f"waiting for resource_group production (held by pipeline {holder_pipeline} job deploy)"


def test_one_deploy_at_a_time_across_pipelines_the_oldest_waiting_next(
    services: Services, kept: KeptJobs, project: Project, repository: RepositoryRead
) -> None:
    first, second, third = (_pipeline(services, project, repository, DEPLOY) for _ in range(3))
    holder = _job(services, first)
    assert holder.status == "pending" and kept.sent == [holder.id]
    for later in (second, third):
        waiting = _job(services, later)
        assert (waiting.status, waiting.reason) == ("created", _waiting(first))
    _run(services, holder)
    after_first = _job(services, second)
    assert (after_first.status, after_first.reason) == ("pending", "")
    assert kept.sent.count(after_first.id) == 1
    assert (_job(services, third).status, _job(services, third).reason) == (
        "created",
        _waiting(second),
    )
    # a holder that fails (a lost worker is reported the same way) frees the group too
    _run(services, after_first, JobStatus.FAILED)
    last = _job(services, third)
    assert last.status == "pending" and kept.sent.count(last.id) == 1
    _run(services, last)
    assert sorted(kept.sent) == sorted({holder.id, after_first.id, last.id})


def test_the_same_group_name_in_another_repository_is_not_blocked(
    services: Services, kept: KeptJobs, project: Project, repository: RepositoryRead, tmp_path: Path
) -> None:
    mine = _pipeline(services, project, repository, DEPLOY)
    other_project = Project(tmp_path / "other")
    other = register(services, other_project, name="acme/other")
    theirs = _pipeline(services, other_project, other, DEPLOY)
    assert _job(services, mine).status == "pending"
    assert _job(services, theirs).status == "pending"


def test_a_canceled_holder_frees_the_group(
    services: Services, kept: KeptJobs, project: Project, repository: RepositoryRead
) -> None:
    first, second, third = (_pipeline(services, project, repository, DEPLOY) for _ in range(3))
    # canceled before it started: at once
    cancel_pipeline(services=services, pipeline_id=first)
    assert _job(services, first).status == "canceled"
    running = _job(services, second)
    assert running.status == "pending" and kept.sent.count(running.id) == 1
    # canceled while it runs: it holds the group until its worker reports it stopped
    _claim(services, running)
    cancel_job(services=services, job_id=running.id)
    assert _job(services, third).status == "created"
    finish_job(services=services, job_id=running.id, end=JobEnd(JobStatus.CANCELED))
    last = _job(services, third)
    assert last.status == "pending" and kept.sent.count(last.id) == 1


def test_a_waiting_job_canceled_leaves_the_group_to_the_next(
    services: Services, kept: KeptJobs, project: Project, repository: RepositoryRead
) -> None:
    first, second, third = (_pipeline(services, project, repository, DEPLOY) for _ in range(3))
    cancel_job(services=services, job_id=_job(services, second).id)
    _run(services, _job(services, first))
    assert _job(services, second).status == "canceled"
    assert _job(services, third).status == "pending"


def test_pipelines_advancing_at_once_never_give_the_group_two_holders(
    services: Services, kept: KeptJobs, project: Project, repository: RepositoryRead
) -> None:
    pipelines = [_pipeline(services, project, repository, BUILD_THEN_DEPLOY) for _ in range(4)]
    builds = [_job(services, p, "build") for p in pipelines]
    for build in builds:
        _claim(services, build)
    barrier = threading.Barrier(len(builds))
    errors: list[BaseException] = []

    def end(job: JobRead) -> None:
        try:
            barrier.wait()
            finish_job(services=services, job_id=job.id, end=JobEnd(JobStatus.SUCCESS, 0))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=end, args=(build,)) for build in builds]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    for _ in pipelines:  # each holder in turn: exactly one at a time, each sent once
        deploys = [_job(services, p) for p in pipelines]
        holders = [d for d in deploys if d.status in ("pending", "running")]
        assert len(holders) == 1
        (holder,) = holders
        assert kept.sent.count(holder.id) == 1
        _run(services, holder)
    assert all(_job(services, p).status == "success" for p in pipelines)


def test_a_waiter_whose_wake_up_was_lost_starts_at_the_next_worker_start(
    services: Services, kept: KeptJobs, project: Project, repository: RepositoryRead
) -> None:
    first, second = (_pipeline(services, project, repository, DEPLOY) for _ in range(2))
    holder = _job(services, first)
    with services.database.transaction() as session:  # ended without advancing anything
        set_job_status(session=session, job_id=holder.id, status="success")
    assert _job(services, second).status == "created"
    requeue_pending(services=services)
    waiter = _job(services, second)
    assert waiter.status == "pending" and kept.sent.count(waiter.id) == 1


def test_a_manual_job_is_played_only_while_its_group_is_free(
    services: Services, kept: KeptJobs, project: Project, repository: RepositoryRead
) -> None:
    first, second = (_pipeline(services, project, repository, MANUAL_DEPLOY) for _ in range(2))
    played = play_job(services=services, job_id=_job(services, first).id, who="ada")
    assert played.status == "pending"
    gate = _job(services, second)
    with pytest.raises(ConflictError, match=f"held by pipeline {first} job deploy"):
        play_job(services=services, job_id=gate.id, who="bob")
    assert _job(services, second).status == "manual" and gate.id not in kept.sent
    _run(services, played)
    assert play_job(services=services, job_id=gate.id, who="bob").status == "pending"
    assert kept.sent.count(gate.id) == 1


def test_a_manual_job_is_retried_only_while_its_group_is_free(
    services: Services, kept: KeptJobs, project: Project, repository: RepositoryRead
) -> None:
    first, second = (_pipeline(services, project, repository, MANUAL_DEPLOY) for _ in range(2))
    _run(services, play_job(services=services, job_id=_job(services, first).id, who="ada"))
    holder = play_job(services=services, job_id=_job(services, second).id, who="bob")
    with pytest.raises(ConflictError, match=f"held by pipeline {second} job deploy"):
        retry_job(services=services, job_id=_job(services, first).id)
    _run(services, holder)
    again = retry_job(services=services, job_id=_job(services, first).id)
    assert (again.attempt, again.status) == (2, "pending")
