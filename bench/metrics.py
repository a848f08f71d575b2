"""Benchmark: one `GET /metrics` scrape over 100,000 finished job attempts, before and after the
job duration histogram became counters kept in the database.

Run: `.venv/bin/python bench/metrics.py [--jobs N] [--scrapes N]`.

On SQLite and on PostgreSQL (Debian's cluster, a throwaway database), the database is migrated
to revision 0006, `--jobs` (default 100,000) finished attempts are inserted in bulk (pipelines of
20 jobs; run times spread over 0.1 s .. 2 h; success, failed and canceled), then it is migrated
to head, whose revision 0007 fills the counters from those rows (its time is reported). Then,
each `--scrapes` times (after 3 untimed), taking turns:

- `before`: what `render_metrics` did until revision 0007 (the same gauges, and the histogram
  computed in Python over the last 10,000 finished attempts, read row by row), copied here;
- `after`: `web.api.health.render_metrics` as it is (the gauges and a few counter rows);
- `sql aggregate`: the alternative the counters were weighed against, the histogram as
  `SUM(CASE ...) GROUP BY status` over every finished attempt, with the gauges.

Prints median and p90 milliseconds, the ratio before/after, the load average, and on PostgreSQL
the plans of the two gauges' queries (whether they read only an index); writes
bench/results/metrics.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import case, func, insert, select, text  # noqa: E402

from tests.support.services import start_postgres  # noqa: E402
from web.api.health import render_metrics  # noqa: E402
from web.db.migrate import upgrade  # noqa: E402
from web.db.models import DURATION_BUCKETS, Job, Pipeline, Repository  # noqa: E402
from web.db.session import Database  # noqa: E402
from web.db.stats import count_jobs_by_status, count_pipelines_by_status  # noqa: E402

WARMUP = 3
PER_PIPELINE = 20


def _fill(database: Database, jobs: int) -> None:
    """`jobs` finished attempts in pipelines of `PER_PIPELINE`, inserted in bulk."""
    rng = random.Random(7)
    now = datetime.now(UTC)
    pipelines = (jobs + PER_PIPELINE - 1) // PER_PIPELINE
    with database.transaction() as session:
        session.execute(
            insert(Repository).values(
                id=1, name="acme/shop", clone_url="u", provider="github", webhook_secret=b"x"
            )
        )
        session.execute(
            insert(Pipeline),
            [
                {
                    "id": p + 1,
                    "repository_id": 1,
                    "source": "push",
                    "ref": "main",
                    "sha": "a" * 40,
                    "status": "success",
                }
                for p in range(pipelines)
            ],
        )
        rows = []
        for i in range(jobs):
            finished = now - timedelta(seconds=i)
            ran = rng.lognormvariate(4.0, 1.5) % 7200 + 0.1
            rows.append(
                {
                    "pipeline_id": i // PER_PIPELINE + 1,
                    "name": f"job-{i % PER_PIPELINE}",
                    "stage": "test",
                    "position": i % PER_PIPELINE,
                    "status": rng.choices(["success", "failed", "canceled"], [90, 8, 2])[0],
                    "started_at": finished - timedelta(seconds=ran),
                    "finished_at": finished,
                }
            )
        session.execute(insert(Job), rows)


def render_before(database: Database) -> str:
    """`render_metrics` as it was before revision 0007 (copied): the histogram in Python over
    the last 10,000 finished attempts."""
    with database.transaction() as session:
        pipelines = count_pipelines_by_status(session=session)
        jobs = count_jobs_by_status(session=session)
        rows = session.execute(
            select(Job.status, Job.started_at, Job.finished_at)
            .where(Job.started_at.is_not(None), Job.finished_at.is_not(None))
            .order_by(Job.id.desc())
            .limit(10_000)
        )
        durations = [
            (status, max(0.0, (finished - started).total_seconds()))
            for status, started, finished in rows
            if started is not None and finished is not None
        ]
    out = [f"kapal_pipelines{{status={s!r}}} {n}" for s, n in sorted(pipelines.items())]
    out += [f"kapal_jobs{{status={s!r}}} {n}" for s, n in sorted(jobs.items())]
    by_status: dict[str, list[float]] = {}
    for status, seconds in durations:
        by_status.setdefault(status, []).append(seconds)
    for status, values in sorted(by_status.items()):
        for bound in DURATION_BUCKETS:
            count = sum(1 for v in values if v <= bound)
            out.append(
                f'kapal_job_duration_seconds_bucket{{status="{status}",le="{bound}"}} {count}'
            )
        out.append(f'kapal_job_duration_seconds_sum{{status="{status}"}} {sum(values):.3f}')
        out.append(f'kapal_job_duration_seconds_count{{status="{status}"}} {len(values)}')
    return "\n".join(out) + "\n"


def render_aggregate(database: Database) -> str:
    """The histogram as one GROUP BY over every finished attempt (the alternative weighed)."""
    if database.dialect == "postgresql":
        span: Any = func.extract("epoch", Job.finished_at - Job.started_at)
    else:
        span = (func.julianday(Job.finished_at) - func.julianday(Job.started_at)) * 86400.0
    with database.transaction() as session:
        pipelines = count_pipelines_by_status(session=session)
        jobs = count_jobs_by_status(session=session)
        rows = session.execute(
            select(
                Job.status,
                func.count(),
                func.sum(span),
                *(func.sum(case((span <= b, 1), else_=0)) for b in DURATION_BUCKETS),
            )
            .where(
                Job.status.in_(["success", "failed", "canceled", "skipped"]),
                Job.started_at.is_not(None),
                Job.finished_at.is_not(None),
            )
            .group_by(Job.status)
        ).all()
    out = [f"kapal_pipelines{{status={s!r}}} {n}" for s, n in sorted(pipelines.items())]
    out += [f"kapal_jobs{{status={s!r}}} {n}" for s, n in sorted(jobs.items())]
    out += [repr(tuple(row)) for row in rows]
    return "\n".join(out) + "\n"


def _time(calls: dict[str, Callable[[], str]], scrapes: int) -> dict[str, list[float]]:
    """Milliseconds of each call, `scrapes` rounds after `WARMUP`, the calls taking turns."""
    spent: dict[str, list[float]] = {name: [] for name in calls}
    for round_ in range(WARMUP + scrapes):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            if round_ >= WARMUP:
                spent[name].append((time.perf_counter() - start) * 1000)
    return spent


def _plans(database: Database) -> dict[str, list[str]]:
    """PostgreSQL's plans of the two gauges' queries."""
    queries = {
        "kapal_pipelines": "SELECT status, count(*) FROM pipelines GROUP BY status",
        "kapal_jobs": "SELECT status, count(*) FROM jobs WHERE retried IS false GROUP BY status",
    }
    plans: dict[str, list[str]] = {}
    with database.transaction() as session:
        for name, query in queries.items():
            rows = session.execute(text(f"EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) {query}"))
            plans[name] = [row[0] for row in rows]
    return plans


@contextmanager
def _databases(which: list[str]) -> Iterator[Iterator[tuple[str, str]]]:
    with tempfile.TemporaryDirectory(prefix="kapal-bench-metrics-") as tmp:

        def urls() -> Iterator[tuple[str, str]]:
            if "sqlite" in which:
                yield "sqlite", f"sqlite:///{Path(tmp) / 'kapal.db'}"
            if "postgresql" in which:
                with start_postgres().database() as url:
                    yield "postgresql", url

        yield urls()


def measure(dialect: str, url: str, jobs: int, scrapes: int) -> dict[str, Any]:
    """Fill a database of `dialect` and time the three scrapes on it."""
    upgrade(url, "0006")
    database = Database(url)
    try:
        _fill(database, jobs)
        start = time.perf_counter()
        upgrade(url)  # revision 0007 fills the counters
        migrated = time.perf_counter() - start
        if dialect == "postgresql":
            with database.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
                c.execute(text("VACUUM ANALYZE"))
        load_before = os.getloadavg()
        spent = _time(
            {
                "before": lambda: render_before(database),
                "after": lambda: render_metrics(database),
                "sql aggregate": lambda: render_aggregate(database),
            },
            scrapes,
        )
        load_after = os.getloadavg()
        count = sum(
            int(line.rsplit(" ", 1)[1])
            for line in render_metrics(database).splitlines()
            if line.startswith("kapal_job_duration_seconds_count")
        )
        return {
            "database": dialect,
            "jobs": jobs,
            "histogram_count": count,
            "migration_0007_s": round(migrated, 3),
            "load_before": load_before,
            "load_after": load_after,
            "ms": {
                name: {
                    "median": round(statistics.median(values), 2),
                    "p90": round(statistics.quantiles(values, n=10)[-1], 2),
                }
                for name, values in spent.items()
            },
            "plans": _plans(database) if dialect == "postgresql" else {},
        }
    finally:
        database.dispose()


def main() -> None:
    """Run the benchmark and print its table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--scrapes", type=int, default=30)
    parser.add_argument("--databases", default="sqlite,postgresql")
    options = parser.parse_args()
    results = []
    with _databases(options.databases.split(",")) as urls:
        for dialect, url in urls:
            results.append(measure(dialect, url, options.jobs, options.scrapes))
    print(f"GET /metrics over {options.jobs:,} finished job attempts ({options.scrapes} scrapes)")
    print(f"{'database':<11} {'scrape':<14} {'median ms':>10} {'p90 ms':>9}  histogram count")
    for r in results:
        for name, ms in r["ms"].items():
            shown = r["histogram_count"] if name == "after" else ""
            print(f"{r['database']:<11} {name:<14} {ms['median']:>10} {ms['p90']:>9}  {shown}")
        ratio = r["ms"]["before"]["median"] / r["ms"]["after"]["median"]
        print(
            f"{r['database']:<11} before/after {ratio:.1f}x; migration 0007 (backfill) "
            f"{r['migration_0007_s']} s; load {r['load_before'][0]:.2f} -> {r['load_after'][0]:.2f}"
        )
        for name, plan in r["plans"].items():
            print(f"  plan of {name}: " + " | ".join(line.strip() for line in plan))
    out = ROOT / "bench" / "results" / "metrics.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
