"""Recorders for `kapal run`: a rich live view for terminals, plain lines otherwise."""

from __future__ import annotations

import time
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import TextIO

from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from runner.engine.recorder import (
    CoverageReport,
    Event,
    JobStatus,
    JobStatusChanged,
    LogLine,
    PipelineFinished,
    PipelineStarted,
    PipelineStatus,
    TestReport,
)
from runner.runtime.durations import format_duration

_STYLE = {
    JobStatus.CREATED: "dim",
    JobStatus.PENDING: "yellow",
    JobStatus.RUNNING: "cyan",
    JobStatus.SCHEDULED: "yellow",
    JobStatus.SUCCESS: "green",
    JobStatus.FAILED: "red",
    JobStatus.CANCELED: "magenta",
    JobStatus.SKIPPED: "dim",
    JobStatus.MANUAL: "blue",
}


@dataclass
class _JobRow:
    name: str
    stage: str
    status: JobStatus = JobStatus.CREATED
    started: float | None = None
    duration: float | None = None
    exit_code: int | None = None
    allowed_failure: bool = False
    attempt: int = 1
    reason: str = ""
    tests: str = ""
    coverage: str = ""

    def elapsed(self) -> float | None:
        """Seconds the job took, or has been running so far."""
        if self.duration is not None:
            return self.duration
        if self.started is not None and self.status == JobStatus.RUNNING:
            return time.monotonic() - self.started
        return None

    def status_text(self) -> str:
        """The status as shown: with "(allowed)" and the attempt number when they matter."""
        text = self.status.value
        if self.status == JobStatus.FAILED and self.allowed_failure:
            text += " (allowed)"
        if self.attempt > 1:
            text += f" (attempt {self.attempt})"
        return text


@dataclass
class RunSummary:
    """What the recorders learn about a run: one row per job, and the final status."""

    rows: dict[str, _JobRow] = field(default_factory=dict)
    status: PipelineStatus | None = None
    duration: float = 0.0

    def update(self, event: Event) -> None:
        """Fold one event into the summary."""
        if isinstance(event, PipelineStarted):
            for name, stage in event.jobs:
                self.rows[name] = _JobRow(name=name, stage=stage)
        elif isinstance(event, JobStatusChanged):
            row = self.rows.setdefault(event.job, _JobRow(name=event.job, stage=""))
            row.status = event.status
            row.attempt = event.attempt
            row.reason = event.reason
            row.allowed_failure = event.allowed_failure
            if event.status == JobStatus.RUNNING:
                row.started = time.monotonic()
                row.duration = None
            if event.status.finished:
                row.exit_code = event.exit_code
                if event.duration is not None:
                    row.duration = event.duration
        elif isinstance(event, TestReport):
            row = self.rows.setdefault(event.job, _JobRow(name=event.job, stage=""))
            row.tests = f"{len(event.cases) - event.failed}/{len(event.cases)} passed"
        elif isinstance(event, CoverageReport):
            row = self.rows.setdefault(event.job, _JobRow(name=event.job, stage=""))
            row.coverage = f"coverage {event.percent:.2f}%"
        elif isinstance(event, PipelineFinished):
            self.status = event.status
            self.duration = event.duration

    def table(self, *, title: str | None = None) -> Table:
        """The jobs as a rich table (stage, job, status, duration, exit code, note)."""
        table = Table(title=title, show_edge=False, pad_edge=False)
        for column in ("stage", "job", "status", "duration", "exit", "note"):
            table.add_column(column, no_wrap=column != "note")
        for row in self.rows.values():
            elapsed = row.elapsed()
            note = "; ".join(part for part in (row.tests, row.coverage, row.reason) if part)
            table.add_row(
                Text(row.stage),
                Text(row.name),  # plain text: `job [trigger]` is no markup
                Text(row.status_text(), style=_STYLE[row.status]),
                format_duration(elapsed) if elapsed is not None else "",
                "" if row.exit_code is None else str(row.exit_code),
                note,
            )
        return table

    def headline(self) -> str:
        """One line: the pipeline's status and duration."""
        status = self.status.value if self.status else "unfinished"
        return f"pipeline {status} in {format_duration(self.duration)}"


def _shown(job: str, only: set[str]) -> bool:
    """Whether `job`'s log lines are shown: all are, else those of `only` and of the child
    pipelines they trigger (named `job [trigger job]`)."""
    return not only or job in only or any(job.endswith(f" [{name}]") for name in only)


class PlainRecorder:
    """Writes `[job] line` log lines and status changes as plain text (stdout not a terminal).

    `only` limits the log lines shown to those jobs (status lines are always shown).
    """

    def __init__(self, out: TextIO, only: Collection[str] = ()) -> None:
        self._out = out
        self._only = set(only)
        self.summary = RunSummary()

    def record(self, event: Event) -> None:
        """Print the event as one line when it is worth a line."""
        self.summary.update(event)
        if isinstance(event, LogLine):
            if _shown(event.job, self._only):
                bare = self._only == {event.job}
                self._write(event.text if bare else f"[{event.job}] {event.text}")
        elif isinstance(event, JobStatusChanged) and event.status not in (
            JobStatus.CREATED,
            JobStatus.PENDING,
        ):
            row = self.summary.rows[event.job]
            parts = [f"==> {event.job}: {row.status_text()}"]
            if event.duration is not None and event.status.finished:
                parts.append(f"in {format_duration(event.duration)}")
            if event.reason:
                parts.append(f"- {event.reason}")
            self._write(" ".join(parts))
        elif isinstance(event, PipelineFinished):
            self._write(f"==> {self.summary.headline()}")

    def _write(self, text: str) -> None:
        self._out.write(text + "\n")
        self._out.flush()

    def print_summary(self, console: Console) -> None:
        """Print the summary table at the end of the run."""
        console.print(self.summary.table())


class LiveRecorder:
    """A rich live view: the job table at the bottom, log lines scrolling above it.

    Lifecycle: use as a context manager around the run (`with LiveRecorder(console): ...`);
    the live display stops on exit, leaving the logs and the final table on screen.
    """

    def __init__(self, console: Console, only: Collection[str] = ()) -> None:
        self._console = console
        self._only = set(only)
        self.summary = RunSummary()
        self._live = Live(self._render(), console=console, refresh_per_second=8, transient=True)

    def __enter__(self) -> LiveRecorder:
        self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._live.update(self._render(), refresh=True)
        self._live.__exit__(None, None, None)

    def _render(self) -> Group:
        return Group(self.summary.table())

    def record(self, event: Event) -> None:
        """Show a log line above the table, or refresh the table."""
        self.summary.update(event)
        if isinstance(event, LogLine):
            if _shown(event.job, self._only):
                prefix = "" if self._only == {event.job} else f"[bold]{escape(event.job)}[/] "
                self._console.print(prefix + escape(event.text), highlight=False)
        elif isinstance(event, JobStatusChanged) and event.status.finished:
            row = self.summary.rows[event.job]
            style = _STYLE[event.status]
            note = f" - {escape(event.reason)}" if event.reason else ""
            self._console.print(
                f"[{style}]==> {escape(event.job)}: {row.status_text()}[/]{note}", highlight=False
            )
        self._live.update(self._render())

    def print_summary(self, console: Console) -> None:
        """Print the summary table at the end of the run."""
        console.print(self.summary.table())
