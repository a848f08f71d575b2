"""`JobRunner` alone on the embedded runtime (real runc), as a server task runs one job."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import pipeline
from runner.artifacts import ArtifactStore
from runner.cache import CacheStore
from runner.engine.job_runner import JobOptions, JobOutcome, JobRunner
from runner.engine.recorder import JobStatus, MemoryRecorder
from runner.engine.workspace import copy_working_tree
from runner.images.store import ImageStore
from runner.job_images import StoreImageProvider
from runner.settings import RunnerSettings
from tests.support.runtime_leftovers import RecordingBackend, leftovers

PIPELINE = """
stages: [build, test]
image: busybox:latest

compile:
  stage: build
  script: [mkdir -p dist, echo "built at $CI_PIPELINE_ID" > dist/app.txt]
  artifacts: {paths: [dist/]}

deploy:
  stage: test
  script:
    - cat dist/app.txt
    - echo "deploying"
    - sleep 60
  after_script: ['echo "after_script saw $CI_JOB_STATUS"']
"""


@pytest.fixture
def backend(kapal_settings: RunnerSettings) -> Iterator[RecordingBackend]:
    """The embedded backend; nothing may be left behind after the test."""
    backend = RecordingBackend(kapal_settings)
    yield backend
    left = leftovers(kapal_settings, backend.container_ids, backend.sandbox_ids)
    assert left == [], f"left behind: {left}"


def test_jobs_run_one_by_one_and_a_cancel_from_another_thread_stops_the_container(
    backend: RecordingBackend, image_store: ImageStore, busybox_image: str, tmp_path: Path
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / ".kapal.yml").write_text(PIPELINE)
    context = pipeline.TriggerContext(branch="main", pipeline_id=42)
    plan = pipeline.plan(pipeline.load(project / ".kapal.yml"), context)
    recorder = MemoryRecorder()
    artifacts = ArtifactStore(tmp_path / "artifacts")

    def runner_for(name: str, job_id: int) -> JobRunner:
        return JobRunner(
            plan.job(name),
            plan=plan,
            pipeline_id=42,
            job_id=job_id,
            source=lambda dest: copy_working_tree(project, dest),
            work_dir=tmp_path / "work",
            backend=backend,
            images=StoreImageProvider(image_store),
            artifacts=artifacts,
            caches=CacheStore(tmp_path / "caches"),
            recorder=recorder,
            options=JobOptions(stop_grace=1.0),
        )

    # two tasks, as the server runs them: the second gets the first one's artifacts
    assert runner_for("compile", 1).run() == JobOutcome(JobStatus.SUCCESS, exit_code=0)
    deploy = runner_for("deploy", 2)
    outcomes: list[JobOutcome] = []
    thread = threading.Thread(target=lambda: outcomes.append(deploy.run()))
    thread.start()
    deadline = time.monotonic() + 120
    while "deploying" not in recorder.log("deploy") and time.monotonic() < deadline:
        time.sleep(0.02)
    assert "built at 42" in recorder.log("deploy")
    canceled_at = time.monotonic()
    deploy.cancel()
    thread.join(timeout=120)
    took = time.monotonic() - canceled_at
    assert not thread.is_alive()
    assert outcomes[0].status == JobStatus.CANCELED
    assert "after_script saw canceled" in recorder.log("deploy")
    print(f"cancel to the end of the attempt (after_script included): {took:.2f}s")
