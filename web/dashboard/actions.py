"""The write actions of the pages (play, retry, cancel a job; retry, cancel a pipeline): a
signed-in token with the `write` scope on the repository and the form's CSRF value, then the
same service layer as the REST API; a refused action returns to its page with the reason."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse, Response

from web.api.auth import Access
from web.dashboard.pages import RowId, error_page, job_with_context, services_of, viewer_of
from web.dashboard.signin import local_path, read_form, set_notice_cookie
from web.db.pipelines import get_pipeline
from web.db.schemas import Scope
from web.errors import AuthenticationError, ConflictError, NotFoundError, WebError
from web.orchestration import (
    Services,
    cancel_job,
    cancel_pipeline,
    play_job,
    retry_job,
    retry_pipeline,
)

router = APIRouter(include_in_schema=False)


def _back(request: Request, default: str) -> str:
    """The page a form was posted from (its Referer on this site), else `default`."""
    referer = request.headers.get("referer")
    if referer:
        parts = urlsplit(referer)
        if parts.netloc == request.headers.get("host", "") and parts.path:
            return local_path(parts.path, default)
    return default


async def act_then_return(
    request: Request, default: str, act: Callable[[Services, Access], str | None]
) -> Response:
    """Check the form and the signed-in token, then `act` (returning where to go, or None for
    the page the form came from); a refused action goes back there with its reason."""
    access: Access | None = None
    back = _back(request, default)
    try:
        await read_form(request)
        access = await run_in_threadpool(viewer_of, request)
        if access.token is None:
            raise AuthenticationError(
                "this action needs a signed-in API token with the write scope; sign in first"
            )
        signed_in = access
        target = await run_in_threadpool(act, services_of(request), signed_in)
    except ConflictError as exc:
        refused = RedirectResponse(back, status_code=303)
        set_notice_cookie(refused, request, str(exc))
        return refused
    except WebError as exc:
        return error_page(request, access, exc)
    return RedirectResponse(target or back, status_code=303)


def _job_repository(services: Services, job_id: int) -> int:
    return job_with_context(services.database, job_id)[2].id


def _pipeline_repository(services: Services, pipeline_id: int) -> int:
    with services.database.transaction() as session:
        found = get_pipeline(session=session, pipeline_id=pipeline_id)
    if found is None:
        raise NotFoundError(f"pipeline {pipeline_id} does not exist")
    return found.repository_id


def who(access: Access) -> str:
    """The name an action is recorded under: the signed-in token's."""
    return access.token.name if access.token is not None else "anonymous"


@router.post("/jobs/{job_id}/play")
async def play(request: Request, job_id: RowId) -> Response:
    """Play a manual job (who played it is recorded as its reason)."""

    def act(services: Services, access: Access) -> None:
        access.need(Scope.WRITE, _job_repository(services, job_id))
        play_job(services=services, job_id=job_id, who=who(access))

    return await act_then_return(request, f"/jobs/{job_id}", act)


@router.post("/jobs/{job_id}/retry")
async def retry(request: Request, job_id: RowId) -> Response:
    """A new attempt of a finished job; on to its page when retried from the job's page."""

    def act(services: Services, access: Access) -> str | None:
        access.need(Scope.WRITE, _job_repository(services, job_id))
        new = retry_job(services=services, job_id=job_id)
        return f"/jobs/{new.id}" if _back(request, "") == f"/jobs/{job_id}" else None

    return await act_then_return(request, f"/jobs/{job_id}", act)


@router.post("/jobs/{job_id}/cancel")
async def cancel(request: Request, job_id: RowId) -> Response:
    """Cancel a job."""

    def act(services: Services, access: Access) -> None:
        access.need(Scope.WRITE, _job_repository(services, job_id))
        cancel_job(services=services, job_id=job_id)

    return await act_then_return(request, f"/jobs/{job_id}", act)


@router.post("/pipelines/{pipeline_id}/retry")
async def retry_all(
    request: Request, pipeline_id: RowId, all: Annotated[bool, Query()] = False
) -> Response:
    """Retry a pipeline's failed and canceled jobs (every job with `?all=1`)."""

    def act(services: Services, access: Access) -> str:
        access.need(Scope.WRITE, _pipeline_repository(services, pipeline_id))
        retry_pipeline(services=services, pipeline_id=pipeline_id, failed_only=not all)
        return f"/pipelines/{pipeline_id}"

    return await act_then_return(request, f"/pipelines/{pipeline_id}", act)


@router.post("/pipelines/{pipeline_id}/cancel")
async def cancel_all(request: Request, pipeline_id: RowId) -> Response:
    """Cancel a pipeline."""

    def act(services: Services, access: Access) -> str:
        access.need(Scope.WRITE, _pipeline_repository(services, pipeline_id))
        cancel_pipeline(services=services, pipeline_id=pipeline_id)
        return f"/pipelines/{pipeline_id}"

    return await act_then_return(request, f"/pipelines/{pipeline_id}", act)
