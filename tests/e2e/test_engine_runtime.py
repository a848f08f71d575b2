"""The engine on the embedded runtime (real runc): one pipeline exercising the job features.

Busybox jobs keep this cheap: each container costs tens of milliseconds.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import pipeline
from runner.artifacts import ArtifactStore
from runner.cache import CacheStore
from runner.engine import Engine, EngineOptions, PipelineResult
from runner.engine.recorder import JobStatus, MemoryRecorder, PipelineStatus
from runner.engine.workspace import InPlaceTree, copy_working_tree
from runner.images.store import ImageStore
from runner.job_images import StoreImageProvider, embedded_builder
from runner.settings import RunnerSettings
from tests.support.runtime_leftovers import RecordingBackend, leftovers

SECRET = "e2e-secret-0123456789"

PIPELINE = """
stages: [build, test, report]
image: busybox:latest
variables: {GREETING: hello}

compile:
  stage: build
  script:
    - mkdir -p dist .cache
    - echo "$GREETING built" > dist/app.txt
    - echo "runs=$(cat .cache/runs 2>/dev/null || echo 0)"
    - echo $(( $(cat .cache/runs 2>/dev/null || echo 0) + 1 )) > .cache/runs
  artifacts: {paths: [dist/]}
  cache: {key: "runs-$CI_COMMIT_REF_SLUG", paths: [.cache/]}

uses-artifact:
  stage: test
  needs: [compile]
  script:
    - cat dist/app.txt
    - test "$(cat dist/app.txt)" = "hello built"
    - test "$CI_PROJECT_DIR" = "$(pwd)"

flaky:
  stage: test
  retry: 2
  script:
    - echo "attempt $CI_JOB_ATTEMPT"
    - test "$CI_JOB_ATTEMPT" -ge 2

slow:
  stage: test
  timeout: 2s
  allow_failure: true
  script: [sleep 30]

allowed:
  stage: test
  allow_failure: {exit_codes: [3]}
  script: ["echo before", "exit 3", "echo never"]

talks-secret:
  stage: test
  script:
    - echo "the token is $TOKEN"
    - echo "$TOKEN" | fold -w 8
  after_script: ["echo after-script saw $CI_JOB_STATUS"]

on-failure:
  stage: report
  when: on_failure
  script: [echo should not run]

always:
  stage: report
  when: always
  script: [echo always runs]

approve:
  stage: report
  when: manual
  script: [echo approved]
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    (root / ".kapal.yml").write_text(PIPELINE)
    return root


@pytest.fixture
def engine_parts(
    kapal_settings: RunnerSettings, image_store: ImageStore, busybox_image: str, tmp_path: Path
) -> Iterator[tuple[RecordingBackend, StoreImageProvider, ArtifactStore, CacheStore]]:
    backend = RecordingBackend(kapal_settings)
    yield (
        backend,
        StoreImageProvider(image_store),
        ArtifactStore(tmp_path / "artifacts"),
        CacheStore(tmp_path / "cache"),
    )
    left = leftovers(kapal_settings, backend.container_ids, backend.sandbox_ids)
    assert left == [], f"left behind: {left}"


@pytest.fixture
def building_parts(
    engine_parts: tuple, kapal_settings: RunnerSettings
) -> tuple[RecordingBackend, StoreImageProvider, ArtifactStore, CacheStore]:
    """The engine's parts with the real Dockerfile builder behind `build:` jobs."""
    backend, images, artifacts, caches = engine_parts
    builder = embedded_builder(backend, kapal_settings.build_cache_dir)
    return backend, StoreImageProvider(images.store, builder), artifacts, caches


def run(
    project: Path,
    parts: tuple,
    tmp_path: Path,
    pipeline_id: int,
    *,
    in_place: bool = False,
    use_cache: bool = True,
    while_running: Callable[[Engine, MemoryRecorder], None] | None = None,
) -> tuple[PipelineResult, MemoryRecorder]:
    """Run the project's pipeline; `while_running(engine, recorder)` runs in a thread meanwhile."""
    backend, images, artifacts, caches = parts
    recorder = MemoryRecorder()
    context = pipeline.TriggerContext(
        branch="main", project_dir="/builds/project", pipeline_id=pipeline_id
    )
    the_plan = pipeline.plan(pipeline.load(project / ".kapal.yml"), context)
    engine = Engine(
        backend=backend,
        images=images,
        recorder=recorder,
        work_dir=tmp_path / "work",
        artifacts=artifacts,
        caches=caches,
        options=EngineOptions(
            concurrency=3,
            project_dir="/builds/project",
            secrets={"TOKEN": SECRET},
            use_cache=use_cache,
        ),
    )
    source = InPlaceTree(project) if in_place else (lambda dest: copy_working_tree(project, dest))
    helper = None
    if while_running is not None:
        helper = threading.Thread(target=while_running, args=(engine, recorder))
        helper.start()
    try:
        result = engine.run(the_plan, source, pipeline_id=pipeline_id)
    finally:
        if helper is not None:
            helper.join()
    return result, recorder


def test_job_features_on_the_real_runtime(
    project: Path, engine_parts: tuple, tmp_path: Path
) -> None:
    result, recorder = run(project, engine_parts, tmp_path, 1)
    jobs = result.jobs
    assert result.status == PipelineStatus.SUCCESS, {
        n: (j.status, j.reason) for n, j in jobs.items()
    }

    assert jobs["compile"].status == JobStatus.SUCCESS
    assert "runs=0" in recorder.log("compile")
    assert jobs["uses-artifact"].status == JobStatus.SUCCESS
    assert "hello built" in recorder.log("uses-artifact")

    assert jobs["flaky"].status == JobStatus.SUCCESS and jobs["flaky"].attempts == 2
    assert recorder.statuses("flaky").count(JobStatus.FAILED) == 1

    assert jobs["slow"].status == JobStatus.FAILED and jobs["slow"].allowed_failure
    assert "timed out after 2s" in jobs["slow"].reason

    assert jobs["allowed"].status == JobStatus.FAILED and jobs["allowed"].exit_code == 3
    assert jobs["allowed"].allowed_failure
    assert recorder.log("allowed")[-3:] == ["$ echo before", "before", "$ exit 3"]

    log = recorder.log("talks-secret")
    assert "the token is [MASKED]" in log
    assert "after-script saw success" in log
    assert SECRET not in repr(recorder.events)
    # folded over three lines of output, every piece is masked
    folded = log.index('$ echo "$TOKEN" | fold -w 8') + 1
    assert log[folded : folded + 3] == ["[MASKED]"] * 3
    for piece in (SECRET[:8], SECRET[8:16]):  # (the digits-only tail could occur in a float)
        assert piece not in repr(recorder.events)

    assert jobs["on-failure"].status == JobStatus.SKIPPED
    assert jobs["always"].status == JobStatus.SUCCESS
    assert jobs["approve"].status == JobStatus.MANUAL

    # the cache saved by the first run is restored by the second
    result, recorder = run(project, engine_parts, tmp_path, 2)
    assert result.jobs["compile"].status == JobStatus.SUCCESS
    assert "runs=1" in recorder.log("compile")


def test_a_failure_skips_later_jobs_and_runs_on_failure(
    project: Path, engine_parts: tuple, tmp_path: Path
) -> None:
    (project / ".kapal.yml").write_text(
        PIPELINE.replace('test "$(cat dist/app.txt)" = "hello built"', "exit 42")
    )
    result, _ = run(project, engine_parts, tmp_path, 1)
    assert result.status == PipelineStatus.FAILED
    assert result.jobs["uses-artifact"].status == JobStatus.FAILED
    assert result.jobs["uses-artifact"].exit_code == 42
    assert result.jobs["on-failure"].status == JobStatus.SUCCESS
    assert result.jobs["always"].status == JobStatus.SUCCESS
    assert result.jobs["approve"].status == JobStatus.SKIPPED


SERVICE_PIPELINE = """
stages: [build, test]
variables: {WEB_IMAGE: "web-$CI_PIPELINE_ID:1"}

web-image:
  stage: build
  build:
    context: web
    tags: ["$WEB_IMAGE"]

talks-to-web:
  stage: test
  image: busybox:latest
  services:
    - name: $WEB_IMAGE
      alias: web
  script:
    - wget -q -O - http://web:8080/hello.txt
    - wget -q -O - "http://web-$CI_PIPELINE_ID-1:8080/hello.txt"
"""


def test_built_service_image_is_waited_for_and_reached_by_alias(
    project: Path, building_parts: tuple, tmp_path: Path
) -> None:
    (project / ".kapal.yml").write_text(SERVICE_PIPELINE)
    (project / "web").mkdir()
    (project / "web" / "hello.txt").write_text("hello from the service\n")
    (project / "web" / "Dockerfile").write_text(
        # no `cat` and no `sh` in the service image: the port probe runs in the job's image
        "FROM busybox:latest\nCOPY hello.txt /www/hello.txt\n"
        'RUN ["rm", "/bin/cat", "/bin/sh"]\nEXPOSE 8080\n'
        'CMD ["httpd", "-f", "-p", "8080", "-h", "/www"]\n'
    )
    parts = building_parts
    result, recorder = run(project, parts, tmp_path, 4242)
    assert result.passed, {n: (j.status, j.reason) for n, j in result.jobs.items()}
    log = recorder.log("talks-to-web")
    assert "kapal: waiting for web-4242:1 to listen on 8080" in log
    assert log.count("hello from the service") == 2  # by alias and by image name


def test_jobs_get_a_copy_unless_run_in_place(
    project: Path, engine_parts: tuple, tmp_path: Path
) -> None:
    (project / ".kapal.yml").write_text(
        "image: busybox:latest\ntouches:\n  script: [echo made > made.txt, rm keep.txt]\n"
    )
    (project / "keep.txt").write_text("mine\n")
    result, _ = run(project, engine_parts, tmp_path, 1)
    assert result.passed
    assert (project / "keep.txt").read_text() == "mine\n" and not (project / "made.txt").exists()

    result, _ = run(project, engine_parts, tmp_path, 2, in_place=True)
    assert result.passed
    assert (project / "made.txt").read_text() == "made\n" and not (project / "keep.txt").exists()


def test_cancel_stops_a_build_in_its_running_step(
    project: Path, building_parts: tuple, tmp_path: Path
) -> None:
    (project / ".kapal.yml").write_text("slow-image:\n  build: {context: ., tags: ['slow:1']}\n")
    # silent after its first line: only stopping the container ends this step early
    (project / "Dockerfile").write_text("FROM busybox:latest\nRUN echo building && sleep 30\n")
    parts = building_parts

    def cancel_once_building(engine: Engine, recorder: MemoryRecorder) -> None:
        for _ in range(600):
            if "building" in recorder.log("slow-image"):
                engine.cancel()
                return
            time.sleep(0.05)

    result, _ = run(project, parts, tmp_path, 1, while_running=cancel_once_building)
    assert result.status == PipelineStatus.CANCELED
    # a build that ran to its end would have succeeded and tagged the image
    assert result.jobs["slow-image"].status == JobStatus.CANCELED
    _, images, _, _ = parts
    assert not images.available("slow:1")


def test_no_cache_builds_every_step_afresh(
    project: Path, building_parts: tuple, tmp_path: Path
) -> None:
    (project / ".kapal.yml").write_text("image-job:\n  build: {context: ., tags: ['fresh:1']}\n")
    (project / "Dockerfile").write_text("FROM busybox:latest\nRUN echo layer > /made.txt\n")
    parts = building_parts
    first, _ = run(project, parts, tmp_path, 1)
    cached, recorder = run(project, parts, tmp_path, 2)
    assert first.passed and cached.passed
    assert "step 2/2: RUN echo layer > /made.txt\n  cached" in "\n".join(recorder.log("image-job"))
    fresh, recorder = run(project, parts, tmp_path, 3, use_cache=False)
    assert fresh.passed
    log = "\n".join(recorder.log("image-job"))
    assert "step 2/2: RUN echo layer > /made.txt" in log and "cached" not in log
