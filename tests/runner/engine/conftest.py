"""Engine tests over `FakeBackend`: plans built in code, images from `FakeImageProvider`."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pipeline.plan import ImageSpec, Job, Need, Plan, Variable
from runner.artifacts import ArtifactStore
from runner.cache import CacheStore
from runner.engine import Engine, EngineOptions
from runner.engine.recorder import MemoryRecorder
from runner.job_images import FakeImageProvider
from runner.runtime.fake import FakeBackend

STAGES = ("build", "test", "deploy")


def job(name: str, stage: str = "test", script: tuple[str, ...] = ("true",), **fields: Any) -> Job:
    """A job running in the `busybox` image unless told otherwise."""
    fields.setdefault("image", ImageSpec(name="busybox"))
    needs = fields.get("needs")
    if needs is not None:
        fields["needs"] = tuple(Need(job=n) if isinstance(n, str) else n for n in needs)
    return Job(name=name, stage=stage, base_name=name, script=script, **fields)


def plan(
    *jobs: Job, stages: tuple[str, ...] = STAGES, variables: dict[str, str] | None = None
) -> Plan:
    """A plan of `jobs`, `waits_for` computed like GitLab: needs, or every earlier stage's jobs."""
    done: list[Job] = []
    for j in jobs:
        if j.needs is not None:
            waits = tuple(n.job for n in j.needs)
        else:
            index = stages.index(j.stage)
            waits = tuple(o.name for o in jobs if stages.index(o.stage) < index)
        done.append(Job(**{**j.__dict__, "waits_for": waits}))
    pipeline_vars = tuple(
        Variable(name=k, value=v, source="pipeline") for k, v in (variables or {}).items()
    )
    with_vars = tuple(Job(**{**j.__dict__, "variables": pipeline_vars + j.variables}) for j in done)
    return Plan(stages=stages, jobs=with_vars, variables=pipeline_vars)


class Harness:
    """An engine over a fake backend, with a memory recorder; `run(plan)` runs it."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.backend = FakeBackend()
        self.images = FakeImageProvider()
        self.images.add("busybox")
        self.recorder = MemoryRecorder()
        self.artifacts = ArtifactStore(tmp_path / "artifacts")
        self.caches = CacheStore(tmp_path / "caches")
        self.project = tmp_path / "project"
        self.project.mkdir()
        (self.project / "README").write_text("hello\n")

    def engine(self, **options: Any) -> Engine:
        """A fresh engine with these options (and a fresh recorder)."""
        self.recorder = MemoryRecorder()
        return Engine(
            backend=self.backend,
            images=self.images,
            recorder=self.recorder,
            work_dir=self.tmp_path / "work",
            artifacts=self.artifacts,
            caches=self.caches,
            options=EngineOptions(**options),
        )

    def source(self, dest: Path) -> None:
        """Copy the project into a workspace."""
        for path in self.project.iterdir():
            (dest / path.name).write_bytes(path.read_bytes())

    def run(self, the_plan: Plan, pipeline_id: int = 1, **options: Any):
        """Run the plan; return the `PipelineResult`."""
        return self.engine(**options).run(the_plan, self.source, pipeline_id=pipeline_id)


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    """A fresh engine harness; asserts no fake container is left running afterwards."""
    h = Harness(tmp_path)
    yield h
    assert h.backend.running() == []


def script_of(spec: Any) -> str:
    """The step script a job container runs (read from its /kapal mount)."""
    for mount in spec.mounts:
        if mount.target == "/kapal":
            return (Path(mount.source) / "step_script").read_text()
    return ""


def workspace_of(spec: Any) -> Path:
    """The host directory mounted as the job's project dir."""
    for mount in spec.mounts:
        if mount.target.startswith("/builds/"):
            return Path(mount.source)
    raise AssertionError("no workspace mount")


Matcher = Callable[[Any], bool]
