"""Trigger jobs in the engine (fake backend): child pipelines run with the same engine, named
`job [trigger]`, `strategy: depend` mirrored, children awaited, cancel reaching them."""

from __future__ import annotations

import io
import threading
import time
from typing import Any

import pytest

from pipeline import TriggerContext, load, plan
from runner.engine import Engine, PipelineResult
from runner.engine.downstream import ChildPipelines
from runner.engine.recorder import (
    JobStatus,
    JobStatusChanged,
    LogLine,
    MemoryRecorder,
    PipelineStatus,
)
from runner.errors import ImageNotFoundError
from runner.runtime.fake import FakeBehaviour
from runner.terminal import PlainRecorder
from tests.runner.engine.conftest import Harness, workspace_of

PARENT = """
stages: [build, test]
image: busybox
variables: {GREETING: hello}
prepare:
  stage: build
  script: [echo prepare]
waits:
  stage: test
  variables: {TARGET: "$GREETING-arm"}
  trigger: {include: child.yml, strategy: depend}
runs-on:
  stage: test
  trigger: {include: [{local: child.yml}]}
"""
CHILD = """
child-build:
  image: busybox
  script: [echo child $TARGET $CI_PIPELINE_SOURCE]
child-check:
  image: busybox
  script: [child-check]
"""
CONTEXT = TriggerContext(source="push", branch="main")


def is_child_check(spec: Any) -> bool:
    """Match the main container of the child pipelines' `child-check` job."""
    return bool(spec.name == "child-check")


def _setup(harness: Harness, parent: str = PARENT, child: str = CHILD) -> ChildPipelines:
    (harness.project / ".gitlab-ci.yml").write_text(parent)
    (harness.project / "child.yml").write_text(child)
    return ChildPipelines(CONTEXT, harness.project, str(harness.project / ".gitlab-ci.yml"))


def _run(
    harness: Harness, children: ChildPipelines, **options: object
) -> tuple[Engine, PipelineResult]:
    the_plan = plan(load(harness.project / ".gitlab-ci.yml"), CONTEXT)
    engine = harness.engine(**options)
    engine.children = children
    return engine, engine.run(the_plan, harness.source, pipeline_id=3)


def test_child_pipelines_run_named_after_their_trigger(harness: Harness) -> None:
    children = _setup(harness)
    _, result = _run(harness, children)
    rec = harness.recorder
    assert result.status == PipelineStatus.SUCCESS
    assert rec.final_status("waits") == JobStatus.SUCCESS
    assert "child pipeline #301 passed" in result.jobs["waits"].reason
    assert rec.final_status("runs-on") == JobStatus.SUCCESS
    for trigger in ("waits", "runs-on"):
        assert rec.final_status(f"child-build [{trigger}]") == JobStatus.SUCCESS
        assert rec.final_status(f"child-check [{trigger}]") == JobStatus.SUCCESS
    # the trigger job's variables reach the child, which knows where it comes from
    envs = [dict(s.env) for s in harness.backend.started]
    child_envs = [e for e in envs if e.get("CI_PIPELINE_SOURCE") == "parent_pipeline"]
    assert len(child_envs) == 4
    assert {e.get("TARGET") for e in child_envs} == {"hello-arm", None}
    assert {e["CI_PIPELINE_ID"] for e in child_envs} == {"301", "302"}
    # the run waited for the child that the trigger job did not wait for
    assert any("did not wait" in t for t in rec.log("runs-on"))
    assert not [e for e in rec.events if isinstance(e, LogLine) and "Traceback" in e.text]


def test_depend_mirrors_a_failed_child_and_without_it_the_parent_passes(harness: Harness) -> None:
    children = _setup(harness)
    harness.backend.script(is_child_check, FakeBehaviour(exit_code=3))
    _, result = _run(harness, children)
    rec = harness.recorder
    assert rec.final_status("child-check [waits]") == JobStatus.FAILED
    assert rec.final_status("waits") == JobStatus.FAILED
    assert result.jobs["waits"].reason == "child pipeline #301 failed: child-check failed"
    # GitLab: without `strategy: depend` the trigger job passed once the child was created
    assert rec.final_status("runs-on") == JobStatus.SUCCESS
    assert rec.final_status("child-check [runs-on]") == JobStatus.FAILED
    assert any("the child pipeline failed" in t for t in rec.log("runs-on"))
    assert result.status == PipelineStatus.FAILED  # because of `waits`


def test_allow_failure_on_a_depend_trigger_lets_the_parent_pass(harness: Harness) -> None:
    parent = PARENT.replace("strategy: depend}", "strategy: depend}\n  allow_failure: true")
    children = _setup(harness, parent)
    harness.backend.script(is_child_check, FakeBehaviour(exit_code=1))
    _, result = _run(harness, children)
    assert result.jobs["waits"].status == JobStatus.FAILED
    assert result.jobs["waits"].allowed_failure
    assert result.status == PipelineStatus.SUCCESS


def test_cancel_reaches_the_child_pipelines_jobs(harness: Harness) -> None:
    children = _setup(harness)
    harness.backend.script(is_child_check, FakeBehaviour(delay=60))
    the_plan = plan(load(harness.project / ".gitlab-ci.yml"), CONTEXT)
    engine = harness.engine()
    engine.children = children
    rec: MemoryRecorder = harness.recorder

    def cancel_when_child_runs() -> None:
        for _ in range(600):
            if rec.final_status("child-check [waits]") == JobStatus.RUNNING:
                engine.cancel()
                return
            time.sleep(0.05)

    watcher = threading.Thread(target=cancel_when_child_runs)
    watcher.start()
    result = engine.run(the_plan, harness.source, pipeline_id=3)
    watcher.join()
    assert result.status == PipelineStatus.CANCELED
    assert rec.final_status("child-check [waits]") == JobStatus.CANCELED
    assert rec.final_status("waits") == JobStatus.CANCELED
    assert harness.backend.running() == []


def test_a_child_that_cannot_be_planned_fails_its_trigger_job(harness: Harness) -> None:
    children = _setup(harness)
    the_plan = plan(load(harness.project / ".gitlab-ci.yml"), CONTEXT)
    # changed between planning the parent and running the trigger job
    (harness.project / "child.yml").write_text("broken:\n  script: [x]\n  when: sometimes\n")
    engine = harness.engine()
    engine.children = children
    result = engine.run(the_plan, harness.source, pipeline_id=3)
    assert result.jobs["waits"].status == JobStatus.FAILED
    assert "sometimes" in result.jobs["waits"].reason
    assert any("child.yml:3:9" in t for t in harness.recorder.log("waits"))


def test_nesting_deeper_than_gitlab_allows_fails_the_trigger_job(harness: Harness) -> None:
    children = _setup(harness)
    _, result = _run(harness, ChildPipelines(children.context, harness.project, "p", depth=2))
    assert result.jobs["waits"].status == JobStatus.FAILED
    assert "at most 2 levels deep" in result.jobs["waits"].reason


def test_a_dynamic_child_without_stored_artifacts_fails_clearly(harness: Harness) -> None:
    parent = (
        PARENT + "dyn:\n  stage: test\n  trigger:\n    include: [{artifact: g.yml, job: prepare}]\n"
    )
    children = _setup(harness, parent)
    _, result = _run(harness, children)
    assert result.jobs["dyn"].status == JobStatus.FAILED
    assert "stored no artifacts" in result.jobs["dyn"].reason


def test_multi_project_trigger_fails_at_run_time_saying_it_needs_a_server(
    harness: Harness,
) -> None:
    children = _setup(harness, PARENT + "other:\n  stage: test\n  trigger: group/project\n")
    _, result = _run(harness, children)
    assert result.jobs["other"].status == JobStatus.FAILED
    assert "needs a GitLab server" in result.jobs["other"].reason


def test_only_selects_parent_jobs_and_the_child_runs_whole(harness: Harness) -> None:
    children = _setup(harness)
    _, result = _run(harness, children, only=frozenset({"waits"}))
    assert result.jobs["waits"].status == JobStatus.SUCCESS
    assert harness.recorder.final_status("child-check [waits]") == JobStatus.SUCCESS


def test_a_grandchild_runs_named_after_both_trigger_jobs(harness: Harness) -> None:
    parent = "level-1:\n  trigger: {include: child.yml, strategy: depend}\n"
    child = "level-2:\n  trigger: {include: grand.yml, strategy: depend}\n"
    (harness.project / "grand.yml").write_text("leaf:\n  image: busybox\n  script: [echo]\n")
    children = _setup(harness, parent, child)
    _, result = _run(harness, children)
    assert result.status == PipelineStatus.SUCCESS
    assert harness.recorder.final_status("level-2 [level-1]") == JobStatus.SUCCESS
    assert harness.recorder.final_status("leaf [level-2] [level-1]") == JobStatus.SUCCESS


def test_concurrency_bounds_the_jobs_of_parent_and_children_together(harness: Harness) -> None:
    children = _setup(harness)
    harness.backend.script(lambda spec: True, FakeBehaviour(delay=0.2))
    _, result = _run(harness, children, concurrency=2)
    assert result.status == PipelineStatus.SUCCESS
    running: set[str] = set()
    most = 0
    for event in harness.recorder.events:
        if not isinstance(event, JobStatusChanged) or event.job in ("waits", "runs-on"):
            continue  # a trigger job waits for its child, it runs no container
        if event.status == JobStatus.RUNNING:
            running.add(event.job)
        elif event.status.finished:
            running.discard(event.job)
        most = max(most, len(running))
    assert most == 2  # two child pipelines of two jobs each: four at once without the bound


def test_a_child_pipelines_missing_image_is_found_before_anything_runs(harness: Harness) -> None:
    child = CHILD.replace("child-check:\n  image: busybox", "child-check:\n  image: nowhere:1")
    children = _setup(harness, child=child)
    the_plan = plan(load(harness.project / ".gitlab-ci.yml"), CONTEXT)
    engine = harness.engine()
    engine.children = children
    with pytest.raises(ImageNotFoundError) as caught:
        engine.check_images(the_plan, engine.selected_jobs(the_plan))
    assert "nowhere:1 (used by child-check [runs-on], child-check [waits])" in str(caught.value)
    assert harness.backend.started == []


def test_dotenv_variables_of_needed_jobs_reach_the_child(harness: Harness) -> None:
    parent = PARENT.replace(
        "  script: [echo prepare]\n",
        "  script: [echo prepare]\n  artifacts: {reports: {dotenv: build.env}}\n",
    ).replace('TARGET: "$GREETING-arm"', 'TARGET: "$GREETING-$BUILD_VERSION"')
    children = _setup(harness, parent)

    def writes_dotenv(spec: Any) -> FakeBehaviour:
        (workspace_of(spec) / "build.env").write_text("BUILD_VERSION=1.2.3\n")
        return FakeBehaviour()

    harness.backend.script(lambda spec: spec.name == "prepare", writes_dotenv)
    _, result = _run(harness, children)
    assert result.status == PipelineStatus.SUCCESS
    envs = [dict(s.env) for s in harness.backend.started]
    waits = [e for e in envs if e.get("CI_PIPELINE_ID") == "301"]
    assert waits and all(e["BUILD_VERSION"] == "1.2.3" for e in waits)
    assert all(e["TARGET"] == "hello-1.2.3" for e in waits)  # expanded in the parent
    assert any(
        "variables from dotenv reports: BUILD_VERSION" in t for t in harness.recorder.log("waits")
    )


def test_a_child_left_without_jobs_by_its_rules_fails_the_trigger_job(harness: Harness) -> None:
    child = "only-tags:\n  image: busybox\n  script: [x]\n  rules: [{if: $CI_COMMIT_TAG}]\n"
    children = _setup(harness, child=child)
    _, result = _run(harness, children)
    assert result.jobs["waits"].status == JobStatus.FAILED
    assert "leave it no job" in result.jobs["waits"].reason
    assert result.jobs["runs-on"].status == JobStatus.FAILED  # not created: nothing to run on


def test_a_selected_trigger_jobs_child_logs_are_shown_with_their_names() -> None:
    out = io.StringIO()
    recorder = PlainRecorder(out, only={"waits"})
    for job, text in (("waits", "mine"), ("child [waits]", "child"), ("other", "hidden")):
        recorder.record(LogLine(job=job, text=text))
    assert out.getvalue().splitlines() == ["mine", "[child [waits]] child"]
