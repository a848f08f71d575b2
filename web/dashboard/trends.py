"""What the charts show, read from the history: recent pipeline durations of a branch, its pass
rate by day, the slowest jobs and the flakiest tests of a repository.

Each query is bounded (the last N pipelines, jobs or days), so a chart costs the same with a
hundred pipelines or a hundred thousand.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from web.dashboard.display import utc
from web.db.models import Job, Pipeline, TestCase

FINISHED = ("success", "failed", "canceled")
# a branch's newest pipelines the pass rate counts: a branch running more than this in the days
# shown has its earliest days counted in part
PASS_RATE_PIPELINES = 2000


@dataclass(frozen=True)
class PipelineRun:
    """A finished pipeline of the branch: its id, status and seconds from start to finish."""

    id: int
    status: str
    seconds: float


@dataclass(frozen=True)
class DayRate:
    """Of one day's finished pipelines, how many passed."""

    day: date
    passed: int
    total: int

    @property
    def rate(self) -> float:
        """The share that passed (0 when none finished)."""
        return self.passed / self.total if self.total else 0.0


@dataclass(frozen=True)
class JobTime:
    """A job name's mean and longest duration over its recent runs."""

    name: str
    mean: float
    longest: float
    runs: int


@dataclass(frozen=True)
class FlakyTest:
    """A test that both passed and failed over the recent pipelines of one commit or branch."""

    suite: str
    name: str
    passed: int
    failed: int


def recent_durations(
    *, session: Session, repository_id: int, ref: str, limit: int = 30
) -> list[PipelineRun]:
    """The last `limit` finished pipelines of a branch, oldest first."""
    rows = session.execute(
        select(Pipeline.id, Pipeline.status, Pipeline.started_at, Pipeline.finished_at)
        .where(
            Pipeline.repository_id == repository_id,
            Pipeline.ref == ref,
            Pipeline.status.in_(FINISHED),
            Pipeline.started_at.is_not(None),
            Pipeline.finished_at.is_not(None),
        )
        .order_by(Pipeline.id.desc())
        .limit(limit)
    ).all()
    return [
        PipelineRun(id, status, max(0.0, (utc(end) - utc(start)).total_seconds()))
        for id, status, start, end in reversed(rows)
        if start is not None and end is not None
    ]


def pass_rate_by_day(
    *, session: Session, repository_id: int, ref: str, days: int, today: datetime
) -> list[DayRate]:
    """For each of the last `days` days (oldest first), the branch's pipelines that finished
    that day and how many passed."""
    first = (utc(today) - timedelta(days=days - 1)).date()
    since = datetime(first.year, first.month, first.day, tzinfo=today.tzinfo)
    rows = session.execute(
        select(Pipeline.status, Pipeline.finished_at)
        .where(
            Pipeline.repository_id == repository_id,
            Pipeline.ref == ref,
            Pipeline.status.in_(("success", "failed")),
            Pipeline.finished_at >= since,
        )
        .order_by(Pipeline.id.desc())
        .limit(PASS_RATE_PIPELINES)
    ).all()
    passed: dict[date, int] = defaultdict(int)
    total: dict[date, int] = defaultdict(int)
    for status, finished in rows:
        if finished is None:
            continue
        day = utc(finished).date()
        total[day] += 1
        passed[day] += status == "success"
    return [
        DayRate(day, passed[day], total[day])
        for day in (first + timedelta(days=n) for n in range(days))
    ]


def slowest_jobs(
    *, session: Session, repository_id: int, pipelines: int = 100, limit: int = 10
) -> list[JobTime]:
    """The job names of the repository's last `pipelines` pipelines with the longest mean
    duration over their finished attempts, slowest first."""
    recent = (
        select(Pipeline.id)
        .where(Pipeline.repository_id == repository_id)
        .order_by(Pipeline.id.desc())
        .limit(pipelines)
        .scalar_subquery()
    )
    rows = session.execute(
        select(Job.name, Job.started_at, Job.finished_at).where(
            Job.pipeline_id.in_(recent),
            Job.started_at.is_not(None),
            Job.finished_at.is_not(None),
        )
    ).all()
    times: dict[str, list[float]] = defaultdict(list)
    for name, start, end in rows:
        if start is not None and end is not None:
            times[name].append(max(0.0, (utc(end) - utc(start)).total_seconds()))
    ranked = [
        JobTime(name, sum(values) / len(values), max(values), len(values))
        for name, values in times.items()
    ]
    ranked.sort(key=lambda job: (-job.mean, job.name))
    return ranked[:limit]


def flakiest_tests(
    *, session: Session, repository_id: int, pipelines: int = 50, limit: int = 10
) -> list[FlakyTest]:
    """Tests that both passed and failed over the repository's last `pipelines` pipelines,
    those failing most often first."""
    recent = (
        select(Pipeline.id)
        .where(Pipeline.repository_id == repository_id)
        .order_by(Pipeline.id.desc())
        .limit(pipelines)
        .scalar_subquery()
    )
    rows = session.execute(
        select(TestCase.suite, TestCase.name, TestCase.status).where(
            TestCase.pipeline_id.in_(recent)
        )
    ).all()
    passed: dict[tuple[str, str], int] = defaultdict(int)
    failed: dict[tuple[str, str], int] = defaultdict(int)
    for suite, name, status in rows:
        if status == "passed":
            passed[(suite, name)] += 1
        elif status in ("failed", "error"):
            failed[(suite, name)] += 1
    flaky = [
        FlakyTest(suite, name, passed[(suite, name)], count)
        for (suite, name), count in failed.items()
        if passed.get((suite, name))
    ]
    flaky.sort(key=lambda t: (-t.failed, -t.passed, t.suite, t.name))
    return flaky[:limit]
