"""Issue 8 item 14: job names that slug alike (`a/b`, `a_b`, `a-b`) get folders of their own.

The attack: a job's folder was named after its slug, so jobs whose names slug alike shared a
workspace and a scripts directory: one job could plant files (or its own step script) where the
other runs. Played with the real runtime: the three jobs run at the same time, each leaves a
marker, waits, and checks that only its own marker is in its workspace.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import pipeline
from runner.artifacts import ArtifactStore
from runner.cache import CacheStore
from runner.engine import Engine, EngineOptions
from runner.engine.job_runner import job_folder
from runner.engine.recorder import JobStatus, MemoryRecorder
from runner.engine.workspace import copy_working_tree
from runner.images.store import ImageStore
from runner.job_images import StoreImageProvider
from runner.settings import RunnerSettings
from tests.support.runtime_leftovers import RecordingBackend, leftovers

NAMES = {"a/b": "slash", "a_b": "underscore", "a-b": "dash"}

JOB = """
{name!r}:
  image: busybox:latest
  variables: {{TAG: {tag}}}
  script:
    - echo "$TAG" > "mine-$TAG"
    - sleep 1
    - echo "sees $(ls mine-* | tr '\\n' ' ')"
    - test "$(ls mine-*)" = "mine-$TAG"
"""


@pytest.fixture
def backend(kapal_settings: RunnerSettings) -> Iterator[RecordingBackend]:
    """The embedded backend; nothing may be left behind after the test."""
    backend = RecordingBackend(kapal_settings)
    yield backend
    left = leftovers(kapal_settings, backend.container_ids, backend.sandbox_ids)
    assert left == [], f"left behind: {left}"


def test_jobs_whose_names_slug_alike_see_only_their_own_files(
    backend: RecordingBackend, image_store: ImageStore, busybox_image: str, tmp_path: Path
) -> None:
    assert len({job_folder(name) for name in NAMES}) == len(NAMES)
    project = tmp_path / "project"
    project.mkdir()
    (project / ".kapal.yml").write_text(
        "".join(JOB.format(name=name, tag=tag) for name, tag in NAMES.items())
    )
    plan = pipeline.plan(
        pipeline.load(project / ".kapal.yml"), pipeline.TriggerContext(branch="main")
    )
    recorder = MemoryRecorder()
    work = tmp_path / "work"
    engine = Engine(
        backend=backend,
        images=StoreImageProvider(image_store),
        recorder=recorder,
        work_dir=work,
        artifacts=ArtifactStore(tmp_path / "artifacts"),
        caches=CacheStore(tmp_path / "caches"),
        options=EngineOptions(concurrency=3, keep_work_dir=True),
    )
    result = engine.run(plan, lambda dest: copy_working_tree(project, dest))
    for name, tag in NAMES.items():
        log = recorder.log(name)
        assert result.jobs[name].status == JobStatus.SUCCESS, (name, log)
        assert f"sees mine-{tag} " in log
    # the kept folders: one per job, each holding its own marker only
    (run_dir,) = work.iterdir()
    for name, tag in NAMES.items():
        workspace = run_dir / "jobs" / f"{job_folder(name)}-1" / "workspace"
        assert sorted(p.name for p in workspace.glob("mine-*")) == [f"mine-{tag}"]
    # three jobs started together: they did overlap, so the check above was a real one
    starts = [i for i, e in enumerate(recorder.events) if getattr(e, "status", None) == "running"]
    ends = [i for i, e in enumerate(recorder.events) if getattr(e, "status", None) == "success"]
    assert max(starts) < min(ends)
