"""`JobRunner` on its own, as the server's tasks use it: one attempt, no `Engine` around it."""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path
from typing import Any

from pipeline.plan import ArtifactsSpec, CacheSpec, Job
from runner.engine.job_runner import JobOptions, JobOutcome, JobRunner, job_folder
from runner.engine.recorder import JobStatus, TestReport
from runner.errors import WorkspaceError
from runner.runtime.backend import ContainerSpec
from runner.runtime.fake import FakeBehaviour
from tests.runner.engine.conftest import Harness, job, plan, workspace_of

JUNIT = '<testsuite name="s"><testcase classname="c" name="{name}" time="0.1"/></testsuite>'


def runner(harness: Harness, the_job: Job, **kwargs: Any) -> JobRunner:
    """A runner for `the_job` alone in its plan, over the harness's fake parts."""
    kwargs.setdefault("plan", plan(the_job))
    kwargs.setdefault("source", harness.source)
    return JobRunner(
        the_job,
        pipeline_id=7,
        job_id=7001,
        work_dir=harness.tmp_path / "work",
        backend=harness.backend,
        images=harness.images,
        artifacts=harness.artifacts,
        caches=harness.caches,
        recorder=harness.recorder,
        **kwargs,
    )


def started_after(harness: Harness, name: str, timeout: float = 10.0) -> bool:
    """Wait until a container called `name` has started."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(spec.name == name for spec in harness.backend.started):
            return True
        time.sleep(0.01)
    return False


def test_one_attempt_runs_from_its_source_to_its_artifacts(harness: Harness) -> None:
    def writes_dist(spec: ContainerSpec) -> FakeBehaviour:
        workspace = workspace_of(spec)
        assert (workspace / "README").read_text() == "hello\n"  # filled from the source
        (workspace / "dist").mkdir()
        (workspace / "dist" / "app").write_text("built\n")
        return FakeBehaviour(stdout="compiled")

    harness.backend.script(lambda spec: spec.name == "compile", writes_dist)
    the_job = job("compile", "build", artifacts=ArtifactsSpec(paths=("dist/",)))
    outcome = runner(harness, the_job, attempt=2).run()
    assert outcome == JobOutcome(JobStatus.SUCCESS, exit_code=0)
    assert "compiled" in harness.recorder.log("compile")
    assert harness.artifacts.files(7, "compile") == ["dist/app"]
    (spec,) = harness.backend.started
    assert spec.env["CI_JOB_ID"] == "7001" and spec.env["CI_JOB_ATTEMPT"] == "2"
    assert not (harness.tmp_path / "work" / f"{job_folder('compile')}-2").exists()


def test_a_failing_script_is_an_outcome(harness: Harness) -> None:
    harness.backend.script(lambda spec: spec.name == "unit", FakeBehaviour(exit_code=3))
    outcome = runner(harness, job("unit")).run()
    assert outcome.status == JobStatus.FAILED
    assert outcome.exit_code == 3
    assert outcome.failure_kind == "script_failure"


def test_a_workspace_that_cannot_be_made_is_an_outcome_not_an_exception(
    harness: Harness,
) -> None:
    def broken(dest: Path) -> None:
        raise WorkspaceError("commit abc is not in repo.git")

    outcome = runner(harness, job("unit"), source=broken).run()
    assert outcome.status == JobStatus.FAILED
    assert outcome.failure_kind == "runner_system_failure"
    assert "commit abc" in outcome.reason
    assert harness.backend.started == []


def test_cancel_from_another_thread_stops_the_job_and_runs_after_script(
    harness: Harness,
) -> None:
    harness.backend.script(lambda spec: spec.name == "deploy", FakeBehaviour(delay=60))
    harness.backend.script(
        lambda spec: spec.name == "deploy-after", FakeBehaviour(stdout="tidied up")
    )
    the_runner = runner(harness, job("deploy", after_script=("echo tidy",)))
    outcomes: list[JobOutcome] = []
    thread = threading.Thread(target=lambda: outcomes.append(the_runner.run()))
    thread.start()
    assert started_after(harness, "deploy")
    the_runner.cancel()
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert outcomes[0].status == JobStatus.CANCELED
    (after,) = [s for s in harness.backend.started if s.name == "deploy-after"]
    assert after.env["CI_JOB_STATUS"] == "canceled"
    assert "tidied up" in harness.recorder.log("deploy")
    assert harness.backend.running() == []


def test_a_forced_cancel_stops_the_after_script_too(harness: Harness) -> None:
    harness.backend.script(lambda spec: spec.name == "deploy", FakeBehaviour(delay=60))
    harness.backend.script(lambda spec: spec.name == "deploy-after", FakeBehaviour(delay=60))
    the_runner = runner(harness, job("deploy", after_script=("sleep 60",)))
    outcomes: list[JobOutcome] = []
    thread = threading.Thread(target=lambda: outcomes.append(the_runner.run()))
    thread.start()
    assert started_after(harness, "deploy")
    the_runner.cancel()
    assert started_after(harness, "deploy-after")
    the_runner.cancel(force=True)
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert outcomes[0].status == JobStatus.CANCELED
    assert any("after_script canceled" in line for line in harness.recorder.log("deploy"))
    assert harness.backend.running() == []


def test_cancel_before_run_starts_nothing(harness: Harness) -> None:
    the_runner = runner(harness, job("unit"))
    the_runner.cancel()
    assert the_runner.run().status == JobStatus.CANCELED
    assert harness.backend.started == []


def test_a_junit_report_linked_to_a_host_file_is_not_read(harness: Harness) -> None:
    host_report = harness.tmp_path / "host-report.xml"
    host_report.write_text(JUNIT.format(name="HOST-FILE-CONTENT"))

    def links_report(spec: ContainerSpec) -> FakeBehaviour:
        workspace = workspace_of(spec)
        os.symlink(host_report, workspace / "report.xml")
        (workspace / "own.xml").write_text(JUNIT.format(name="own-case"))
        return FakeBehaviour()

    harness.backend.script(lambda spec: spec.name == "unit", links_report)
    the_job = job("unit", artifacts=ArtifactsSpec(junit=("report.xml", "own.xml")))
    assert runner(harness, the_job).run().status == JobStatus.SUCCESS
    names = [c.name for r in harness.recorder.of_type(TestReport) for c in r.cases]
    assert names == ["own-case"]
    assert "HOST-FILE-CONTENT" not in repr(harness.recorder.events)
    assert any(
        "cannot read the JUnit report report.xml" in line for line in harness.recorder.log("unit")
    )


def test_cache_key_files_linked_out_of_the_project_hash_as_absent(harness: Harness) -> None:
    host_file = harness.tmp_path / "host-lock"
    host_file.write_text("host content\n")
    spec = CacheSpec(key_files=("deps.lock",), paths=("vendor/",))
    keys: list[str] = []

    def project_with_links(dest: Path) -> None:
        shutil.copytree(harness.project, dest, symlinks=True, dirs_exist_ok=True)

    def keeps_key(the_runner: JobRunner) -> str:
        outcome = the_runner.run()
        assert outcome.status == JobStatus.SUCCESS
        (line,) = [
            text for text in harness.recorder.log("unit") if text.startswith("kapal: no cache")
        ]
        harness.recorder.events.clear()
        return line

    keys.append(
        keeps_key(runner(harness, job("unit", caches=(spec,)), source=project_with_links))
    )  # no deps.lock at all
    os.symlink(host_file, harness.project / "deps.lock")
    keys.append(
        keeps_key(runner(harness, job("unit", caches=(spec,)), source=project_with_links))
    )  # a link out
    (harness.project / "deps.lock").unlink()
    (harness.project / "deps.lock").write_text("host content\n")
    keys.append(
        keeps_key(runner(harness, job("unit", caches=(spec,)), source=project_with_links))
    )  # same bytes, own file
    assert keys[0] == keys[1]
    assert keys[2] != keys[1]


def test_options_reach_the_containers(harness: Harness) -> None:
    options = JobOptions(project_dir="/builds/acme/shop", secrets={"TOKEN": "t0ps3cr3t-value"})
    harness.backend.script(
        lambda spec: spec.name == "unit", FakeBehaviour(stdout="token t0ps3cr3t-value")
    )
    assert runner(harness, job("unit"), options=options).run().status == JobStatus.SUCCESS
    (spec,) = harness.backend.started
    assert spec.cwd == "/builds/acme/shop"
    assert spec.env["TOKEN"] == "t0ps3cr3t-value"
    assert "token [MASKED]" in harness.recorder.log("unit")


def test_a_cancel_while_the_workspace_is_made_runs_nothing(harness: Harness) -> None:
    the_runner: list[JobRunner] = []

    def slow_clone(dest: Path) -> None:
        harness.source(dest)
        the_runner[0].cancel()  # as a cancel arriving from the server mid-clone

    the_job = job("unit", artifacts=ArtifactsSpec(paths=("README",), when="always"))
    the_runner.append(runner(harness, the_job, source=slow_clone))
    outcome = the_runner[0].run()
    assert outcome.status == JobStatus.CANCELED
    assert harness.backend.started == []
    assert harness.artifacts.files(7, "unit") == []
