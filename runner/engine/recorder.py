"""The `Recorder` interface: where the engine reports what happens while a pipeline runs.

The engine sends a stream of events (pipeline started, job status changed, log line, artifact
stored, test report, coverage report, pipeline finished) to one recorder. `kapal run` records to
the terminal, the server to its database, tests to memory or to nothing.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol, TypeVar

from pipeline.records import record

_E = TypeVar("_E")


class JobStatus(StrEnum):
    """A job's status, as GitLab names them."""

    CREATED = "created"
    PENDING = "pending"
    RUNNING = "running"
    SCHEDULED = "scheduled"  # a `when: delayed` job waiting for its `start_in` to pass
    SUCCESS = "success"
    FAILED = "failed"
    CANCELED = "canceled"
    SKIPPED = "skipped"
    MANUAL = "manual"

    @property
    def finished(self) -> bool:
        """Whether the job will not change status any more in this run."""
        return self in _FINISHED


_FINISHED = frozenset(
    {JobStatus.SUCCESS, JobStatus.FAILED, JobStatus.CANCELED, JobStatus.SKIPPED, JobStatus.MANUAL}
)


class PipelineStatus(StrEnum):
    """A pipeline's status, as GitLab names them (`manual`: waiting for a blocking manual job)."""

    CREATED = "created"
    RUNNING = "running"
    MANUAL = "manual"
    SUCCESS = "success"
    FAILED = "failed"
    CANCELED = "canceled"


@record
class PipelineStarted:
    """The pipeline began: its id and its jobs with their stages, in plan order."""

    pipeline_id: int
    jobs: tuple[tuple[str, str], ...]  # (job name, stage)


@record
class JobStatusChanged:
    """A job moved to a new status; `reason` explains skips, failures and manual gates."""

    job: str
    status: JobStatus
    attempt: int = 1
    exit_code: int | None = None
    duration: float | None = None
    allowed_failure: bool = False
    reason: str = ""


@record
class LogLine:
    """One line of a job's output (masked, without the trailing newline)."""

    job: str
    text: str


@record
class ArtifactStored:
    """A job's artifacts were collected into the artifact store."""

    job: str
    files: tuple[str, ...]
    size: int


@record
class TestCase:
    """One test case from a JUnit report."""

    __test__ = False  # not a pytest test class

    name: str
    classname: str
    duration: float
    status: str  # "passed", "failed", "error", "skipped"
    message: str = ""


@record
class TestReport:
    """Test cases parsed from a job's JUnit reports."""

    __test__ = False  # not a pytest test class

    job: str
    cases: tuple[TestCase, ...]

    @property
    def failed(self) -> int:
        """How many cases failed or errored."""
        return sum(1 for c in self.cases if c.status in ("failed", "error"))


@record
class CoverageReport:
    """The line coverage read from a job's `coverage_report` files (Cobertura), in percent."""

    job: str
    percent: float
    files: tuple[str, ...]
    lines_covered: int | None = None
    lines_valid: int | None = None


@record
class PipelineFinished:
    """The pipeline ended with `status` after `duration` seconds."""

    status: PipelineStatus
    duration: float


Event = (
    PipelineStarted
    | JobStatusChanged
    | LogLine
    | ArtifactStored
    | TestReport
    | CoverageReport
    | PipelineFinished
)


class Recorder(Protocol):
    """Receives the events of one pipeline run.

    Lifecycle: `PipelineStarted` first, then any mix of the other events, `PipelineFinished`
    last. The engine calls `record` from several threads but never concurrently (it holds a lock
    around each call), so an implementation needs no locking of its own. `record` must not raise;
    a recorder that cannot record drops the event.
    """

    def record(self, event: Event) -> None:
        """Take one event."""


class NullRecorder:
    """A recorder that drops every event."""

    def record(self, event: Event) -> None:
        """Drop the event."""


@dataclass
class MemoryRecorder:
    """A recorder that keeps every event in a list, for tests and for summaries."""

    events: list[Event] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(self, event: Event) -> None:
        """Append the event."""
        with self._lock:
            self.events.append(event)

    def statuses(self, job: str) -> list[JobStatus]:
        """Every status `job` went through, in order."""
        return [e.status for e in self.events if isinstance(e, JobStatusChanged) and e.job == job]

    def final_status(self, job: str) -> JobStatus | None:
        """The last status `job` reached, or None when it never got one."""
        seen = self.statuses(job)
        return seen[-1] if seen else None

    def log(self, job: str) -> list[str]:
        """The log lines of `job`."""
        return [e.text for e in self.events if isinstance(e, LogLine) and e.job == job]

    def of_type(self, kind: type[_E]) -> list[_E]:
        """Every event of one type."""
        return [e for e in self.events if isinstance(e, kind)]
