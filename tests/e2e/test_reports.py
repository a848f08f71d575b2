"""Issue 10's run-time keywords on the real runtime (runc, busybox): reports kept whatever the
result, Cobertura coverage, dotenv variables to later jobs, cache policy variables and fallback
keys, a delayed job, ignored keywords; links out of the workspace never read on the host."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import pipeline
from runner.artifacts import ArtifactStore
from runner.cache import CacheStore
from runner.engine import Engine, EngineOptions, PipelineResult
from runner.engine.recorder import CoverageReport, JobStatus, MemoryRecorder
from runner.engine.workspace import copy_working_tree
from runner.images.store import ImageStore
from runner.job_images import StoreImageProvider
from runner.settings import RunnerSettings
from tests.support.runtime_leftovers import RecordingBackend, leftovers

PIPELINE = """
stages: [build, test]
image: busybox:latest
variables: {CACHE_POLICY: pull}

build:
  stage: build
  script:
    - echo "VERSION=1.2.3" > build.env
    - echo "GREETING=from dotenv" >> build.env
    - printf '<coverage line-rate="0.75" lines-covered="3" lines-valid="4"/>' > coverage.xml
    - mkdir -p .cache && echo from-main > .cache/seed
  artifacts:
    reports:
      dotenv: build.env
      coverage_report: {coverage_format: cobertura, path: coverage.xml}
  cache: {key: deps-main, paths: [.cache/]}

lint:
  stage: build
  allow_failure: true
  id_tokens:
    ID_TOKEN: {aud: https://kapal.test}
  script:
    - echo '{}' > gl-sast-report.json
    - echo lint output > lint.log
    - exit 3
  artifacts:
    paths: [lint.log]
    reports: {sast: gl-sast-report.json}

uses-dotenv:
  stage: test
  needs: [build]
  variables: {GREETING: from the file}
  script:
    - test "$VERSION" = 1.2.3
    - test "$GREETING" = "from dotenv"

cache-fallback:
  stage: test
  needs: [build]
  cache:
    key: deps-$CI_COMMIT_REF_SLUG-feature
    fallback_keys: [deps-main]
    policy: $CACHE_POLICY
    paths: [.cache/]
  script:
    - test "$(cat .cache/seed)" = from-main

later:
  stage: test
  when: delayed
  start_in: 1 second
  script: [echo ran later]
"""

LINKS = """
image: busybox:latest
stages: [build, test]
links:
  stage: build
  script:
    - ln -s {coverage} coverage.xml
    - ln -s {dotenv} build.env
  artifacts:
    reports:
      dotenv: build.env
      coverage_report: {{coverage_format: cobertura, path: coverage.xml}}
after:
  stage: test
  when: always
  script: ['test -z "$HOST_SECRET"']
"""


Parts = tuple[RecordingBackend, StoreImageProvider, ArtifactStore, CacheStore]


@pytest.fixture
def parts(
    kapal_settings: RunnerSettings, image_store: ImageStore, busybox_image: str, tmp_path: Path
) -> Iterator[Parts]:
    backend = RecordingBackend(kapal_settings)
    yield (
        backend,
        StoreImageProvider(image_store),
        ArtifactStore(tmp_path / "artifacts"),
        CacheStore(tmp_path / "cache"),
    )
    left = leftovers(kapal_settings, backend.container_ids, backend.sandbox_ids)
    assert left == [], f"left behind: {left}"


def run(text: str, parts: Parts, tmp_path: Path) -> tuple[PipelineResult, MemoryRecorder]:
    """Plan `text` as GitLab would for a push to main and run it."""
    project = tmp_path / "project"
    project.mkdir(exist_ok=True)
    (project / ".gitlab-ci.yml").write_text(text)
    backend, images, artifacts, caches = parts
    context = pipeline.TriggerContext(branch="main", project_dir="/builds/project", pipeline_id=1)
    the_plan = pipeline.plan(pipeline.load(project / ".gitlab-ci.yml"), context)
    recorder = MemoryRecorder()
    engine = Engine(
        backend=backend,
        images=images,
        recorder=recorder,
        work_dir=tmp_path / "work",
        artifacts=artifacts,
        caches=caches,
        options=EngineOptions(concurrency=3, project_dir="/builds/project"),
    )
    result = engine.run(the_plan, lambda dest: copy_working_tree(project, dest), pipeline_id=1)
    return result, recorder


def test_reports_dotenv_caches_and_delayed_jobs_on_the_real_runtime(
    parts: Parts, tmp_path: Path
) -> None:
    result, recorder = run(PIPELINE, parts, tmp_path)
    jobs = result.jobs
    assert result.passed, {n: (j.status, j.reason) for n, j in jobs.items()}
    artifacts = parts[2]

    (coverage,) = recorder.of_type(CoverageReport)
    assert (coverage.job, coverage.percent, coverage.files) == ("build", 75.0, ("coverage.xml",))
    assert sorted(artifacts.files(1, "build")) == ["build.env", "coverage.xml"]

    # the failed job keeps its report, not its `paths` (on_success)
    assert jobs["lint"].status == JobStatus.FAILED and jobs["lint"].allowed_failure
    assert artifacts.files(1, "lint") == ["gl-sast-report.json"]
    assert recorder.log("lint")[0].startswith("kapal: ignoring `id_tokens`: ")
    assert "it uses keywords kapal ignores" in jobs["lint"].reason

    assert jobs["uses-dotenv"].status == JobStatus.SUCCESS
    assert any(
        "variables from dotenv reports: GREETING, VERSION" in line
        for line in recorder.log("uses-dotenv")
    )

    assert jobs["cache-fallback"].status == JobStatus.SUCCESS
    assert any(
        "restored the fallback cache 'deps-main'" in line for line in recorder.log("cache-fallback")
    )
    # policy `pull` (from the variable): nothing saved under the job's own key
    caches = parts[3]
    assert not (caches.root / caches.dir_name("deps-main-feature")).exists()

    assert recorder.statuses("later")[:3] == [
        JobStatus.CREATED,
        JobStatus.SCHEDULED,
        JobStatus.PENDING,
    ]
    assert "ran later" in recorder.log("later")


def test_report_links_out_of_the_workspace_read_nothing_of_the_host(
    parts: Parts, tmp_path: Path
) -> None:
    host = tmp_path / "host"
    host.mkdir()
    (host / "coverage.xml").write_text('<coverage line-rate="0.99"/>')
    (host / "secret.env").write_text("HOST_SECRET=from-the-host\n")
    text = LINKS.format(coverage=host / "coverage.xml", dotenv=host / "secret.env")
    result, recorder = run(text, parts, tmp_path)
    assert recorder.of_type(CoverageReport) == []
    assert result.jobs["links"].status == JobStatus.FAILED
    assert "the dotenv report build.env" in result.jobs["links"].reason
    assert result.jobs["after"].status == JobStatus.SUCCESS  # HOST_SECRET never reached it
    assert "from-the-host" not in repr(recorder.events)
    assert (host / "secret.env").read_text() == "HOST_SECRET=from-the-host\n"
