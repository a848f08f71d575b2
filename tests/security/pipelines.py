"""Fixtures for the image, cache and secret attacks: the real backend, and a pipeline run on it.

Test modules import what they use from here; `backend_fixture` is the fixture `backend`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

import pipeline
from runner.artifacts import ArtifactStore
from runner.cache import CacheStore
from runner.engine import Engine, EngineOptions, PipelineResult
from runner.engine.recorder import JobStatus, MemoryRecorder
from runner.engine.workspace import copy_working_tree
from runner.job_images import StoreImageProvider
from runner.settings import RunnerSettings
from tests.support.runtime_leftovers import RecordingBackend, leftovers


@pytest.fixture(name="backend")
def backend_fixture(kapal_settings: RunnerSettings) -> Iterator[RecordingBackend]:
    """The embedded backend (real runc); nothing may be left behind after the test."""
    backend = RecordingBackend(kapal_settings)
    yield backend
    left = leftovers(kapal_settings, backend.container_ids, backend.sandbox_ids)
    assert left == [], f"left behind: {left}"


@dataclass(frozen=True)
class PipelineRun:
    """What one pipeline run did."""

    result: PipelineResult
    recorder: MemoryRecorder

    def status(self, job: str) -> JobStatus:
        """The job's final status."""
        return self.result.jobs[job].status

    def reason(self, job: str) -> str:
        """Why the job failed (empty when it did not)."""
        return self.result.jobs[job].reason or ""

    def log(self, job: str) -> list[str]:
        """The job's log lines, as recorded (masked)."""
        return self.recorder.log(job)


def run_pipeline(
    text: str,
    project: Path,
    *,
    provider: StoreImageProvider,
    backend: RecordingBackend,
    caches: CacheStore | None = None,
    secrets: Mapping[str, str] | None = None,
    branch: str = "main",
    variables: tuple[tuple[str, str], ...] = (),
) -> PipelineRun:
    """Run `text` as the `.kapal.yml` of `project` (made if missing) for `provider`'s owner."""
    project.mkdir(parents=True, exist_ok=True)
    (project / ".kapal.yml").write_text(text)
    context = pipeline.TriggerContext(branch=branch, variables=variables)
    plan = pipeline.plan(pipeline.load(project / ".kapal.yml"), context)
    work = project.parent / "work" / uuid.uuid4().hex
    recorder = MemoryRecorder()
    engine = Engine(
        backend=backend,
        images=provider,
        recorder=recorder,
        work_dir=work / "runs",
        artifacts=ArtifactStore(work / "artifacts"),
        caches=caches or CacheStore(work / "cache", provider.owner),
        options=EngineOptions(project_dir="/builds/project", secrets=dict(secrets or {})),
    )
    result = engine.run(plan, lambda dest: copy_working_tree(project, dest), pipeline_id=1)
    return PipelineRun(result, recorder)
