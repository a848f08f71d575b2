"""Child pipelines on the server, on SQLite and PostgreSQL: a `trigger:` job starts a child
pipeline without a worker, the child's end decides the job's (`strategy: depend`), cancel and
retry reach children, the lost-worker sweep leaves trigger jobs alone, and a child that cannot
be made fails its trigger job saying why. The tests play the workers through `finish_job`."""

from __future__ import annotations

import tempfile
import threading
from pathlib import Path

import pytest

from runner.artifacts import ArtifactStore, SharedArtifactStore
from runner.engine.recorder import JobStatus
from tests.web.service_support import KeptJobs, kept_services, register
from tests.web.test_mirrors import Project
from web.db.downstream import DOWNSTREAM_WORKER, start_trigger_job
from web.db.jobs import claim_job, list_jobs
from web.db.logs import read_log
from web.db.models import Pipeline
from web.db.pipelines import get_pipeline_detail, get_pipeline_plan
from web.db.schemas import JobRead, PipelineDetail, RepositoryRead
from web.db.session import Database
from web.heartbeats import sweep_lost_workers
from web.orchestration import (
    JobEnd,
    Services,
    cancel_pipeline,
    create_pipeline_for_ref,
    finish_job,
    plan_recorded_pipeline,
    play_job,
    recover_children,
    requeue_pending,
    retry_job,
)


def _start(
    services: Services, project: Project, repository: RepositoryRead, files: dict[str, str | None]
) -> int:
    project.commit(files)
    project.push()
    return create_pipeline_for_ref(
        services=services, repository_id=repository.id, ref="main", variables={"ASKED": "yes"}
    ).id


def _plan_children(services: Services, kept: KeptJobs) -> list[int]:
    """Play the workers' `plan_pipeline` task for every plan request sent; the pipelines."""
    planned = []
    while kept.plans:
        pipeline_id, request = kept.plans.pop(0)
        plan_recorded_pipeline(services=services, pipeline_id=pipeline_id, **request)
        planned.append(pipeline_id)
    return planned


def _detail(services: Services, pipeline_id: int) -> PipelineDetail:
    with services.database.transaction() as session:
        detail = get_pipeline_detail(session=session, pipeline_id=pipeline_id)
    assert detail is not None
    return detail


def _jobs(services: Services, pipeline_id: int) -> dict[str, JobRead]:
    with services.database.transaction() as session:
        jobs = list_jobs(session=session, pipeline_id=pipeline_id, include_retried=False)
    return {job.name: job for job in jobs}


def _run(services: Services, job: JobRead, status: JobStatus) -> None:
    """Play a worker: claim the job, then report how it ended."""
    with services.database.transaction() as session:
        assert claim_job(session=session, job_id=job.id, worker="test-worker")
    finish_job(services=services, job_id=job.id, end=JobEnd(status, exit_code=0))


def _log(services: Services, job_id: int) -> str:
    with services.database.transaction() as session:
        return "\n".join(read_log(session=session, job_id=job_id).lines)


PARENT = """
stages: [build, child, after]
variables: {GLOBAL: g}
image: busybox:latest
build: {stage: build, script: ["true"]}
start-child:
  stage: child
  variables: {OWN: "own $GLOBAL"}
  trigger: {include: ci/child.yml, strategy: depend, forward: {pipeline_variables: true}}
after: {stage: after, script: ["true"]}
"""
CHILD = """
image: busybox:latest
inner: {script: ["echo $OWN"]}
other: {script: ["true"], allow_failure: true}
"""


def _through_build(
    services: Services, kept: KeptJobs, project: Project, repository: RepositoryRead
) -> tuple[int, int]:
    """The parent pipeline past `build`: its trigger job started; (parent id, child id)."""
    parent = _start(services, project, repository, {".kapal.yml": PARENT, "ci/child.yml": CHILD})
    _run(services, _jobs(services, parent)["build"], JobStatus.SUCCESS)
    trigger = _jobs(services, parent)["start-child"]
    child = _detail(services, parent).jobs[1].downstream_pipeline_id
    assert child is not None
    assert trigger.status == "running" and trigger.worker == DOWNSTREAM_WORKER
    assert trigger.id not in kept.sent  # no worker runs a trigger job
    assert _plan_children(services, kept) == [child]
    return parent, child


def test_a_trigger_job_starts_its_child_pipeline_with_its_variables(
    services: Services, kept: KeptJobs, project: Project, repository: RepositoryRead
) -> None:
    parent, child_id = _through_build(services, kept, project, repository)
    child = _detail(services, child_id)
    trigger = _jobs(services, parent)["start-child"]
    assert child.source == "parent_pipeline"
    # what secrets it may receive is decided as for its parent (a fork's stays a fork's)
    assert child.trigger == _detail(services, parent).trigger
    assert child.parent_job_id == trigger.id and child.parent_pipeline_id == parent
    assert (child.repository_id, child.sha, child.ref) == (
        repository.id,
        _detail(services, parent).sha,
        "main",
    )
    # the trigger job's YAML variables, expanded, and (forward: pipeline_variables) the
    # parent's trigger variables reach the child as its trigger variables
    assert child.variables == {"GLOBAL": "g", "OWN": "own g", "ASKED": "yes"}
    with services.database.transaction() as session:
        data = get_pipeline_plan(session=session, pipeline_id=child_id)
    assert data is not None
    planned = {v["name"]: v["value"] for v in data["variables"]}
    assert planned["CI_PIPELINE_SOURCE"] == "parent_pipeline"
    assert planned["CI_PIPELINE_ID"] == str(child_id)
    jobs = _jobs(services, child_id)
    assert {jobs["inner"].id, jobs["other"].id} <= set(kept.sent)  # the child's jobs run
    assert "child pipeline #" in _log(services, trigger.id)
    assert child_id not in {pipeline for pipeline, _ in kept.statuses}  # the parent's commit


def test_strategy_depend_mirrors_a_child_that_passes(
    services: Services, kept: KeptJobs, project: Project, repository: RepositoryRead
) -> None:
    parent, child_id = _through_build(services, kept, project, repository)
    jobs = _jobs(services, child_id)
    _run(services, jobs["inner"], JobStatus.SUCCESS)
    assert _jobs(services, parent)["start-child"].status == "running"  # the child still runs
    _run(services, jobs["other"], JobStatus.FAILED)  # allowed to fail
    trigger = _jobs(services, parent)["start-child"]
    assert (trigger.status, trigger.reason) == ("success", f"child pipeline #{child_id} passed")
    assert f"kapal: child pipeline #{child_id} passed" in _log(services, trigger.id)
    assert _detail(services, child_id).status == "success"
    _run(services, _jobs(services, parent)["after"], JobStatus.SUCCESS)
    assert _detail(services, parent).status == "success"


def test_strategy_depend_mirrors_a_child_that_fails(
    services: Services, kept: KeptJobs, project: Project, repository: RepositoryRead
) -> None:
    parent, child_id = _through_build(services, kept, project, repository)
    jobs = _jobs(services, child_id)
    _run(services, jobs["other"], JobStatus.SUCCESS)
    _run(services, jobs["inner"], JobStatus.FAILED)
    trigger = _jobs(services, parent)["start-child"]
    assert trigger.status == "failed"
    assert trigger.reason == f"child pipeline #{child_id} failed: inner failed"
    detail = _detail(services, parent)
    assert detail.status == "failed"
    assert _jobs(services, parent)["after"].status == "skipped"


def test_retrying_a_failed_child_makes_its_trigger_job_wait_for_it_again(
    services: Services, kept: KeptJobs, project: Project, repository: RepositoryRead
) -> None:
    parent, child_id = _through_build(services, kept, project, repository)
    jobs = _jobs(services, child_id)
    _run(services, jobs["other"], JobStatus.SUCCESS)
    _run(services, jobs["inner"], JobStatus.FAILED)
    failed = _jobs(services, parent)["start-child"]
    assert failed.status == "failed" and _detail(services, parent).status == "failed"
    assert _jobs(services, parent)["after"].status == "skipped"

    again = retry_job(services=services, job_id=jobs["inner"].id)
    trigger = _jobs(services, parent)["start-child"]
    assert trigger.id == failed.id  # the same attempt, waiting again
    assert (trigger.status, trigger.reason, trigger.finished_at) == ("running", "", None)
    assert failed.finished_at is not None and trigger.started_at is not None
    assert trigger.started_at >= failed.finished_at  # its time runs from the retry
    assert trigger.worker == DOWNSTREAM_WORKER and trigger.id not in kept.sent
    assert f"child pipeline #{child_id} runs again" in _log(services, trigger.id)
    assert _detail(services, parent).status == "running"
    assert _jobs(services, parent)["after"].status == "created"  # waits for the trigger job

    _run(services, again, JobStatus.SUCCESS)
    trigger = _jobs(services, parent)["start-child"]
    assert (trigger.status, trigger.reason) == ("success", f"child pipeline #{child_id} passed")
    after = _jobs(services, parent)["after"]
    assert after.status == "pending" and after.id in kept.sent
    _run(services, after, JobStatus.SUCCESS)
    assert _detail(services, parent).status == "success"


def test_retrying_an_older_child_leaves_the_newer_trigger_attempt_alone(
    services: Services, kept: KeptJobs, project: Project, repository: RepositoryRead
) -> None:
    parent, first = _through_build(services, kept, project, repository)
    for job in _jobs(services, first).values():
        _run(services, job, JobStatus.FAILED)
    newer = retry_job(services=services, job_id=_jobs(services, parent)["start-child"].id)
    [second] = _plan_children(services, kept)
    for job in _jobs(services, second).values():
        _run(services, job, JobStatus.SUCCESS)
    assert _jobs(services, parent)["start-child"].status == "success"
    _run(services, _jobs(services, parent)["after"], JobStatus.SUCCESS)
    assert _detail(services, parent).status == "success"
    retry_job(services=services, job_id=_jobs(services, first)["inner"].id)
    assert _detail(services, first).status != "failed"  # the old child runs again, on its own
    current = _jobs(services, parent)["start-child"]
    assert (current.id, current.status) == (newer.id, "success")
    assert _detail(services, parent).status == "success"


NO_STRATEGY = """
image: busybox:latest
stages: [child, after]
start-child: {stage: child, trigger: {include: ci/child.yml}}
after: {stage: after, script: ["true"]}
"""


def test_without_strategy_the_trigger_job_succeeds_once_the_child_is_created(
    services: Services, kept: KeptJobs, project: Project, repository: RepositoryRead
) -> None:
    parent = _start(
        services, project, repository, {".kapal.yml": NO_STRATEGY, "ci/child.yml": CHILD}
    )
    assert _jobs(services, parent)["start-child"].status == "running"
    [child_id] = _plan_children(services, kept)
    trigger = _jobs(services, parent)["start-child"]
    assert trigger.status == "success"
    assert trigger.reason.startswith(f"child pipeline #{child_id} created; it runs on")
    # the parent goes on while its child runs
    after = _jobs(services, parent)["after"]
    assert after.status == "pending" and after.id in kept.sent
    assert _detail(services, child_id).status in ("pending", "running")
    # canceling the parent cancels the child running on by itself
    cancel_pipeline(services=services, pipeline_id=parent)
    child = _detail(services, child_id)
    assert child.status == "canceled"
    assert {job.status for job in child.jobs} == {"canceled"}


def test_retrying_a_child_without_strategy_leaves_its_trigger_job_as_it_ended(
    services: Services, kept: KeptJobs, project: Project, repository: RepositoryRead
) -> None:
    parent = _start(
        services, project, repository, {".kapal.yml": NO_STRATEGY, "ci/child.yml": CHILD}
    )
    [child_id] = _plan_children(services, kept)
    for job in _jobs(services, child_id).values():
        _run(services, job, JobStatus.FAILED)
    _run(services, _jobs(services, parent)["after"], JobStatus.SUCCESS)
    assert _detail(services, parent).status == "success"
    retry_job(services=services, job_id=_jobs(services, child_id)["inner"].id)
    assert _jobs(services, parent)["start-child"].status == "success"
    assert _detail(services, parent).status == "success"


def test_canceling_the_parent_cancels_the_child_and_its_trigger_job(
    services: Services, kept: KeptJobs, project: Project, repository: RepositoryRead
) -> None:
    parent, child_id = _through_build(services, kept, project, repository)
    inner = _jobs(services, child_id)["inner"]
    with services.database.transaction() as session:
        assert claim_job(session=session, job_id=inner.id, worker="test-worker")
    cancel_pipeline(services=services, pipeline_id=parent)
    jobs = _jobs(services, child_id)
    assert jobs["other"].status == "canceled"  # not started: at once
    assert jobs["inner"].cancel_requested  # running: its worker stops it
    assert _jobs(services, parent)["start-child"].status == "running"
    finish_job(services=services, job_id=inner.id, end=JobEnd(JobStatus.CANCELED))
    assert _detail(services, child_id).status == "canceled"
    trigger = _jobs(services, parent)["start-child"]
    assert (trigger.status, trigger.reason) == (
        "canceled",
        f"child pipeline #{child_id} was canceled",
    )
    assert _detail(services, parent).status == "canceled"


def test_a_trigger_job_canceled_before_its_child_is_planned_leaves_no_child_running(
    services: Services, kept: KeptJobs, project: Project, repository: RepositoryRead
) -> None:
    parent = _start(services, project, repository, {".kapal.yml": PARENT, "ci/child.yml": CHILD})
    _run(services, _jobs(services, parent)["build"], JobStatus.SUCCESS)
    cancel_pipeline(services=services, pipeline_id=parent)  # the plan request not taken yet
    _plan_children(services, kept)
    [child] = [
        job.downstream_pipeline_id for job in _detail(services, parent).jobs if job.stage == "child"
    ]
    assert child is not None
    assert _detail(services, child).status == "canceled"
    assert _jobs(services, parent)["start-child"].status == "canceled"
    assert _detail(services, parent).status == "canceled"


def test_retrying_a_trigger_job_starts_a_new_child_pipeline(
    services: Services, kept: KeptJobs, project: Project, repository: RepositoryRead
) -> None:
    parent, first = _through_build(services, kept, project, repository)
    for job in _jobs(services, first).values():
        _run(services, job, JobStatus.FAILED)
    failed = _jobs(services, parent)["start-child"]
    assert failed.status == "failed"
    again = retry_job(services=services, job_id=failed.id)
    assert again.attempt == 2 and again.status == "running" and again.id not in kept.sent
    [second] = _plan_children(services, kept)
    assert second != first
    detail = _detail(services, parent)
    by_id = {job.id: job.downstream_pipeline_id for job in detail.jobs}
    assert (by_id[failed.id], by_id[again.id]) == (first, second)
    for job in _jobs(services, second).values():
        _run(services, job, JobStatus.SUCCESS)
    assert _jobs(services, parent)["start-child"].status == "success"


def test_the_lost_worker_sweep_leaves_trigger_jobs_alone(
    services: Services, kept: KeptJobs, project: Project, repository: RepositoryRead
) -> None:
    parent, child_id = _through_build(services, kept, project, repository)
    inner = _jobs(services, child_id)["inner"]
    with services.database.transaction() as session:
        assert claim_job(session=session, job_id=inner.id, worker="kapal@gone.1")
    sweeping = Services(
        settings=services.settings.model_copy(update={"worker_lost_after": 0.0}),
        database=services.database,
        dispatcher=services.dispatcher,
    )
    lost = sweep_lost_workers(services=sweeping)
    # the job of a worker that never registered is failed; the trigger job is not: it
    # mirrors its child, which that failure failed
    assert lost == [inner.id]
    trigger = _jobs(services, parent)["start-child"]
    assert _detail(services, child_id).status == "running"  # `other` still pending
    assert trigger.status == "running"
    _run(services, _jobs(services, child_id)["other"], JobStatus.SUCCESS)
    trigger = _jobs(services, parent)["start-child"]
    assert (trigger.status, trigger.reason) == (
        "failed",
        f"child pipeline #{child_id} failed: inner failed",
    )


def test_two_jobs_ending_at_once_start_one_child_pipeline(
    services: Services, kept: KeptJobs, project: Project, repository: RepositoryRead
) -> None:
    text = PARENT.replace(
        'build: {stage: build, script: ["true"]}',
        'build: {stage: build, script: ["true"]}\nlint: {stage: build, script: ["true"]}',
    )
    parent = _start(services, project, repository, {".kapal.yml": text, "ci/child.yml": CHILD})
    jobs = _jobs(services, parent)
    for name in ("build", "lint"):
        with services.database.transaction() as session:
            assert claim_job(session=session, job_id=jobs[name].id, worker="w")
    barrier = threading.Barrier(2)

    def end(job: JobRead) -> None:
        barrier.wait()
        finish_job(services=services, job_id=job.id, end=JobEnd(JobStatus.SUCCESS))

    threads = [threading.Thread(target=end, args=(jobs[n],)) for n in ("build", "lint")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with services.database.transaction() as session:
        children = session.query(Pipeline).filter(Pipeline.parent_job_id.is_not(None)).count()
        trigger = jobs["start-child"]
        # the compare-and-set: a trigger job started already is not started again
        assert not start_trigger_job(
            session=session, job_id=trigger.id, from_statuses={"created", "pending"}
        )
    assert children == 1
    assert len(kept.plans) == 1


MANUAL = """
image: busybox:latest
start-child: {trigger: {include: ci/child.yml, strategy: depend}, when: manual}
"""


def test_playing_a_manual_trigger_job_starts_its_child(
    services: Services, kept: KeptJobs, project: Project, repository: RepositoryRead
) -> None:
    parent = _start(services, project, repository, {".kapal.yml": MANUAL, "ci/child.yml": CHILD})
    trigger = _jobs(services, parent)["start-child"]
    assert trigger.status == "manual" and not kept.plans
    played = play_job(services=services, job_id=trigger.id, who="ann")
    assert played.status == "running" and played.id not in kept.sent
    [child_id] = _plan_children(services, kept)
    assert _detail(services, child_id).parent_job_id == trigger.id


NESTED: dict[str, str | None] = {
    ".kapal.yml": "level1: {trigger: {include: ci/level1.yml, strategy: depend}}\n",
    "ci/level1.yml": (
        "image: busybox:latest\n"
        "one: {script: ['true']}\n"
        "level2: {trigger: {include: ci/level2.yml, strategy: depend}}\n"
    ),
    "ci/level2.yml": "image: busybox:latest\ntwo: {script: ['true']}\n",
}


def test_a_grandchild_pipeline_runs_and_its_end_reaches_the_first_pipeline(
    services: Services, kept: KeptJobs, project: Project, repository: RepositoryRead
) -> None:
    first = _start(services, project, repository, NESTED)
    [child, grandchild] = _plan_children(services, kept)  # the child's trigger job starts too
    assert _detail(services, grandchild).parent_pipeline_id == child
    _run(services, _jobs(services, child)["one"], JobStatus.SUCCESS)
    _run(services, _jobs(services, grandchild)["two"], JobStatus.SUCCESS)
    assert [_detail(services, p).status for p in (grandchild, child, first)] == ["success"] * 3


def test_retrying_a_failed_grandchild_reopens_every_pipeline_above_it(
    services: Services, kept: KeptJobs, project: Project, repository: RepositoryRead
) -> None:
    first = _start(services, project, repository, NESTED)
    [child, grandchild] = _plan_children(services, kept)
    _run(services, _jobs(services, child)["one"], JobStatus.SUCCESS)
    _run(services, _jobs(services, grandchild)["two"], JobStatus.FAILED)
    assert [_detail(services, p).status for p in (grandchild, child, first)] == ["failed"] * 3
    again = retry_job(services=services, job_id=_jobs(services, grandchild)["two"].id)
    assert [_detail(services, p).status for p in (child, first)] == ["running"] * 2
    _run(services, again, JobStatus.SUCCESS)
    assert [_detail(services, p).status for p in (grandchild, child, first)] == ["success"] * 3


GENERATED = """
image: busybox:latest
stages: [build, child]
gen: {stage: build, script: ["true"], artifacts: {paths: [gen.yml]}}
start-child:
  stage: child
  needs: [gen]
  trigger: {include: [{artifact: gen.yml, job: gen}], strategy: depend}
"""


def _store(store: ArtifactStore, pipeline_id: int, job: str, name: str, text: str | Path) -> None:
    """Store a file (or, given a path, a symlink to it) as `job`'s artifacts, as its worker
    would have."""
    with tempfile.TemporaryDirectory() as workspace:
        made = Path(workspace) / name
        if isinstance(text, Path):
            made.symlink_to(text)
        else:
            made.write_text(text)
        store.save(pipeline_id, job, Path(workspace), [name])


def _generated(
    services: Services,
    kept: KeptJobs,
    project: Project,
    repository: RepositoryRead,
    generated: str | None,
    files: dict[str, str | None] | None = None,
) -> tuple[JobRead, int]:
    """Run `gen`, storing `generated` as its artifact gen.yml (none when None); the trigger
    job once its child was planned, and the child's id."""
    parent = _start(services, project, repository, {".kapal.yml": GENERATED, **(files or {})})
    gen = _jobs(services, parent)["gen"]
    if generated is not None:
        _store(ArtifactStore(services.settings.artifacts_dir), parent, "gen", "gen.yml", generated)
    _run(services, gen, JobStatus.SUCCESS)
    [child] = _plan_children(services, kept)
    return _jobs(services, parent)["start-child"], child


def test_a_child_made_from_an_artifact_runs(
    services: Services, kept: KeptJobs, project: Project, repository: RepositoryRead
) -> None:
    trigger, child = _generated(
        services, kept, project, repository, "image: busybox:latest\nmade: {script: ['true']}\n"
    )
    assert trigger.status == "running"
    assert set(_jobs(services, child)) == {"made"}


def test_a_child_file_missing_fails_the_trigger_job_saying_why(
    services: Services, kept: KeptJobs, project: Project, repository: RepositoryRead
) -> None:
    trigger, child = _generated(services, kept, project, repository, None)
    assert trigger.status == "failed"
    assert trigger.reason.startswith(f"child pipeline #{child} cannot be created: ")
    assert "'gen.yml' from the artifacts of job 'gen'" in trigger.reason
    assert "Traceback" not in trigger.reason
    detail = _detail(services, child)
    assert detail.status == "failed" and not detail.jobs
    assert _detail(services, trigger.pipeline_id).status == "failed"


def test_a_local_file_the_generated_child_includes_missing_at_that_commit(
    services: Services, kept: KeptJobs, project: Project, repository: RepositoryRead
) -> None:
    trigger, _ = _generated(
        services,
        kept,
        project,
        repository,
        "include: ci/missing.yml\nimage: busybox:latest\nmade: {script: ['true']}\n",
    )
    assert trigger.status == "failed"
    assert "ci/missing.yml" in trigger.reason
    assert "ci/missing.yml" in _log(services, trigger.id)
    assert _detail(services, trigger.pipeline_id).status == "failed"


def test_child_pipelines_nest_at_most_two_levels(
    services: Services, kept: KeptJobs, project: Project, repository: RepositoryRead
) -> None:
    # a generated child (one level) whose own child (two) starts a third level: refused
    trigger, child = _generated(
        services,
        kept,
        project,
        repository,
        "image: busybox:latest\nmid: {trigger: {include: ci/level2.yml}}\n",
        {
            "ci/level2.yml": "image: busybox:latest\ndeep: {trigger: {include: ci/level3.yml}}\n",
            "ci/level3.yml": "image: busybox:latest\nbottom: {script: ['true']}\n",
        },
    )
    assert trigger.status == "failed"
    assert "levels" in trigger.reason and "at most 2" in _log(services, trigger.id)
    assert _detail(services, child).status == "failed"


def test_a_lost_plan_request_of_a_child_is_sent_again(
    services: Services, kept: KeptJobs, project: Project, repository: RepositoryRead
) -> None:
    parent = _start(
        services, project, repository, {".kapal.yml": NO_STRATEGY, "ci/child.yml": CHILD}
    )
    kept.plans.clear()  # the message was lost
    requeue_pending(services=services, older_than=-60.0)
    [child] = _plan_children(services, kept)
    assert _jobs(services, parent)["start-child"].status == "success"
    assert _detail(services, child).status in ("pending", "running")


def test_a_generated_child_file_linked_out_of_the_artifacts_is_never_read(
    services: Services, kept: KeptJobs, project: Project, repository: RepositoryRead, tmp_path: Path
) -> None:
    # the job's artifact is a symlink to a file of the host holding a pipeline: following it
    # would run what the host file says
    secret = tmp_path / "host-secret.yml"
    secret.write_text("image: busybox:latest\nleaked: {script: ['cat /etc/shadow']}\n")
    parent = _start(services, project, repository, {".kapal.yml": GENERATED})
    _store(ArtifactStore(services.settings.artifacts_dir), parent, "gen", "gen.yml", secret)
    _run(services, _jobs(services, parent)["gen"], JobStatus.SUCCESS)
    [child] = _plan_children(services, kept)
    trigger = _jobs(services, parent)["start-child"]
    assert trigger.status == "failed"
    assert "cannot read the child pipeline's file 'gen.yml'" in trigger.reason
    assert _detail(services, child).jobs == []
    assert secret.read_text().startswith("image: busybox")  # the host file untouched


def test_the_dotenv_report_of_a_needed_job_reaches_the_child(
    services: Services, kept: KeptJobs, project: Project, repository: RepositoryRead
) -> None:
    text = """
image: busybox:latest
stages: [build, child]
version: {stage: build, script: ["true"], artifacts: {reports: {dotenv: build.env}}}
start-child:
  stage: child
  needs: [version]
  variables: {TAG: "v$VERSION"}
  trigger: {include: ci/child.yml, strategy: depend}
"""
    parent = _start(services, project, repository, {".kapal.yml": text, "ci/child.yml": CHILD})
    store = ArtifactStore(services.settings.artifacts_dir)
    _store(store, parent, "version", "build.env", "VERSION=1.2.3\n")
    _run(services, _jobs(services, parent)["version"], JobStatus.SUCCESS)
    [child] = _plan_children(services, kept)
    variables = _detail(services, child).variables
    assert (variables["VERSION"], variables["TAG"]) == ("1.2.3", "v1.2.3")


def test_a_generated_child_is_read_from_the_object_store(
    database: Database, tmp_path: Path, project: Project
) -> None:
    # the job that made the file ran on another machine: its artifacts reach the service
    # through the object store only
    kept = KeptJobs()
    base = kept_services(database, tmp_path / "data", kept)
    settings = base.settings.model_copy(update={"object_store": str(tmp_path / "objects")})
    services = Services(settings=settings, database=database, dispatcher=kept)
    repository = register(services, project)
    parent = _start(services, project, repository, {".kapal.yml": GENERATED})
    objects = settings.open_object_store()
    assert objects is not None
    elsewhere = SharedArtifactStore(tmp_path / "other-machine", objects, scratch=tmp_path / "s")
    _store(elsewhere, parent, "gen", "gen.yml", "image: busybox:latest\nmade: {script: ['true']}\n")
    assert not settings.artifacts_dir.exists()
    _run(services, _jobs(services, parent)["gen"], JobStatus.SUCCESS)
    [child] = _plan_children(services, kept)
    assert _jobs(services, parent)["start-child"].status == "running"
    assert set(_jobs(services, child)) == {"made"}
    assert not list((settings.data_dir).glob("kapal-child-*"))  # its download removed


def test_a_newer_pipeline_auto_cancels_the_older_ones_children(
    services: Services, kept: KeptJobs, project: Project, repository: RepositoryRead
) -> None:
    text = NO_STRATEGY.replace(
        "trigger: {include: ci/child.yml}}",
        "trigger: {include: ci/child.yml}, interruptible: true}",
    )
    text = text.replace('script: ["true"]}', 'script: ["true"], interruptible: true}')
    older = _start(services, project, repository, {".kapal.yml": text, "ci/child.yml": CHILD})
    [child] = _plan_children(services, kept)
    assert _detail(services, child).status in ("pending", "running")
    _start(services, project, repository, {"README": "a newer commit"})
    assert _detail(services, older).status == "canceled"
    assert _detail(services, child).status == "canceled"


def test_a_child_file_the_commit_links_out_of_the_repository_is_never_read(
    services: Services, kept: KeptJobs, project: Project, repository: RepositoryRead, tmp_path: Path
) -> None:
    # the commit holds ci/linked.yml -> a host file holding a pipeline; the generated child
    # includes it: the planning tree keeps it a link, and the planner reads no link out
    secret = tmp_path / "host-pipeline.yml"
    secret.write_text("image: busybox:latest\nleaked: {script: ['cat /etc/shadow']}\n")
    (project.work / "ci").mkdir()
    (project.work / "ci" / "linked.yml").symlink_to(secret)
    trigger, child = _generated(
        services,
        kept,
        project,
        repository,
        "include: ci/linked.yml\nimage: busybox:latest\nmade: {script: ['true']}\n",
    )
    assert trigger.status == "failed"
    assert "ci/linked.yml" in trigger.reason
    assert "leaked" not in _jobs(services, child)
    assert _detail(services, child).jobs == []


def test_a_workers_heartbeat_sends_a_lost_child_plan_request_again_once(
    services: Services, kept: KeptJobs, project: Project, repository: RepositoryRead
) -> None:
    parent = _start(
        services, project, repository, {".kapal.yml": NO_STRATEGY, "ci/child.yml": CHILD}
    )
    [(child, _)] = kept.plans
    kept.plans.clear()  # the message was lost
    assert recover_children(services=services, older_than=-60.0) == [child]
    assert recover_children(services=services, older_than=-60.0) == []  # sent once
    assert [pipeline for pipeline, _ in kept.plans] == [child]
    _plan_children(services, kept)
    assert _jobs(services, parent)["start-child"].status == "success"
    assert _detail(services, child).reason == ""


DEPTH_CHILD = """
image: busybox:latest
stages: [build, child]
gen: {stage: build, script: ["true"], artifacts: {paths: [gen.yml]}}
grandchild:
  stage: child
  needs: [gen]
  trigger: {include: [{artifact: gen.yml, job: gen}], strategy: depend}
"""


@pytest.mark.parametrize(
    ("generated", "allowed"),
    [
        ("image: busybox:latest\nbottom: {script: ['true']}\n", True),
        ("image: busybox:latest\nthird: {trigger: {include: ci/level3.yml}}\n", False),
    ],
)
def test_a_grandchild_made_at_run_time_may_start_no_pipeline_of_its_own(
    services: Services,
    kept: KeptJobs,
    project: Project,
    repository: RepositoryRead,
    generated: str,
    allowed: bool,
) -> None:
    files: dict[str, str | None] = {
        ".kapal.yml": "child: {trigger: {include: ci/child.yml, strategy: depend}}\n",
        "ci/child.yml": DEPTH_CHILD,
        "ci/level3.yml": "image: busybox:latest\nbottom: {script: ['true']}\n",
    }
    first = _start(services, project, repository, files)
    [child] = _plan_children(services, kept)
    store = ArtifactStore(services.settings.artifacts_dir)
    _store(store, child, "gen", "gen.yml", generated)
    _run(services, _jobs(services, child)["gen"], JobStatus.SUCCESS)
    [grandchild] = _plan_children(services, kept)
    trigger = _jobs(services, child)["grandchild"]
    if allowed:  # two levels below the first pipeline
        assert trigger.status == "running"
        assert _detail(services, grandchild).parent_pipeline_id == child
        return
    assert trigger.status == "failed"
    assert "2 levels below" in trigger.reason
    assert [_detail(services, p).status for p in (grandchild, child, first)] == ["failed"] * 3
