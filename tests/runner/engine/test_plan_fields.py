"""Plan fields the engine acts on at run time (issue 10): cache policy variables and fallback
keys, delayed jobs, auto-cancel on job failure, ignored keywords; over the fake backend."""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.plan import CacheSpec, ImageSpec, ServiceSpec
from runner.engine.recorder import JobStatus, JobStatusChanged, PipelineStatus
from runner.engine.schedule import (
    JobState,
    ScheduleOptions,
    Step,
    auto_cancel_reason,
    next_steps,
    pipeline_status,
    start_delay,
)
from runner.runtime.fake import FakeBehaviour
from tests.runner.engine.conftest import Harness, job, plan, workspace_of
from tests.runner.engine.test_schedule import random_plans


def named(name: str) -> Any:
    """Match the main container of job `name`."""
    return lambda spec: spec.name == name


def counting(seen: list[str], name: str = "count") -> Any:
    """A behaviour that records `.deps/<name>` (or "none") and writes it back incremented."""

    def behave(spec: Any) -> FakeBehaviour:
        path = workspace_of(spec) / ".deps" / name
        before = path.read_text() if path.exists() else "none"
        seen.append(before)
        path.parent.mkdir(exist_ok=True)
        path.write_text(str(int(before) + 1) if before.isdigit() else "1")
        return FakeBehaviour()

    return behave


def read_cache(harness: Harness, key: str) -> str:
    """The count saved in cache `key`."""
    return (harness.caches.root / harness.caches.dir_name(key) / ".deps" / "count").read_text()


# -- cache: policy with variables -----------------------------------------------------------


def test_cache_policy_variable_is_expanded_per_job(harness: Harness) -> None:
    seen: list[str] = []
    harness.backend.script(named("unit"), counting(seen))
    cache = CacheSpec(key="deps", paths=(".deps/",), policy_text="$CACHE_POLICY")
    for policy in ("pull-push", "push", "pull", "pull"):
        harness.run(plan(job("unit", caches=(cache,)), variables={"CACHE_POLICY": policy}))
    # pull-push: none -> saves 1; push: restores nothing, saves 1; pull: restores 1, saves nothing
    assert seen == ["none", "none", "1", "1"]
    assert harness.recorder.final_status("unit") == JobStatus.SUCCESS


def test_cache_policy_variable_with_an_unknown_value_fails_the_job(harness: Harness) -> None:
    cache = CacheSpec(key="deps", paths=(".deps/",), policy_text="${CACHE_POLICY}")
    result = harness.run(plan(job("unit", caches=(cache,)), variables={"CACHE_POLICY": "puhs"}))
    unit = result.jobs["unit"]
    assert unit.status == JobStatus.FAILED
    assert "'${CACHE_POLICY}'" in unit.reason and "'puhs'" in unit.reason
    assert "pull, push or pull-push" in unit.reason
    assert harness.backend.started == []  # nothing ran


def test_cache_policy_variable_left_unset_fails_the_job(harness: Harness) -> None:
    cache = CacheSpec(key="deps", paths=(".deps/",), policy_text="$CACHE_POLICY")
    result = harness.run(plan(job("unit", caches=(cache,))))
    assert result.jobs["unit"].status == JobStatus.FAILED
    assert "expands to ''" in result.jobs["unit"].reason


# -- cache: fallback_keys -------------------------------------------------------------------


def test_fallback_key_is_restored_when_the_key_has_no_cache(harness: Harness) -> None:
    seen: list[str] = []
    harness.backend.script(named("unit"), counting(seen))
    main = CacheSpec(key="deps-main", paths=(".deps/",))
    harness.run(plan(job("unit", caches=(main,))))  # saves deps-main = 1
    branch = CacheSpec(
        key="deps-$BRANCH",
        paths=(".deps/",),
        fallback_keys=("deps-missing", "deps-$DEFAULT", "deps-other"),
    )
    variables = {"BRANCH": "feature", "DEFAULT": "main"}
    harness.run(plan(job("unit", caches=(branch,)), variables=variables))
    assert seen == ["none", "1"]
    log = harness.recorder.log("unit")
    assert any("restored the fallback cache 'deps-main'" in line for line in log)
    # saved to the key only: the fallback cache is untouched, the branch's has 2
    assert read_cache(harness, "deps-main") == "1"
    assert read_cache(harness, "deps-feature") == "2"
    harness.run(plan(job("unit", caches=(branch,)), variables=variables))
    assert seen[-1] == "2"  # the key's own cache now wins over the fallback


def test_cache_fallback_key_variable_is_the_last_resort(harness: Harness) -> None:
    seen: list[str] = []
    harness.backend.script(named("unit"), counting(seen))
    harness.run(plan(job("unit", caches=(CacheSpec(key="global", paths=(".deps/",)),))))
    own = CacheSpec(key="mine", paths=(".deps/",), fallback_keys=("nothing-here",))
    harness.run(plan(job("unit", caches=(own,)), variables={"CACHE_FALLBACK_KEY": "global"}))
    assert seen == ["none", "1"]
    harness.run(plan(job("unit", caches=(own,)), variables={"CACHE_FALLBACK_KEY": "x-protected"}))
    assert seen[-1] == "2"  # the key's own cache (saved by the run before)


def test_fallback_keys_are_not_used_without_pull(harness: Harness) -> None:
    seen: list[str] = []
    harness.backend.script(named("unit"), counting(seen))
    harness.run(plan(job("unit", caches=(CacheSpec(key="main", paths=(".deps/",)),))))
    push = CacheSpec(key="b", paths=(".deps/",), policy="push", fallback_keys=("main",))
    harness.run(plan(job("unit", caches=(push,))))
    assert seen == ["none", "none"]


# -- when: delayed (scheduler) --------------------------------------------------------------

DELAYED = plan(
    job("compile", "build"),
    job("smoke", start_in_seconds=600),
    job("publish", "deploy"),
)


def state(status: JobStatus, allowed: bool = False) -> JobState:
    return JobState(status, allowed)


def test_a_delayed_job_is_scheduled_when_it_could_start() -> None:
    assert next_steps(DELAYED, {}) == [Step("compile", JobStatus.PENDING, "")]
    steps = next_steps(DELAYED, {"compile": state(JobStatus.SUCCESS)})
    assert steps == [Step("smoke", JobStatus.SCHEDULED, "delayed: starts 10m from now")]


def test_a_scheduled_job_waits_until_the_driver_says_it_is_due() -> None:
    waiting = {"compile": state(JobStatus.SUCCESS), "smoke": state(JobStatus.SCHEDULED)}
    assert next_steps(DELAYED, waiting) == []  # the later stage waits for it too
    assert pipeline_status(DELAYED, waiting) == PipelineStatus.RUNNING
    due = ScheduleOptions(due=frozenset({"smoke"}))
    assert next_steps(DELAYED, waiting, due) == [Step("smoke", JobStatus.PENDING, "")]
    assert start_delay(DELAYED.job("smoke")) == 600.0


def test_a_delayed_job_after_a_failure_is_skipped_not_scheduled() -> None:
    steps = next_steps(DELAYED, {"compile": state(JobStatus.FAILED)})
    assert [(s.job, s.status) for s in steps] == [
        ("smoke", JobStatus.SKIPPED),
        ("publish", JobStatus.SKIPPED),
    ]


def test_canceling_the_pipeline_cancels_a_scheduled_job() -> None:
    waiting = {"compile": state(JobStatus.SUCCESS), "smoke": state(JobStatus.SCHEDULED)}
    steps = next_steps(DELAYED, waiting, ScheduleOptions(canceled=True))
    assert steps == [
        Step("smoke", JobStatus.CANCELED, "pipeline canceled"),
        Step("publish", JobStatus.CANCELED, "pipeline canceled"),
    ]


def test_a_due_job_of_a_busy_resource_group_keeps_waiting() -> None:
    the_plan = plan(
        job("deploy-a", resource_group="prod"),
        job("deploy-b", resource_group="prod", start_in_seconds=5),
    )
    busy = {"deploy-a": state(JobStatus.RUNNING), "deploy-b": state(JobStatus.SCHEDULED)}
    assert next_steps(the_plan, busy, ScheduleOptions(due=frozenset({"deploy-b"}))) == []


# -- workflow: auto_cancel: on_job_failure (scheduler) --------------------------------------

AUTO = replace(
    plan(
        job("unit"),
        job("lint"),
        job("slow"),
        job("cleanup", "deploy", when="always"),
        job("optional", allow_failure=True),
    ),
    auto_cancel_on_job_failure="all",
)


def test_a_failed_job_cancels_the_jobs_not_started() -> None:
    failed = {"unit": state(JobStatus.FAILED), "slow": state(JobStatus.RUNNING)}
    reason = "unit failed (workflow: auto_cancel: on_job_failure: all)"
    assert auto_cancel_reason(AUTO, failed) == reason
    assert next_steps(AUTO, failed) == [
        Step("lint", JobStatus.CANCELED, reason),
        Step("cleanup", JobStatus.CANCELED, reason),  # `when: always` too, as in GitLab
        Step("optional", JobStatus.CANCELED, reason),
    ]


def test_failures_allowed_to_fail_cancel_nothing() -> None:
    allowed = {"optional": state(JobStatus.FAILED, allowed=True)}
    assert auto_cancel_reason(AUTO, allowed) is None
    assert all(s.status == JobStatus.PENDING for s in next_steps(AUTO, allowed))


def test_without_auto_cancel_a_failure_cancels_nothing() -> None:
    plain = replace(AUTO, auto_cancel_on_job_failure="none")
    failed = {"unit": state(JobStatus.FAILED)}
    assert auto_cancel_reason(plain, failed) is None
    assert {s.status for s in next_steps(plain, failed)} == {JobStatus.PENDING}


# -- the Engine drives them ----------------------------------------------------------------


def test_engine_starts_a_delayed_job_after_its_start_in(harness: Harness) -> None:
    the_plan = plan(job("compile", "build"), job("smoke", start_in_seconds=1))
    started = time.monotonic()
    result = harness.run(the_plan)
    took = time.monotonic() - started
    assert result.passed
    assert harness.recorder.statuses("smoke") == [
        JobStatus.CREATED,
        JobStatus.SCHEDULED,
        JobStatus.PENDING,
        JobStatus.RUNNING,
        JobStatus.SUCCESS,
    ]
    # it did wait its second (a lower bound: how much longer it took is the machine's business)
    assert took >= 1.0
    (scheduled,) = [
        e
        for e in harness.recorder.of_type(JobStatusChanged)
        if e.job == "smoke" and e.status == JobStatus.SCHEDULED
    ]
    assert scheduled.reason == "delayed: starts 1s from now"


def test_engine_cancels_a_job_while_it_waits(harness: Harness) -> None:
    engine = harness.engine()
    the_plan = plan(
        job("compile", "build"), job("smoke", start_in_seconds=3600), job("after", "deploy")
    )

    def cancel_once_scheduled() -> None:
        while JobStatus.SCHEDULED not in harness.recorder.statuses("smoke"):
            time.sleep(0.01)
        engine.cancel()

    helper = threading.Thread(target=cancel_once_scheduled)
    helper.start()
    result = engine.run(the_plan, harness.source)
    helper.join()
    assert result.status == PipelineStatus.CANCELED
    assert result.jobs["smoke"].status == JobStatus.CANCELED
    assert result.jobs["smoke"].reason == "pipeline canceled"
    assert [s.name for s in harness.backend.started] == ["compile"]


def test_engine_auto_cancel_stops_running_jobs_and_cancels_the_rest(harness: Harness) -> None:
    harness.backend.script(named("unit"), FakeBehaviour(exit_code=1))
    harness.backend.script(named("slow"), FakeBehaviour(delay=300))
    the_plan = replace(
        plan(
            job("unit"),
            job("slow"),
            job("publish", "deploy"),
            job("report", "deploy", when="always"),
        ),
        auto_cancel_on_job_failure="all",
    )
    result = harness.run(the_plan)
    reason = "unit failed (workflow: auto_cancel: on_job_failure: all)"
    assert result.status == PipelineStatus.FAILED
    assert result.jobs["unit"].status == JobStatus.FAILED
    assert (result.jobs["slow"].status, result.jobs["slow"].reason) == (JobStatus.CANCELED, reason)
    for name in ("publish", "report"):
        assert (result.jobs[name].status, result.jobs[name].reason) == (JobStatus.CANCELED, reason)


def test_engine_without_auto_cancel_lets_other_jobs_finish(harness: Harness) -> None:
    harness.backend.script(named("unit"), FakeBehaviour(exit_code=1))
    harness.backend.script(named("slow"), FakeBehaviour(delay=0.3))
    the_plan = plan(job("unit"), job("slow"), job("report", "deploy", when="always"))
    result = harness.run(the_plan)
    assert result.jobs["slow"].status == JobStatus.SUCCESS
    assert result.jobs["report"].status == JobStatus.SUCCESS


# -- ignored keywords ------------------------------------------------------------------------

IGNORED = (("id_tokens", "no OIDC token is issued"), ("secrets", "no Vault secret is fetched"))


def test_ignored_keywords_are_logged_at_job_start(harness: Harness) -> None:
    harness.run(plan(job("unit", ignored_keywords=IGNORED)))
    log = harness.recorder.log("unit")
    assert log[:2] == [
        "kapal: ignoring `id_tokens`: no OIDC token is issued",
        "kapal: ignoring `secrets`: no Vault secret is fetched",
    ]


def test_a_failure_names_the_ignored_keywords(harness: Harness) -> None:
    harness.backend.script(named("unit"), FakeBehaviour(exit_code=2))
    harness.backend.script(named("plain"), FakeBehaviour(exit_code=2))
    result = harness.run(plan(job("unit", ignored_keywords=IGNORED), job("plain")))
    assert result.jobs["unit"].reason == (
        "exited with code 2; it uses keywords kapal ignores, which may be why (`id_tokens`: no "
        "OIDC token is issued; `secrets`: no Vault secret is fetched)"
    )
    assert result.jobs["plain"].reason == "exited with code 2"


# -- pull_policy -----------------------------------------------------------------------------


def test_images_are_resolved_with_their_pull_policy(harness: Harness) -> None:
    harness.images.add("redis:7")
    unit = job(
        "unit",
        image=ImageSpec(name="busybox", pull_policy=("always", "if-not-present")),
        services=(ServiceSpec(name="redis:7", aliases=("redis",), pull_policy=("never",)),),
    )
    assert harness.run(plan(unit)).passed
    assert harness.images.resolved == [
        ("busybox", ("always", "if-not-present")),
        ("redis:7", ("never",)),
    ]


# -- a driven pipeline with delayed jobs and auto-cancel (property) ---------------------------


@settings(max_examples=150, deadline=None)
@given(random_plans(), st.data())
def test_delayed_and_auto_canceled_pipelines_always_finish(
    the_plan: Any, data: st.DataObject
) -> None:
    """Some jobs delayed, auto-cancel on or off, jobs ending and delays passing as chance says:
    every job ends finished, and once a job failed (not allowed to) under `on_job_failure:
    all` no job starts any more."""
    delayed = data.draw(st.sets(st.sampled_from([j.name for j in the_plan.jobs])))
    the_plan = replace(
        the_plan,
        jobs=tuple(
            replace(j, start_in_seconds=60) if j.name in delayed and not j.manual else j
            for j in the_plan.jobs
        ),
        auto_cancel_on_job_failure=data.draw(st.sampled_from(["none", "all"])),
    )
    current: dict[str, JobState] = {}
    due: set[str] = set()
    for _ in range(200):
        options = ScheduleOptions(held="skip", due=frozenset(due))
        stopped = auto_cancel_reason(the_plan, current) is not None
        for step in next_steps(the_plan, current, options):
            assert not (stopped and step.status == JobStatus.PENDING), step
            current[step.job] = JobState(step.status)
        waiting = [n for n, s in current.items() if s.status == JobStatus.SCHEDULED]
        running = [n for n, s in current.items() if s.status == JobStatus.PENDING]
        if not waiting and not running:
            break
        if waiting and (not running or data.draw(st.booleans())):
            due.add(data.draw(st.sampled_from(sorted(waiting))))  # its start_in passed
            continue
        name = data.draw(st.sampled_from(sorted(running)))
        ended = data.draw(st.sampled_from((JobStatus.SUCCESS, JobStatus.FAILED)))
        allowed = ended == JobStatus.FAILED and the_plan.job(name).allow_failure
        current[name] = JobState(ended, allowed)
    assert {j.name for j in the_plan.jobs} == set(current)
    assert all(state.status.finished for state in current.values())
