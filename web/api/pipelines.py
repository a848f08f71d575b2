"""`/api/v1/pipelines` and `POST /api/v1/repos/{id}/pipelines`: run, list, read, cancel, retry
pipelines, and read their test cases."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from web.api.auth import Access, authenticate, bearer_token
from web.api.deps import (
    MAX_ROW_ID,
    AccessDep,
    RowId,
    ServicesDep,
    SessionDep,
    WriterDep,
    get_database,
    get_settings,
)
from web.db.paging import decode_cursor
from web.db.pipelines import get_pipeline, get_pipeline_detail, list_pipelines
from web.db.repos import get_repository, get_repository_by_name
from web.db.results import list_test_cases
from web.db.schemas import (
    MAX_REF_LENGTH,
    Page,
    PipelineDetail,
    PipelineRead,
    Scope,
    TestCaseRead,
)
from web.db.session import Database
from web.errors import NotFoundError
from web.orchestration import (
    cancel_pipeline,
    create_pipeline_for_ref,
    retry_pipeline,
)
from web.settings import Settings

router = APIRouter(tags=["pipelines"])

MAX_VARIABLES = 200


class PipelineIn(BaseModel):
    """A pipeline to run by hand: the branch or tag, and variables for its jobs."""

    ref: str = Field(min_length=1, max_length=MAX_REF_LENGTH, examples=["main"])
    variables: dict[str, str] = Field(default_factory=dict, max_length=MAX_VARIABLES)


class TestReport(BaseModel):
    """A pipeline's JUnit test cases and how many ended in each status."""

    __test__ = False  # not a pytest test class

    counts: dict[str, int]
    cases: list[TestCaseRead]


def pipeline_repository(database: Database, pipeline_id: int) -> int:
    """The repository id of a pipeline; NotFoundError for an unknown pipeline."""
    with database.transaction() as session:
        found = get_pipeline(session=session, pipeline_id=pipeline_id)
    if found is None:
        raise NotFoundError(f"pipeline {pipeline_id} does not exist")
    return found.repository_id


@router.post("/api/v1/repos/{repository_id}/pipelines", status_code=201)
def create_pipeline(
    repository_id: RowId, body: PipelineIn, services: ServicesDep, access: WriterDep
) -> PipelineRead:
    """Run the pipeline of a branch or tag's current commit (source `api`)."""
    access.need(Scope.WRITE, repository_id)
    return create_pipeline_for_ref(
        services=services,
        repository_id=repository_id,
        ref=body.ref,
        variables=body.variables,
        source="api",
    )


@dataclass(frozen=True)
class ListQuery:
    """What `GET /api/v1/pipelines` was asked for (its query string, as validated)."""

    repo: str | None
    ref: str | None
    status: str | None
    source: str | None
    cursor: str | None
    limit: int


@router.get("/api/v1/pipelines", response_model=Page[PipelineRead])
async def list_all_pipelines(
    request: Request,
    repo: Annotated[str | None, Query(description="repository id or name", max_length=255)] = None,
    ref: Annotated[str | None, Query(max_length=MAX_REF_LENGTH)] = None,
    status: Annotated[str | None, Query(max_length=32)] = None,
    source: Annotated[str | None, Query(max_length=32)] = None,
    cursor: Annotated[str | None, Query(max_length=40)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    authorization: Annotated[str | None, Header()] = None,
) -> Response:
    """Pipelines newest first; pass `next_cursor` back as `cursor` for the next page."""
    # The token check, the reads and the JSON in one worker thread, on one connection: as
    # dependencies and a returned model they took six hops between the event loop and the
    # thread pool, each one a wait for the GIL on a busy machine (about 1 ms of a 4 ms answer
    # with two cores busy), and the token its own transaction
    body = await run_in_threadpool(
        list_json,
        get_settings(request),
        get_database(request),
        authorization,
        ListQuery(repo, ref, status, source, cursor, limit),
    )
    return Response(body, media_type="application/json")


def list_json(
    settings: Settings, database: Database, authorization: str | None, query: ListQuery
) -> bytes:
    """The page of pipelines `query` asks for, as JSON, if the token may read it."""
    plaintext = bearer_token(authorization)
    repo, cursor = query.repo, query.cursor
    with database.reading() as session:  # the token is looked up on the list's connection
        token = (
            None
            if plaintext is None
            else authenticate(session=session, settings=settings, plaintext=plaintext)
        )
        access = Access(token=token, public_reads=settings.public_reads)
        repository_id = None
        if repo is not None:
            found = (
                get_repository(session=session, repository_id=int(repo))
                if repo.isascii() and repo.isdigit() and int(repo) <= MAX_ROW_ID
                else get_repository_by_name(session=session, name=repo)
            )
            if found is None:
                raise NotFoundError(f"no repository {repo!r}; list them with GET /api/v1/repos")
            repository_id = found.id
        access.need(Scope.READ, repository_id)
        if cursor is not None and decode_cursor(cursor) > MAX_ROW_ID:
            cursor = None  # every id is below it: the first page
        page = list_pipelines(
            session=session,
            repository_id=repository_id,
            ref=query.ref,
            status=query.status,
            source=query.source,
            cursor=cursor,
            limit=query.limit,
        )
    return page.model_dump_json().encode()


@router.get("/api/v1/pipelines/{pipeline_id}")
def read_pipeline(pipeline_id: RowId, session: SessionDep, access: AccessDep) -> PipelineDetail:
    """A pipeline with its status, timings and every job attempt."""
    detail = get_pipeline_detail(session=session, pipeline_id=pipeline_id)
    if detail is None:
        raise NotFoundError(f"pipeline {pipeline_id} does not exist")
    access.need(Scope.READ, detail.repository_id)
    return detail


@router.post("/api/v1/pipelines/{pipeline_id}/cancel")
def cancel(pipeline_id: RowId, services: ServicesDep, access: WriterDep) -> PipelineDetail:
    """Cancel a pipeline's unfinished jobs (running ones are stopped by their workers)."""
    access.need(Scope.WRITE, pipeline_repository(services.database, pipeline_id))
    return cancel_pipeline(services=services, pipeline_id=pipeline_id)


@router.post("/api/v1/pipelines/{pipeline_id}/retry")
def retry(
    pipeline_id: RowId,
    services: ServicesDep,
    access: WriterDep,
    all: Annotated[bool, Query(description="retry every job, not only the failed")] = False,
) -> PipelineDetail:
    """Run a finished pipeline's failed and canceled jobs again (every job with `?all=true`)."""
    access.need(Scope.WRITE, pipeline_repository(services.database, pipeline_id))
    return retry_pipeline(services=services, pipeline_id=pipeline_id, failed_only=not all)


@router.get("/api/v1/pipelines/{pipeline_id}/tests")
def tests(pipeline_id: RowId, session: SessionDep, access: AccessDep) -> TestReport:
    """The pipeline's JUnit test cases, in the order recorded, with counts by status."""
    found = get_pipeline(session=session, pipeline_id=pipeline_id)
    if found is None:
        raise NotFoundError(f"pipeline {pipeline_id} does not exist")
    access.need(Scope.READ, found.repository_id)
    cases = list_test_cases(session=session, pipeline_id=pipeline_id)
    counts = {status: 0 for status in ("passed", "failed", "error", "skipped")}
    for case in cases:
        counts[case.status] = counts.get(case.status, 0) + 1
    return TestReport(counts=counts, cases=cases)
