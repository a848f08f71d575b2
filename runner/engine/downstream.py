"""Child pipelines of `trigger:` jobs: planned when their trigger job runs, recorded nested.

`ChildPipelines` plans the child pipeline a trigger job starts (its files read from the
repository through `pipeline.repofiles`, or, for a dynamic child, from an earlier job's stored
artifacts through `runner.confined`: the artifact tree is the job's, never followed out of).
`NestedRecorder` passes a child's events to the parent's recorder with each job named
`job [trigger job]`, so a person tells the two pipelines' jobs apart.

Lifecycle: the `kapal run` entry builds one `ChildPipelines` for the first pipeline and hands
it to its `Engine`; the engine asks `below()` for the one its child engines use, one level
deeper, so the nesting limit holds however deep the children go.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

from pipeline.context import TriggerContext
from pipeline.document import MAX_FILE_BYTES
from pipeline.plan import Job, Plan
from pipeline.records import record
from pipeline.remote import RemoteFetcher
from pipeline.trigger import plan_child
from runner.artifacts import ArtifactStore
from runner.confined import ConfinedTree
from runner.engine.job_runner import dotenv_variables
from runner.engine.recorder import (
    ArtifactStored,
    CoverageReport,
    Event,
    JobStatusChanged,
    LogLine,
    PipelineFinished,
    PipelineStarted,
    Recorder,
    TestReport,
)
from runner.errors import ConfinedPathError, EngineError

__all__ = ["ChildPipelines", "NestedRecorder", "child_pipeline_id", "nested_name"]

CHILDREN_PER_PIPELINE = 100
"""Child pipeline ids are the parent's id times this, plus the trigger job's position."""


def child_pipeline_id(parent_id: int, position: int) -> int:
    """The id of the child pipeline the `position`th (1-based) trigger job of a plan starts."""
    return parent_id * CHILDREN_PER_PIPELINE + position


def nested_name(job: str, trigger: str) -> str:
    """How a child pipeline's job is named in its parent's output: `job [trigger job]`."""
    return f"{job} [{trigger}]"


@record
class ChildPipelines:
    """Plans the child pipelines of one pipeline's trigger jobs.

    `context` is the first pipeline's trigger, `root_dir` the repository the files are read
    from, `pipeline_file` the first pipeline's file (named in messages), `depth` how many levels
    below the first pipeline the pipeline whose trigger jobs these are is.
    """

    context: TriggerContext
    root_dir: Path
    pipeline_file: str
    depth: int = 0
    remote: RemoteFetcher | None = None

    def below(self) -> ChildPipelines:
        """The planner of the child pipelines' own trigger jobs, one level deeper."""
        return dataclasses.replace(self, depth=self.depth + 1)

    def plan(
        self,
        job: Job,
        *,
        parent: Plan,
        pipeline_id: int,
        child_id: int,
        artifacts: ArtifactStore,
        log: Callable[[str], None] = lambda _: None,
    ) -> Plan:
        """Plan the child pipeline `job` of `parent` starts, as pipeline `child_id`.

        The dotenv report variables of the jobs `job` needs reach the child (read from the
        artifacts of pipeline `pipeline_id`, problems said through `log`). Raises
        `PipelineError` when its configuration is wrong or too deep, `EngineError` when a
        generated file cannot be read from those artifacts.
        """
        assert job.trigger is not None
        dotenv = dotenv_variables(parent, job, artifacts, pipeline_id, log)
        texts: dict[tuple[str, str], str] = {}
        for include in job.trigger.includes:
            if include.kind == "artifact":
                assert include.job is not None
                texts[(include.job, include.path)] = _artifact_text(
                    artifacts, pipeline_id, include.job, include.path
                )
        return plan_child(
            job,
            parent_context=self.context,
            root_dir=str(self.root_dir),
            parent_file=self.pipeline_file,
            depth=self.depth + 1,
            pipeline_id=child_id,
            artifacts=texts,
            remote=self.remote,
            dotenv=dotenv,
        )


def _artifact_text(artifacts: ArtifactStore, pipeline_id: int, job: str, path: str) -> str:
    """The text of `path` in `job`'s stored artifacts, resolved inside them (never out)."""
    where = artifacts.job_dir(pipeline_id, job)
    what = f"the child pipeline's file {path!r} from the artifacts of job {job!r}"
    if not where.is_dir():
        raise EngineError(
            f"cannot read {what}: the job stored no artifacts in this pipeline; give it "
            f"`artifacts: paths: [{path}]` and make the trigger job `needs:` it"
        )
    try:
        with ConfinedTree(where) as tree:
            data = tree.read_bytes(path, MAX_FILE_BYTES + 1)
    except ConfinedPathError as exc:
        raise EngineError(f"cannot read {what}: {exc}") from None
    if len(data) > MAX_FILE_BYTES:
        raise EngineError(f"cannot read {what}: larger than {MAX_FILE_BYTES >> 20} MiB")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise EngineError(f"cannot read {what}: it is not UTF-8 text") from None


class NestedRecorder:
    """Passes a child pipeline's events on, its jobs named `job [trigger job]`.

    The child's start adds its jobs to the parent's view; its end becomes a line of the
    trigger job's log (the parent pipeline's own end is the only `PipelineFinished`).
    """

    def __init__(self, parent: Recorder, trigger: str, pipeline_id: int) -> None:
        self._parent = parent
        self._trigger = trigger
        self._pipeline_id = pipeline_id
        self.finished: PipelineFinished | None = None

    def _name(self, job: str) -> str:
        return nested_name(job, self._trigger)

    def record(self, event: Event) -> None:
        """Rename the event's job and pass it on."""
        out: Event
        if isinstance(event, PipelineStarted):
            out = PipelineStarted(
                pipeline_id=event.pipeline_id,
                jobs=tuple((self._name(job), stage) for job, stage in event.jobs),
            )
        elif isinstance(event, PipelineFinished):
            self.finished = event
            out = LogLine(
                job=self._trigger,
                text=f"kapal: child pipeline #{self._pipeline_id} {event.status.value} "
                f"in {event.duration:.1f}s",
            )
        elif isinstance(
            event, JobStatusChanged | LogLine | ArtifactStored | TestReport | CoverageReport
        ):
            out = dataclasses.replace(event, job=self._name(event.job))
        else:  # pragma: no cover - every event type is handled above
            out = event
        self._parent.record(out)
