"""`GET /healthz` (the database answers) and `GET /metrics` (Prometheus text format)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, PlainTextResponse
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from web.api.deps import AccessDep, DatabaseDep
from web.db.schemas import Scope
from web.db.session import Database
from web.db.stats import (
    count_jobs_by_status,
    count_pipelines_by_status,
    job_duration_histograms,
)

router = APIRouter(tags=["health"])

PROMETHEUS_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@router.get("/healthz")
def healthz(database: DatabaseDep) -> JSONResponse:
    """200 `{"status": "ok"}` when the database answers, else 503 with what failed."""
    try:
        with database.transaction() as session:
            session.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0][:300]
        return JSONResponse(
            {"status": "unavailable", "error": f"the database does not answer: {reason}"},
            status_code=503,
        )
    return JSONResponse({"status": "ok", "database": database.dialect})


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render_metrics(database: Database) -> str:
    """The Prometheus exposition of pipelines and jobs by status, the queue depth and the run
    time of every job attempt that ran and ended (a histogram whose counters only grow, read
    from the counters kept in the database: a scrape reads a few rows, however many jobs ran)."""
    with database.transaction() as session:
        pipelines = count_pipelines_by_status(session=session)
        jobs = count_jobs_by_status(session=session)
        durations = job_duration_histograms(session=session)
    out = [
        "# HELP kapal_pipelines Pipelines by status.",
        "# TYPE kapal_pipelines gauge",
    ]
    out += [f'kapal_pipelines{{status="{_label(s)}"}} {n}' for s, n in sorted(pipelines.items())]
    out += ["# HELP kapal_jobs Current job attempts by status.", "# TYPE kapal_jobs gauge"]
    out += [f'kapal_jobs{{status="{_label(s)}"}} {n}' for s, n in sorted(jobs.items())]
    out += [
        "# HELP kapal_queue_depth Jobs waiting for a worker (pending).",
        "# TYPE kapal_queue_depth gauge",
        f"kapal_queue_depth {jobs.get('pending', 0)}",
        "# HELP kapal_job_duration_seconds Run time (start to end) of the job attempts that ran"
        " and ended, by how they ended.",
        "# TYPE kapal_job_duration_seconds histogram",
    ]
    for histogram in durations:
        label = f'status="{_label(histogram.status)}"'
        for bound, count in histogram.buckets:
            out.append(f'kapal_job_duration_seconds_bucket{{{label},le="{bound}"}} {count}')
        out.append(f'kapal_job_duration_seconds_bucket{{{label},le="+Inf"}} {histogram.count}')
        out.append(f"kapal_job_duration_seconds_sum{{{label}}} {histogram.sum_seconds!r}")
        out.append(f"kapal_job_duration_seconds_count{{{label}}} {histogram.count}")
    return "\n".join(out) + "\n"


@router.get("/metrics", response_class=PlainTextResponse)
async def metrics(database: DatabaseDep, access: AccessDep) -> PlainTextResponse:
    """Prometheus metrics: `kapal_pipelines`, `kapal_jobs`, `kapal_queue_depth`,
    `kapal_job_duration_seconds` (a read: token-only when reads are)."""
    access.need(Scope.READ)
    body = await run_in_threadpool(render_metrics, database)
    return PlainTextResponse(body, media_type=PROMETHEUS_TYPE)
