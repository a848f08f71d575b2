"""The service layer on SQLite and PostgreSQL, with a dispatcher that keeps what it is sent
(no worker: the tests play the worker's part through `finish_job`)."""

from __future__ import annotations

import threading

import pytest

from runner.engine.recorder import JobStatus
from tests.web.service_support import KeptJobs
from tests.web.test_mirrors import Project
from web.db.deliveries import get_delivery, record_delivery
from web.db.jobs import claim_job, list_jobs
from web.db.pipelines import get_pipeline, get_pipeline_detail
from web.db.schemas import (
    DeliveryCreate,
    JobRead,
    PipelineDetail,
    Provider,
    RepositoryRead,
)
from web.errors import ConflictError, NotFoundError, PipelineNotCreatedError
from web.hooks.trigger import Trigger
from web.orchestration import (
    JobEnd,
    Services,
    cancel_job,
    create_pipeline_for_ref,
    create_pipeline_from_trigger,
    finish_job,
    play_job,
    retry_pipeline,
)


def _pipeline(services: Services, project: Project, repository: RepositoryRead, text: str) -> int:
    project.commit({".kapal.yml": text})
    project.push()
    return create_pipeline_for_ref(services=services, repository_id=repository.id, ref="main").id


def _detail(services: Services, pipeline_id: int) -> PipelineDetail:
    with services.database.transaction() as session:
        detail = get_pipeline_detail(session=session, pipeline_id=pipeline_id)
    assert detail is not None
    return detail


def _current(services: Services, pipeline_id: int) -> dict[str, JobRead]:
    with services.database.transaction() as session:
        jobs = list_jobs(session=session, pipeline_id=pipeline_id, include_retried=False)
    return {job.name: job for job in jobs}


def _run(services: Services, job: JobRead, status: JobStatus, exit_code: int = 0) -> None:
    """Play a worker: claim the job, then report how it ended."""
    with services.database.transaction() as session:
        assert claim_job(session=session, job_id=job.id, worker="test-worker")
    finish_job(services=services, job_id=job.id, end=JobEnd(status, exit_code=exit_code))


FAN_IN = """
stages: [test, deploy]
image: busybox:latest
unit: {stage: test, script: ["true"]}
lint: {stage: test, script: ["true"]}
ship: {stage: deploy, script: ["true"]}
"""


def test_jobs_ending_at_once_start_the_next_job_exactly_once(
    services: Services, kept: KeptJobs, project: Project, repository: RepositoryRead
) -> None:
    pipeline_id = _pipeline(services, project, repository, FAN_IN)
    jobs = _current(services, pipeline_id)
    assert sorted(kept.sent) == sorted([jobs["unit"].id, jobs["lint"].id])
    for name in ("unit", "lint"):
        with services.database.transaction() as session:
            assert claim_job(session=session, job_id=jobs[name].id, worker="w")
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def end(job: JobRead) -> None:
        try:
            barrier.wait()
            finish_job(services=services, job_id=job.id, end=JobEnd(JobStatus.SUCCESS, 0))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=end, args=(jobs[n],)) for n in ("unit", "lint")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert kept.sent.count(jobs["ship"].id) == 1
    assert _current(services, pipeline_id)["ship"].status == "pending"


def test_a_failed_job_skips_the_next_stage_and_fails_the_pipeline(
    services: Services, kept: KeptJobs, project: Project, repository: RepositoryRead
) -> None:
    pipeline_id = _pipeline(services, project, repository, FAN_IN)
    jobs = _current(services, pipeline_id)
    _run(services, jobs["unit"], JobStatus.FAILED, exit_code=1)
    assert _detail(services, pipeline_id).status == "running"  # lint still runs
    _run(services, jobs["lint"], JobStatus.SUCCESS)
    after = _current(services, pipeline_id)
    assert (after["ship"].status, after["ship"].reason) == ("skipped", "unit failed")
    assert _detail(services, pipeline_id).status == "failed"
    assert jobs["ship"].id not in kept.sent
    # retrying the failed job reconsiders what it skipped
    retried = retry_pipeline(services=services, pipeline_id=pipeline_id)
    assert retried.status == "running"
    again = _current(services, pipeline_id)
    assert (again["unit"].attempt, again["unit"].status) == (2, "pending")
    assert again["ship"].status == "created"
    assert again["lint"].attempt == 1  # it succeeded: not run again
    _run(services, again["unit"], JobStatus.SUCCESS)
    assert _current(services, pipeline_id)["ship"].status == "pending"


MANUAL = """
stages: [build, deploy, verify]
image: busybox:latest
build: {stage: build, script: ["true"]}
ship: {stage: deploy, when: manual, allow_failure: false, script: ["true"]}
verify: {stage: verify, script: ["true"]}
"""


def test_a_manual_job_holds_the_pipeline_until_played(
    services: Services, kept: KeptJobs, project: Project, repository: RepositoryRead
) -> None:
    pipeline_id = _pipeline(services, project, repository, MANUAL)
    jobs = _current(services, pipeline_id)
    with pytest.raises(ConflictError, match="only a manual job"):
        play_job(services=services, job_id=jobs["build"].id, who="ada")
    _run(services, jobs["build"], JobStatus.SUCCESS)
    assert _detail(services, pipeline_id).status == "manual"
    assert _current(services, pipeline_id)["verify"].status == "created"
    played = play_job(services=services, job_id=jobs["ship"].id, who="ada")
    assert (played.status, played.reason, played.played_by) == ("pending", "played by ada", "ada")
    assert kept.sent[-1] == jobs["ship"].id
    assert _detail(services, pipeline_id).status == "running"
    # who played it stays on record once the job has ended (its reason says something else)
    _run(services, played, JobStatus.FAILED)
    ended = _current(services, pipeline_id)["ship"]
    assert (ended.status, ended.played_by) == ("failed", "ada")
    assert ended.reason != "played by ada"


def test_canceling_a_waiting_job_cancels_the_jobs_after_it(
    services: Services, kept: KeptJobs, project: Project, repository: RepositoryRead
) -> None:
    pipeline_id = _pipeline(services, project, repository, FAN_IN)
    jobs = _current(services, pipeline_id)
    canceled = cancel_job(services=services, job_id=jobs["unit"].id)
    assert canceled.status == "canceled"
    with services.database.transaction() as session:  # its message finds nothing to claim
        assert not claim_job(session=session, job_id=jobs["unit"].id, worker="w")
    _run(services, jobs["lint"], JobStatus.SUCCESS)
    after = _current(services, pipeline_id)
    assert after["ship"].status == "canceled"
    assert _detail(services, pipeline_id).status == "canceled"


def test_an_invalid_pipeline_file_gives_a_failed_pipeline_with_positioned_errors(
    services: Services, kept: KeptJobs, project: Project, repository: RepositoryRead
) -> None:
    pipeline_id = _pipeline(services, project, repository, "test:\n  script: 42\n  stage: [\n")
    detail = _detail(services, pipeline_id)
    assert detail.status == "failed"
    assert ".kapal.yml:" in detail.reason
    assert detail.jobs == [] and kept.sent == []


def _trigger(sha: str, ref: str = "refs/heads/main", delivery: str = "d-1") -> Trigger:
    return Trigger(
        provider="github",
        delivery_id=delivery,
        event="push",
        kind="push",
        ref=ref,
        branch=ref.removeprefix("refs/heads/"),
        tag=None,
        sha=sha,
        before_sha="0" * 40,
        fetch_ref=ref,
        message="a change",
        author="Ada Lovelace <ada@example.com>",
        timestamp="2026-11-30T09:20:03+01:00",
        repository="acme/shop",
        clone_url="https://git.example/acme/shop.git",
        default_branch="main",
        changed_files=None,
    )


def test_a_trigger_without_pipeline_file_is_ignored_and_its_delivery_says_why(
    services: Services, kept: KeptJobs, project: Project, repository: RepositoryRead
) -> None:
    sha = project.commit({"README": "no pipeline here\n"})
    project.push()
    with services.database.transaction() as session:
        recorded = record_delivery(
            session=session,
            delivery=DeliveryCreate(
                provider=Provider.GITHUB, delivery_id="d-1", event="push", payload=b"{}"
            ),
        )
    outcome = create_pipeline_from_trigger(
        services=services,
        repository_id=repository.id,
        trigger=_trigger(sha),
        delivery_row_id=recorded.id,
    )
    assert outcome.pipeline is None
    assert outcome.ignored and "no pipeline file" in outcome.ignored
    with services.database.transaction() as session:
        delivery = get_delivery(session=session, provider=Provider.GITHUB, delivery_id="d-1")
        assert get_pipeline(session=session, pipeline_id=1) is None
    assert delivery is not None and delivery.outcome.startswith("ignored: no pipeline file")


def test_a_trigger_records_the_pipeline_and_links_its_delivery(
    services: Services, kept: KeptJobs, project: Project, repository: RepositoryRead
) -> None:
    sha = project.commit({".kapal.yml": FAN_IN})
    project.push()
    with services.database.transaction() as session:
        recorded = record_delivery(
            session=session,
            delivery=DeliveryCreate(
                provider=Provider.GITHUB, delivery_id="d-2", event="push", payload=b"{}"
            ),
        )
    outcome = create_pipeline_from_trigger(
        services=services,
        repository_id=repository.id,
        trigger=_trigger(sha, delivery="d-2"),
        delivery_row_id=recorded.id,
    )
    assert outcome.pipeline is not None
    pipeline = outcome.pipeline
    assert (pipeline.source, pipeline.ref, pipeline.sha) == ("push", "main", sha)
    assert (pipeline.author_name, pipeline.author_email) == ("Ada Lovelace", "ada@example.com")
    assert pipeline.status == "running" and len(kept.sent) == 2
    with services.database.transaction() as session:
        delivery = get_delivery(session=session, provider=Provider.GITHUB, delivery_id="d-2")
    assert delivery is not None and delivery.pipeline_id == pipeline.id


def test_a_ref_that_does_not_exist_gives_no_pipeline(
    services: Services, project: Project, repository: RepositoryRead
) -> None:
    project.commit({".kapal.yml": FAN_IN})
    project.push()
    with pytest.raises(PipelineNotCreatedError, match="no branch or tag named 'nope'"):
        create_pipeline_for_ref(services=services, repository_id=repository.id, ref="nope")
    with pytest.raises(PipelineNotCreatedError, match="not a branch or tag name"):
        create_pipeline_for_ref(services=services, repository_id=repository.id, ref="--upload")
    with pytest.raises(NotFoundError):
        create_pipeline_for_ref(services=services, repository_id=999, ref="main")


def test_a_pipeline_for_a_tag_runs_the_tagged_commit(
    services: Services, project: Project, repository: RepositoryRead
) -> None:
    from tests.web.test_mirrors import git

    sha = project.commit({".kapal.yml": FAN_IN})
    git(project.work, "tag", "-a", "v1.0", "-m", "release")
    project.push("refs/tags/v1.0")
    project.commit({"later": "x"})
    project.push()
    pipeline = create_pipeline_for_ref(
        services=services, repository_id=repository.id, ref="v1.0", source="web"
    )
    assert (pipeline.ref, pipeline.tag, pipeline.sha, pipeline.source) == ("v1.0", True, sha, "web")


def test_a_trigger_planned_by_a_worker_is_planned_once_and_kept_when_it_has_no_pipeline(
    services: Services, kept: KeptJobs, project: Project, repository: RepositoryRead
) -> None:
    import json

    from web.orchestration import plan_recorded_pipeline

    sha = project.commit({".kapal.yml": FAN_IN})
    project.push()
    outcome = create_pipeline_from_trigger(
        services=services, repository_id=repository.id, trigger=_trigger(sha), plan_now=False
    )
    assert outcome.pipeline is not None and outcome.pipeline.status == "created"
    assert kept.sent == []
    ((pipeline_id, request),) = kept.plans
    assert pipeline_id == outcome.pipeline.id
    request = json.loads(json.dumps(request))  # as the broker carries it
    for _ in range(2):  # a message delivered twice plans once
        planned = plan_recorded_pipeline(services=services, pipeline_id=pipeline_id, **request)
        assert planned.pipeline is not None and planned.pipeline.status == "running"
    assert len(kept.sent) == 2 and len(_current(services, pipeline_id)) == 3
    bare = project.commit({".kapal.yml": None, "README": "gone\n"})
    project.push()
    outcome = create_pipeline_from_trigger(
        services=services,
        repository_id=repository.id,
        trigger=_trigger(bare, delivery="d-9"),
        plan_now=False,
    )
    assert outcome.pipeline is not None
    later = plan_recorded_pipeline(
        services=services,
        pipeline_id=outcome.pipeline.id,
        **json.loads(json.dumps(kept.plans[1][1])),
    )
    assert later.pipeline is not None and later.pipeline.status == "skipped"
    assert later.ignored and later.pipeline.reason == later.ignored
