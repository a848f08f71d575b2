"""`GET /dashboard/events`: the server-sent events a pipelines list or a pipeline page follows."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from sse_starlette.sse import EventSourceResponse

from web.dashboard.live import PAGE_SIZE, ListQuery, follow_list, follow_pipeline
from web.dashboard.pages import Filter, blank, database_of, viewer_of
from web.db.paging import MAX_ID
from web.db.pipelines import get_pipeline
from web.db.repos import get_repository_by_name
from web.db.schemas import Scope
from web.errors import NotFoundError

router = APIRouter(include_in_schema=False)


@router.get("/dashboard/events")
async def events(
    request: Request,
    pipeline: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    version: Annotated[str, Query(max_length=64)] = "",
    repo: Filter = None,
    branch: Filter = None,
    status: Filter = None,
    source: Filter = None,
    cursor: Annotated[str | None, Query(max_length=40)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = PAGE_SIZE,
) -> Any:
    """Server-sent events of a pipelines list (`row`, `order`) or of one pipeline (`changed`)."""
    database = database_of(request)
    access = await run_in_threadpool(viewer_of, request)

    def check() -> ListQuery | None:
        with database.transaction() as session:
            if pipeline is not None:
                found = get_pipeline(session=session, pipeline_id=pipeline)
                if found is None:
                    raise NotFoundError(f"pipeline {pipeline} does not exist")
                access.need(Scope.READ, found.repository_id)
                return None
            repository_id = None
            if blank(repo) is not None:
                named = get_repository_by_name(session=session, name=str(repo).strip())
                if named is None:
                    raise NotFoundError(f"no repository named {repo!r}")
                repository_id = named.id
            access.need(Scope.READ, repository_id)
        return ListQuery(
            repository_id=repository_id,
            ref=blank(branch),
            status=blank(status),
            source=blank(source),
            cursor=blank(cursor),
            limit=limit,
        )

    query = await run_in_threadpool(check)
    if query is None:
        assert pipeline is not None
        stream = follow_pipeline(request, database, pipeline, version)
    else:
        stream = follow_list(request, database, query)
    return EventSourceResponse(stream, ping=15, headers={"Cache-Control": "no-store"})
