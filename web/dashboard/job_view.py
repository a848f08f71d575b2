"""A job's page, its log followed live (the API's SSE, with the viewer's sign-in), the raw log and
the job's artifacts to download."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from web.api import jobs as api_jobs
from web.api.auth import Access
from web.dashboard.live import pipeline_version
from web.dashboard.pages import RowId, database_of, job_with_context, page, settings_of, viewer_of
from web.dashboard.rendering import render
from web.db.downstream import child_pipelines
from web.db.paging import MAX_ID
from web.db.results import list_artifacts
from web.db.schemas import Scope

router = APIRouter(include_in_schema=False)


@router.get("/jobs/{job_id}")
def job_page(request: Request, job_id: RowId) -> Response:
    """A job: its metadata and its log, followed live while it runs."""
    database = database_of(request)

    def build(access: Access) -> Response:
        job, pipeline, repository = job_with_context(database, job_id)
        access.need(Scope.READ, repository.id)
        # taken before the reads the page shows: a change made meanwhile makes it refresh
        version = pipeline_version(database, pipeline.id)
        job, pipeline, repository = job_with_context(database, job_id)
        with database.transaction() as session:
            artifacts = list_artifacts(session=session, job_id=job_id)
            child = child_pipelines(session=session, job_ids=[job_id]).get(job_id)
        return render(
            request,
            "job.html",
            viewer=access,
            section="pipelines",
            j=job,
            p=pipeline,
            repository=repository,
            artifacts=artifacts,
            child_pipeline_id=child,
            version=version,
        )

    return page(request, build)


@router.get("/jobs/{job_id}/log/events")
async def job_log_events(
    request: Request,
    job_id: RowId,
    offset: Annotated[int, Query(ge=0, le=MAX_ID, description="lines already shown")] = 0,
) -> Any:
    """The job's log as the API's SSE follow for the viewer, from `offset` (a page reopening
    its stream) or after `Last-Event-ID` (the browser reconnecting by itself)."""
    access = await run_in_threadpool(viewer_of, request)
    return await api_jobs.log(
        job_id=job_id,
        request=request,
        database=database_of(request),
        access=access,
        offset=offset,
        accept="text/event-stream",
        last_event_id=request.headers.get("last-event-id"),
    )


@router.get("/jobs/{job_id}/raw")
async def job_raw_log(request: Request, job_id: RowId) -> Any:
    """The job's whole log as plain text, to download."""
    access = await run_in_threadpool(viewer_of, request)
    response = await api_jobs.log(
        job_id=job_id,
        request=request,
        database=database_of(request),
        access=access,
        offset=0,
        accept=None,
        last_event_id=None,
    )
    response.headers["Content-Disposition"] = f'attachment; filename="job-{job_id}.log"'
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


@router.get("/jobs/{job_id}/artifacts/{artifact_id}")
async def job_artifact(request: Request, job_id: RowId, artifact_id: RowId) -> Any:
    """Download one of the job's artifacts (.tar.gz)."""
    access = await run_in_threadpool(viewer_of, request)
    return await api_jobs.download_artifact(
        job_id=job_id,
        artifact_id=artifact_id,
        database=database_of(request),
        settings=settings_of(request),
        access=access,
    )
