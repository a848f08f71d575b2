"""The engine: runs a `Plan`'s jobs on a `Backend`, reporting to a `Recorder`.

    runner/engine/
    ├── schedule.py    which job may start, which is skipped/manual/canceled and why; the
    │                  pipeline's status (pure: no threads, no I/O)
    ├── job_runner.py  `JobRunner`: one attempt of one job, from workspace to artifacts
    ├── driver.py      `Engine`: the in-memory driver of `kapal run` (threads) over the two above
    ├── workspace.py   where a job's files come from (working tree copy, git clone, in place)
    ├── services.py    service host names and port probes
    ├── script.py      the shell scripts a job container runs
    ├── variables.py   `$VAR` expansion and a job's predefined variables
    └── recorder.py    the events of a run and the `Recorder` interface

The server's workers drive `schedule` and `JobRunner` from database rows; `kapal run` drives
them through `Engine`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from runner.engine.driver import (
        Engine,
        EngineOptions,
        JobResult,
        PipelineResult,
    )
    from runner.engine.job_runner import (
        JobOptions,
        JobOutcome,
        JobRunner,
        WorkspaceSource,
        job_folder,
    )
    from runner.engine.schedule import (
        DEPLOY_NOT_RUNNABLE,
        JobState,
        ScheduleOptions,
        Step,
        next_steps,
        pipeline_status,
        select_jobs,
    )

__all__ = [
    "DEPLOY_NOT_RUNNABLE",
    "Engine",
    "EngineOptions",
    "JobOptions",
    "JobOutcome",
    "JobResult",
    "JobRunner",
    "JobState",
    "PipelineResult",
    "ScheduleOptions",
    "Step",
    "WorkspaceSource",
    "job_folder",
    "next_steps",
    "pipeline_status",
    "select_jobs",
]

_HOMES = {
    "Engine": "runner.engine.driver",
    "EngineOptions": "runner.engine.driver",
    "JobResult": "runner.engine.driver",
    "PipelineResult": "runner.engine.driver",
    "JobOptions": "runner.engine.job_runner",
    "JobOutcome": "runner.engine.job_runner",
    "JobRunner": "runner.engine.job_runner",
    "WorkspaceSource": "runner.engine.job_runner",
    "job_folder": "runner.engine.job_runner",
    "DEPLOY_NOT_RUNNABLE": "runner.engine.schedule",
    "JobState": "runner.engine.schedule",
    "ScheduleOptions": "runner.engine.schedule",
    "Step": "runner.engine.schedule",
    "next_steps": "runner.engine.schedule",
    "pipeline_status": "runner.engine.schedule",
    "select_jobs": "runner.engine.schedule",
}


def __getattr__(name: str) -> Any:
    """Load a re-exported name on first use.

    Not at import time: `runner.artifacts` (outside this package for now) imports
    `runner.engine.recorder`, and the job runner imports `runner.artifacts`; importing the job
    runner here would close that cycle whenever `runner.artifacts` is imported first. Once
    artifacts live in this package, these can become plain imports.
    """
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(home), name)
