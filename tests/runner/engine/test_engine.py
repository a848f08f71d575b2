"""The engine over `FakeBackend`: order, concurrency, statuses, retries, timeouts, cancel."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from pipeline.plan import ImageSpec, RetrySpec, Variable
from runner.engine.recorder import (
    JobStatus,
    JobStatusChanged,
    PipelineFinished,
    PipelineStarted,
    PipelineStatus,
)
from runner.errors import ImageError, UnknownJobError
from runner.runtime.fake import FakeBehaviour
from tests.runner.engine.conftest import Harness, job, plan, script_of


def named(name: str) -> Any:
    """Match the main container of job `name`."""
    return lambda spec: spec.name == name


def running_windows(h: Harness) -> dict[str, tuple[int, int]]:
    """Index of each job's first RUNNING event and of its final status event."""
    windows: dict[str, list[int]] = {}
    for i, event in enumerate(h.recorder.events):
        if isinstance(event, JobStatusChanged):
            if event.status == JobStatus.RUNNING:
                windows.setdefault(event.job, [i, -1])
            elif event.status.finished and event.job in windows:
                windows[event.job][1] = i
    return {k: (v[0], v[1]) for k, v in windows.items()}


def test_stages_run_in_order_and_a_stage_runs_in_parallel(harness: Harness) -> None:
    harness.backend.script(named("unit"), FakeBehaviour(delay=0.5))
    harness.backend.script(named("lint"), FakeBehaviour(delay=0.5))
    result = harness.run(
        plan(job("compile", "build"), job("unit"), job("lint"), job("publish", "deploy"))
    )
    assert result.passed
    w = running_windows(harness)
    assert w["compile"][1] < w["unit"][0] and w["compile"][1] < w["lint"][0]
    # unit and lint overlap: each started before the other finished
    assert w["unit"][0] < w["lint"][1] and w["lint"][0] < w["unit"][1]
    assert max(w["unit"][1], w["lint"][1]) < w["publish"][0]
    events = harness.recorder.events
    assert isinstance(events[0], PipelineStarted) and isinstance(events[-1], PipelineFinished)
    assert events[-1].status == PipelineStatus.SUCCESS


def test_needs_start_a_job_before_its_stage(harness: Harness) -> None:
    harness.backend.script(named("slow-build"), FakeBehaviour(delay=0.4))
    result = harness.run(
        plan(job("slow-build", "build"), job("early", "test", needs=()), job("late", "test"))
    )
    assert result.passed
    w = running_windows(harness)
    assert w["early"][1] < w["slow-build"][1]  # finished while the build still ran
    assert w["late"][0] > w["slow-build"][1]


def test_concurrency_limit_is_respected(harness: Harness) -> None:
    for name in "abcde":
        harness.backend.script(named(name), FakeBehaviour(delay=0.15))
    harness.run(plan(*(job(n) for n in "abcde")), concurrency=2)
    running, peak = 0, 0
    for event in harness.recorder.of_type(JobStatusChanged):
        if event.status == JobStatus.RUNNING:
            running += 1
        elif event.status.finished:
            running -= 1
        peak = max(peak, running)
    assert peak == 2


def test_a_failing_job_fails_the_pipeline_and_skips_later_jobs(harness: Harness) -> None:
    harness.backend.script(named("unit"), FakeBehaviour(exit_code=3, stdout="boom"))
    result = harness.run(
        plan(
            job("compile", "build"),
            job("unit"),
            job("publish", "deploy"),
            job("report", "deploy", when="on_failure"),
            job("cleanup", "deploy", when="always"),
        )
    )
    assert result.status == PipelineStatus.FAILED and not result.passed
    assert result.jobs["unit"].status == JobStatus.FAILED
    assert result.jobs["unit"].exit_code == 3
    assert "exited with code 3" in result.jobs["unit"].reason
    assert result.jobs["publish"].status == JobStatus.SKIPPED
    assert "unit failed" in result.jobs["publish"].reason
    assert result.jobs["report"].status == JobStatus.SUCCESS
    assert result.jobs["cleanup"].status == JobStatus.SUCCESS
    assert "boom" in harness.recorder.log("unit")


def test_on_failure_job_is_skipped_when_all_pass(harness: Harness) -> None:
    result = harness.run(plan(job("unit"), job("report", "deploy", when="on_failure")))
    assert result.passed
    assert result.jobs["report"].status == JobStatus.SKIPPED


@pytest.mark.parametrize(("code", "passes"), [(3, True), (4, False)])
def test_allow_failure_exit_codes(harness: Harness, code: int, passes: bool) -> None:
    harness.backend.script(named("flaky"), FakeBehaviour(exit_code=code))
    result = harness.run(
        plan(
            job("flaky", allow_failure=True, allow_failure_exit_codes=(3,)),
            job("after", "deploy"),
        )
    )
    assert result.passed is passes
    assert result.jobs["flaky"].status == JobStatus.FAILED
    assert result.jobs["flaky"].allowed_failure is passes
    assert result.jobs["after"].status == (JobStatus.SUCCESS if passes else JobStatus.SKIPPED)


def test_allow_failure_without_codes(harness: Harness) -> None:
    harness.backend.script(named("flaky"), FakeBehaviour(exit_code=9))
    result = harness.run(plan(job("flaky", allow_failure=True), job("after", "deploy")))
    assert result.passed and result.jobs["after"].status == JobStatus.SUCCESS


def test_retry_runs_the_job_again_until_it_passes(harness: Harness) -> None:
    attempts: list[int] = []

    def flaky(spec: Any) -> FakeBehaviour:
        attempts.append(1)
        return FakeBehaviour(exit_code=1 if len(attempts) < 2 else 0)

    harness.backend.script(named("flaky"), flaky)
    result = harness.run(plan(job("flaky", retry=RetrySpec(max=2))))
    assert result.passed and len(attempts) == 2
    assert result.jobs["flaky"].attempts == 2
    assert harness.recorder.statuses("flaky") == [
        JobStatus.CREATED,
        JobStatus.PENDING,
        JobStatus.RUNNING,
        JobStatus.FAILED,
        JobStatus.RUNNING,
        JobStatus.SUCCESS,
    ]


def test_retry_stops_at_max(harness: Harness) -> None:
    harness.backend.script(named("bad"), FakeBehaviour(exit_code=2))
    result = harness.run(plan(job("bad", retry=RetrySpec(max=2))))
    assert result.jobs["bad"].status == JobStatus.FAILED and result.jobs["bad"].attempts == 3


def test_retry_when_and_exit_codes_limit_what_is_retried(harness: Harness) -> None:
    harness.backend.script(named("a"), FakeBehaviour(exit_code=2))
    harness.backend.script(named("b"), FakeBehaviour(exit_code=2))
    result = harness.run(
        plan(
            job("a", retry=RetrySpec(max=2, when=("stuck_or_timeout_failure",))),
            job("b", retry=RetrySpec(max=2, exit_codes=(5,))),
        )
    )
    assert result.jobs["a"].attempts == 1
    assert result.jobs["b"].attempts == 1


def test_timeout_fails_the_job(harness: Harness) -> None:
    harness.backend.script(named("slow"), FakeBehaviour(delay=30))
    result = harness.run(plan(job("slow", timeout_seconds=1)))
    assert result.jobs["slow"].status == JobStatus.FAILED
    assert "timed out" in result.jobs["slow"].reason
    started = [s for s in harness.backend.started if s.name == "slow"]
    assert started[0].timeout == 1.0


def test_manual_jobs_wait_unless_asked(harness: Harness) -> None:
    the_plan = plan(job("unit"), job("release", "deploy", when="manual", allow_failure=True))
    result = harness.run(the_plan)
    assert result.passed
    assert result.jobs["release"].status == JobStatus.MANUAL
    assert "--manual" in result.jobs["release"].reason
    assert not [s for s in harness.backend.started if s.name == "release"]
    result = harness.run(the_plan, manual=True)
    assert result.jobs["release"].status == JobStatus.SUCCESS
    result = harness.run(the_plan, only=frozenset({"release"}))
    assert result.jobs["release"].status == JobStatus.SUCCESS
    assert result.jobs["unit"].status == JobStatus.SUCCESS  # it waits for unit


def test_only_runs_the_named_job_and_what_it_waits_for(harness: Harness) -> None:
    result = harness.run(
        plan(job("compile", "build"), job("unit"), job("lint"), job("publish", "deploy")),
        only=frozenset({"unit"}),
    )
    assert result.jobs["compile"].status == JobStatus.SUCCESS
    assert result.jobs["unit"].status == JobStatus.SUCCESS
    assert result.jobs["lint"].status == JobStatus.SKIPPED
    assert result.jobs["publish"].status == JobStatus.SKIPPED


def test_unknown_job_and_stage_are_clear_errors(harness: Harness) -> None:
    with pytest.raises(UnknownJobError, match=r"no job named .nope.*unit"):
        harness.run(plan(job("unit")), only=frozenset({"nope"}))
    with pytest.raises(UnknownJobError, match="no stage named 'qa'"):
        harness.run(plan(job("unit")), stage="qa")


def test_missing_images_are_reported_before_anything_runs(harness: Harness) -> None:
    the_plan = plan(
        job("unit", image=ImageSpec(name="nope:1")), job("lint", image=ImageSpec(name="nope:1"))
    )
    expected = r"(?s)nope:1 \(used by lint, unit\).*kapal image bootstrap"
    with pytest.raises(ImageError, match=expected):
        harness.run(the_plan)
    assert harness.backend.started == []


def test_variables_expand_in_image_names(harness: Harness) -> None:
    harness.images.add("registry.test/app:7")
    result = harness.run(
        plan(
            job("unit", image=ImageSpec(name="$REG/app:$V", has_variables=True)),
            variables={"REG": "registry.test", "V": "7"},
        )
    )
    assert result.passed


def test_cancel_stops_running_jobs_and_cancels_the_rest(harness: Harness) -> None:
    harness.backend.script(named("long"), FakeBehaviour(delay=60))
    engine = harness.engine()
    the_plan = plan(job("long"), job("other", "test", needs=()), job("later", "deploy"))

    def cancel_when_running() -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if harness.recorder.final_status("long") == JobStatus.RUNNING:
                engine.cancel()
                return
            time.sleep(0.01)

    thread = threading.Thread(target=cancel_when_running)
    thread.start()
    result = engine.run(the_plan, harness.source)
    thread.join()
    assert result.status == PipelineStatus.CANCELED
    assert result.jobs["long"].status == JobStatus.CANCELED
    assert result.jobs["later"].status == JobStatus.CANCELED
    assert harness.backend.running() == []
    setups = [c for c in harness.backend.calls if c[0] == "setup"]
    teardowns = [c for c in harness.backend.calls if c[0] == "teardown"]
    assert len(setups) == len(teardowns)


def _cancel_when(harness: Harness, engine: Any, name: str, count: int = 1) -> threading.Thread:
    """A thread calling `engine.cancel()` `count` times once container `name` has started."""

    def cancel() -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if any(spec.name == name for spec in harness.backend.started):
                for _ in range(count):
                    engine.cancel()
                    time.sleep(0.05)
                return
            time.sleep(0.01)

    return threading.Thread(target=cancel)


def test_a_canceled_job_still_runs_its_after_script(harness: Harness) -> None:
    # GitLab 17.0+: after_script runs for canceled jobs, with CI_JOB_STATUS=canceled
    harness.backend.script(named("long"), FakeBehaviour(delay=60))
    harness.backend.script(named("long-after"), FakeBehaviour(stdout="tidied up"))
    engine = harness.engine()
    thread = _cancel_when(harness, engine, "long")
    thread.start()
    result = engine.run(plan(job("long", after_script=("echo tidy",))), harness.source)
    thread.join()
    assert result.jobs["long"].status == JobStatus.CANCELED
    (after,) = [s for s in harness.backend.started if s.name == "long-after"]
    assert after.env["CI_JOB_STATUS"] == "canceled"
    assert "tidied up" in harness.recorder.log("long")
    assert harness.backend.running() == []


def test_a_second_cancel_stops_the_after_script_too(harness: Harness) -> None:
    harness.backend.script(named("long"), FakeBehaviour(delay=60))
    harness.backend.script(named("long-after"), FakeBehaviour(delay=60, stdout="never printed"))
    engine = harness.engine()
    first = _cancel_when(harness, engine, "long")
    second = _cancel_when(harness, engine, "long-after")
    first.start()
    second.start()
    result = engine.run(plan(job("long", after_script=("sleep 60",))), harness.source)
    first.join()
    second.join()
    assert result.jobs["long"].status == JobStatus.CANCELED
    assert any("after_script canceled" in line for line in harness.recorder.log("long"))
    assert harness.backend.running() == []


def test_redundant_cancel_respects_interruptible(harness: Harness) -> None:
    harness.backend.script(named("deploy-ish"), FakeBehaviour(delay=0.5))
    engine = harness.engine()
    answers: list[bool] = []

    def try_cancel() -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if harness.recorder.final_status("deploy-ish") == JobStatus.RUNNING:
                answers.append(engine.cancel(redundant=True))
                return
            time.sleep(0.01)

    thread = threading.Thread(target=try_cancel)
    thread.start()
    result = engine.run(plan(job("deploy-ish", interruptible=False)), harness.source)
    thread.join()
    assert answers == [False] and result.passed


def test_deploy_jobs_fail_clearly_without_a_shipper(harness: Harness) -> None:
    from pipeline.plan import DeploySpec

    result = harness.run(
        plan(job("unit"), job("ship", "deploy", deploy=DeploySpec(image="app:1", to="r/app:1")))
    )
    assert not result.passed
    assert result.jobs["ship"].status == JobStatus.FAILED
    assert result.jobs["ship"].reason == "this runner cannot run deploy: jobs"


def test_script_lines_and_predefined_variables_reach_the_container(harness: Harness) -> None:
    scripts: list[str] = []

    def capture(spec: Any) -> FakeBehaviour:
        scripts.append(script_of(spec))
        return FakeBehaviour()

    harness.backend.script(named("unit"), capture)
    harness.run(
        plan(
            job(
                "unit",
                script=("echo one", "make test"),
                before_script=("setup.sh",),
                variables=(Variable(name="GREETING", value="hi $CI_JOB_NAME", source="job"),),
            )
        ),
        project_dir="/builds/demo",
    )
    (spec,) = [s for s in harness.backend.started if s.name == "unit"]
    (text,) = scripts
    assert text.index("setup.sh") < text.index("echo one") < text.index("make test")
    assert "'$ make test'" in text
    assert spec.env["CI_PROJECT_DIR"] == "/builds/demo"
    assert spec.env["CI_JOB_NAME"] == "unit"
    assert spec.env["GREETING"] == "hi unit"
    assert spec.env["CI_JOB_ID"].isdigit()
    assert spec.cwd == "/builds/demo"
    assert any(m.target == "/builds/demo" and not m.read_only for m in spec.mounts)


def test_after_script_runs_after_a_failure_with_the_job_status(harness: Harness) -> None:
    harness.backend.script(named("unit"), FakeBehaviour(exit_code=1))
    harness.backend.script(named("unit-after"), FakeBehaviour(exit_code=7, stdout="cleaning"))
    result = harness.run(plan(job("unit", after_script=("echo cleanup",))))
    assert result.jobs["unit"].status == JobStatus.FAILED
    assert result.jobs["unit"].exit_code == 1  # after_script's own failure does not change it
    (after,) = [s for s in harness.backend.started if s.name == "unit-after"]
    assert after.env["CI_JOB_STATUS"] == "failed"
    assert after.timeout == 300.0
    log = harness.recorder.log("unit")
    assert "cleaning" in log
    assert any("after_script exited with code 7" in line for line in log)


def test_recorder_sees_each_job_through_its_statuses(harness: Harness) -> None:
    harness.run(plan(job("unit")))
    assert harness.recorder.statuses("unit") == [
        JobStatus.CREATED,
        JobStatus.PENDING,
        JobStatus.RUNNING,
        JobStatus.SUCCESS,
    ]
    (final,) = [e for e in harness.recorder.of_type(JobStatusChanged) if e.status.finished]
    assert final.exit_code == 0 and final.duration is not None


def test_a_blocking_manual_job_holds_later_stages(harness: Harness) -> None:
    result = harness.run(
        plan(job("gate", "build", when="manual", allow_failure=False), job("unit"))
    )
    assert result.jobs["gate"].status == JobStatus.MANUAL
    assert result.jobs["unit"].status == JobStatus.SKIPPED
    assert "blocked by the manual job gate" in result.jobs["unit"].reason


def test_resource_group_jobs_never_overlap(harness: Harness) -> None:
    for name in ("deploy-a", "deploy-b", "free"):
        harness.backend.script(named(name), FakeBehaviour(delay=0.2))
    result = harness.run(
        plan(
            job("deploy-a", resource_group="prod"),
            job("deploy-b", resource_group="prod"),
            job("free"),
        )
    )
    assert result.passed
    w = running_windows(harness)
    a, b, free = w["deploy-a"], w["deploy-b"], w["free"]
    assert a[1] < b[0] or b[1] < a[0]  # one after the other
    assert free[0] < max(a[0], b[0])  # the free job did not wait for the group


def test_a_workspace_that_cannot_be_made_ends_the_pipeline_cleanly(harness: Harness) -> None:
    from runner.engine.recorder import PipelineFinished
    from runner.errors import WorkspaceError

    def broken(dest: object) -> None:
        raise WorkspaceError("commit abc is not in repo.git")

    engine = harness.engine()
    with pytest.raises(WorkspaceError):
        engine.run(plan(job("unit")), broken)
    assert isinstance(harness.recorder.events[-1], PipelineFinished)
    assert harness.backend.started == []


def test_stage_runs_that_stage_and_what_it_waits_for(harness: Harness) -> None:
    result = harness.run(
        plan(job("compile", "build"), job("unit"), job("lint"), job("publish", "deploy")),
        stage="test",
    )
    assert [n for n, r in result.jobs.items() if r.status == JobStatus.SUCCESS] == [
        "compile",
        "unit",
        "lint",
    ]
    assert result.jobs["publish"].status == JobStatus.SKIPPED
