"""The terminal recorders: plain lines for pipes, a live table for terminals."""

from __future__ import annotations

import io

from rich.console import Console

from runner.engine.recorder import (
    CoverageReport,
    JobStatus,
    JobStatusChanged,
    LogLine,
    PipelineFinished,
    PipelineStarted,
    PipelineStatus,
    TestCase,
    TestReport,
)
from runner.terminal import LiveRecorder, PlainRecorder

EVENTS = [
    PipelineStarted(pipeline_id=7, jobs=(("build-it", "build"), ("unit", "test"))),
    JobStatusChanged(job="build-it", status=JobStatus.CREATED),
    JobStatusChanged(job="build-it", status=JobStatus.RUNNING),
    LogLine(job="build-it", text="$ make"),
    JobStatusChanged(job="build-it", status=JobStatus.SUCCESS, exit_code=0, duration=1.5),
    JobStatusChanged(job="unit", status=JobStatus.RUNNING),
    LogLine(job="unit", text="ran 2 tests"),
    TestReport(
        job="unit", cases=(TestCase("a", "c", 0.1, "passed"), TestCase("b", "c", 0.1, "failed"))
    ),
    JobStatusChanged(
        job="unit", status=JobStatus.FAILED, exit_code=1, duration=2.0, reason="exited with code 1"
    ),
    PipelineFinished(status=PipelineStatus.FAILED, duration=3.5),
]


def test_plain_lines_prefix_logs_with_the_job() -> None:
    out = io.StringIO()
    recorder = PlainRecorder(out)
    for event in EVENTS:
        recorder.record(event)
    assert out.getvalue().splitlines() == [
        "==> build-it: running",
        "[build-it] $ make",
        "==> build-it: success in 1.5s",
        "==> unit: running",
        "[unit] ran 2 tests",
        "==> unit: failed in 2s - exited with code 1",
        "==> pipeline failed in 3.5s",
    ]


def test_plain_lines_for_one_job_show_only_its_log() -> None:
    out = io.StringIO()
    recorder = PlainRecorder(out, only=["unit"])
    for event in EVENTS:
        recorder.record(event)
    text = out.getvalue()
    assert "ran 2 tests\n" in text and "[unit]" not in text and "$ make" not in text


def test_summary_table_has_every_job() -> None:
    recorder = PlainRecorder(io.StringIO())
    for event in EVENTS:
        recorder.record(event)
    console = Console(file=io.StringIO(), width=120)
    recorder.print_summary(console)
    table = console.file.getvalue()  # type: ignore[attr-defined]
    assert "build-it" in table and "success" in table and "1.5s" in table
    assert "1/2 passed; exited with code 1" in table


def test_live_view_prints_logs_and_the_final_table() -> None:
    console = Console(file=io.StringIO(), force_terminal=True, width=120)
    with LiveRecorder(console) as recorder:
        for event in EVENTS:
            recorder.record(event)
    recorder.print_summary(console)
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert "build-it" in text and "$ make" in text and "ran 2 tests" in text
    assert "==> unit: failed" in text and "exited with code 1" in text


def test_summary_table_shows_coverage_and_a_scheduled_job() -> None:
    recorder = PlainRecorder(io.StringIO())
    events = [
        PipelineStarted(pipeline_id=8, jobs=(("unit", "test"), ("smoke", "test"))),
        CoverageReport(job="unit", percent=83.5, files=("coverage.xml",)),
        JobStatusChanged(job="unit", status=JobStatus.SUCCESS, exit_code=0, duration=1.0),
        JobStatusChanged(
            job="smoke", status=JobStatus.SCHEDULED, reason="delayed: starts 10m from now"
        ),
    ]
    for event in events:
        recorder.record(event)
    console = Console(file=io.StringIO(), width=120)
    recorder.print_summary(console)
    table = console.file.getvalue()  # type: ignore[attr-defined]
    assert "coverage 83.50%" in table
    assert "scheduled" in table and "delayed: starts 10m from now" in table
