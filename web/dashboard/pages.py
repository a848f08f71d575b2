"""What every dashboard view shares: the app's settings, database and services, the viewer of
a request, path and query types, and a page builder that shows a WebError as an error page."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Path as FastAPIPath
from fastapi import Query, Request
from fastapi.responses import Response

from web.api.auth import Access
from web.api.deps import get_database, get_services, get_settings
from web.dashboard.rendering import render
from web.dashboard.signin import viewer
from web.db.jobs import get_job
from web.db.paging import MAX_ID
from web.db.pipelines import get_pipeline
from web.db.repos import get_repository
from web.db.schemas import JobRead, PipelineRead, RepositoryRead
from web.db.session import Database
from web.errors import NotFoundError, WebError

ERROR_TITLES = {
    400: "Bad request",
    401: "Sign in needed",
    403: "Not allowed",
    404: "Not found",
    409: "Not now",
}


Filter = Annotated[str | None, Query(max_length=255)]
# an id past what a BIGINT holds is refused before any database sees it
RowId = Annotated[int, FastAPIPath(ge=1, le=MAX_ID)]


# the app's settings, database and service layer, read as the API's dependencies read them
settings_of = get_settings
database_of = get_database
services_of = get_services


def viewer_of(request: Request) -> Access:
    """Who is looking: the signed-in token of the request, or anonymous."""
    return viewer(request, database_of(request), settings_of(request))


def error_page(request: Request, access: Access | None, exc: WebError) -> Response:
    """The error page of `exc`, answered with its status."""
    status = exc.status if 400 <= exc.status < 600 else 500
    return render(
        request,
        "error.html",
        viewer=access or Access(token=None, public_reads=settings_of(request).public_reads),
        status_code=status,
        title=ERROR_TITLES.get(status, "Something went wrong"),
        message=str(exc),
        status=status,
    )


def page(request: Request, build: Callable[[Access], Response]) -> Response:
    """Run a page builder for the request's viewer, turning a WebError into an error page."""
    access = viewer_of(request)
    try:
        return build(access)
    except WebError as exc:
        return error_page(request, access, exc)


def blank(value: str | None) -> str | None:
    """A query value stripped, None when empty."""
    return value.strip() or None if value is not None else None


def job_with_context(
    database: Database, job_id: int
) -> tuple[JobRead, PipelineRead, RepositoryRead]:
    """A job with its pipeline and repository; NotFoundError for an unknown job."""
    with database.transaction() as session:
        job = get_job(session=session, job_id=job_id)
        if job is None:
            raise NotFoundError(f"job {job_id} does not exist")
        pipeline = get_pipeline(session=session, pipeline_id=job.pipeline_id)
        assert pipeline is not None
        repository = get_repository(session=session, repository_id=pipeline.repository_id)
        assert repository is not None
    return job, pipeline, repository
