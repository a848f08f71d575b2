"""The dashboard's routes: pages (pipelines, a pipeline, a job, repositories), live events,
badges, the token sign-in and the write actions (play, retry, cancel), which call the same
service layer as the REST API.

Reads follow the API's rule (public unless `Settings.public_reads` is false, then a signed-in
token); writes need a signed-in token with the `write` scope on the repository, and a form
carrying the browser's CSRF value. The app includes `router` and mounts `static_files` at
`STATIC_PATH`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode, urlsplit

from fastapi import APIRouter, Query, Request
from fastapi import Path as FastAPIPath
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from markupsafe import Markup
from sse_starlette.sse import EventSourceResponse

from pipeline.errors import PipelineError
from pipeline.plan import Plan
from web.api import jobs as api_jobs
from web.api.auth import Access, authenticate
from web.api.repos import webhook_url
from web.dashboard import charts, trends
from web.dashboard.badges import badge_svg
from web.dashboard.dag import DagJob, draw_dag
from web.dashboard.display import FINISHED_STATUSES, duration
from web.dashboard.live import (
    PAGE_SIZE,
    ListQuery,
    follow_list,
    follow_pipeline,
    pipeline_version,
)
from web.dashboard.rendering import render
from web.dashboard.signin import (
    clear_token_cookie,
    local_path,
    read_form,
    set_token_cookie,
    viewer,
)
from web.db.encryption import SecretCipher
from web.db.jobs import get_job
from web.db.paging import MAX_ID
from web.db.pipelines import (
    get_pipeline,
    get_pipeline_detail,
    get_pipeline_plan,
    latest_pipeline,
    list_pipelines,
)
from web.db.repos import (
    get_repository,
    get_repository_by_name,
    get_repository_credentials,
    list_repositories,
)
from web.db.results import list_artifacts, list_built_images, list_test_cases
from web.db.schemas import JobRead, PipelineRead, RepositoryRead, Scope, TestCaseRead
from web.db.session import Database
from web.errors import (
    AuthenticationError,
    ConflictError,
    NotFoundError,
    WebError,
)
from web.orchestration import (
    Services,
    cancel_job,
    cancel_pipeline,
    play_job,
    retry_job,
    retry_pipeline,
)
from web.settings import Settings

STATIC_PATH = "/dashboard/static"
STATIC_DIR = Path(__file__).parent / "static"
RECENT_PIPELINES = 15
ERROR_TITLES = {
    400: "Bad request",
    401: "Sign in needed",
    403: "Not allowed",
    404: "Not found",
    409: "Not now",
}

router = APIRouter(include_in_schema=False)
static_files = StaticFiles(directory=STATIC_DIR)

Filter = Annotated[str | None, Query(max_length=255)]
# an id past what a BIGINT holds is refused before any database sees it
RowId = Annotated[int, FastAPIPath(ge=1, le=MAX_ID)]


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _database(request: Request) -> Database:
    database: Database = request.app.state.database
    return database


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def _viewer(request: Request) -> Access:
    return viewer(request, _database(request), _settings(request))


def _error_page(request: Request, access: Access | None, exc: WebError) -> Response:
    status = exc.status if 400 <= exc.status < 600 else 500
    return render(
        request,
        "error.html",
        viewer=access or Access(token=None, public_reads=_settings(request).public_reads),
        status_code=status,
        title=ERROR_TITLES.get(status, "Something went wrong"),
        message=str(exc),
        status=status,
    )


def _page(request: Request, build: Callable[[Access], Response]) -> Response:
    """Run a page builder for the request's viewer, turning a WebError into an error page."""
    access = _viewer(request)
    try:
        return build(access)
    except WebError as exc:
        return _error_page(request, access, exc)


def _repository_names(database: Database) -> dict[int, str]:
    with database.transaction() as session:
        return {r.id: r.name for r in list_repositories(session=session)}


# -- pipelines list --------------------------------------------------------------------------


@dataclass(frozen=True)
class ListFilters:
    """The filters of the pipelines page, as its query string gives them."""

    repo: str | None = None
    branch: str | None = None
    status: str | None = None
    source: str | None = None

    @property
    def any(self) -> bool:
        """Whether any filter is set."""
        return any((self.repo, self.branch, self.status, self.source))

    def query(self, **more: str | None) -> str:
        """A query string of the filters (and `more`), without empty values."""
        values = {
            "repo": self.repo,
            "branch": self.branch,
            "status": self.status,
            "source": self.source,
            **more,
        }
        return urlencode({k: v for k, v in values.items() if v})


def _blank(value: str | None) -> str | None:
    return value.strip() or None if value is not None else None


@router.get("/")
def pipelines_page(
    request: Request,
    repo: Filter = None,
    branch: Filter = None,
    status: Filter = None,
    source: Filter = None,
    cursor: Annotated[str | None, Query(max_length=40)] = None,
) -> Response:
    """Pipelines across repositories, newest first, filtered, a page at a time; rows live."""
    filters = ListFilters(_blank(repo), _blank(branch), _blank(status), _blank(source))
    cursor = _blank(cursor)
    database = _database(request)

    def build(access: Access) -> Response:
        with database.transaction() as session:
            repositories = list_repositories(session=session)
            repository_id = None
            if filters.repo is not None:
                found = get_repository_by_name(session=session, name=filters.repo)
                if found is None:
                    raise NotFoundError(f"no repository named {filters.repo!r}")
                repository_id = found.id
            access.need(Scope.READ, repository_id)
            page = list_pipelines(
                session=session,
                repository_id=repository_id,
                ref=filters.branch,
                status=filters.status,
                source=filters.source,
                cursor=cursor,
                limit=PAGE_SIZE,
            )
        return render(
            request,
            "pipelines.html",
            viewer=access,
            section="pipelines",
            page=page,
            filters=filters,
            cursor=cursor,
            repositories=repositories,
            repos={r.id: r.name for r in repositories},
            events="/dashboard/events?" + filters.query(cursor=cursor),
            newest_url="/?" + filters.query(),
            older_url="/?" + filters.query(cursor=page.next_cursor),
        )

    return _page(request, build)


# -- one pipeline ----------------------------------------------------------------------------


@dataclass
class JobCard:
    """A job on the pipeline page: its latest attempt and the attempts before it."""

    job: JobRead
    earlier: list[JobRead] = field(default_factory=list)


@dataclass
class Stage:
    """A column of job cards."""

    name: str
    cards: list[JobCard] = field(default_factory=list)


@dataclass
class TestSummary:
    """A pipeline's test cases counted by status, with the failed ones."""

    __test__ = False  # not a pytest test class

    counts: dict[str, int]
    failed: list[TestCaseRead]
    jobs: dict[int, str]

    @property
    def total(self) -> int:
        """How many test cases there are."""
        return sum(self.counts.values())


def _plan(raw: dict[str, Any] | None) -> Plan | None:
    if raw is None:
        return None
    try:
        return Plan.from_dict(raw)
    except PipelineError:
        return None  # a plan of an older format: the page does without its graph


def _stages(jobs: list[JobRead], plan: Plan | None) -> list[Stage]:
    cards: dict[str, JobCard] = {}
    for job in jobs:  # plan order, attempts oldest first
        card = cards.get(job.name)
        if card is None:
            cards[job.name] = JobCard(job)
        else:
            card.earlier.append(card.job)
            card.job = job
    order = list(plan.stages) if plan is not None else []
    stages: dict[str, Stage] = {name: Stage(name) for name in order}
    for card in cards.values():
        stages.setdefault(card.job.stage, Stage(card.job.stage)).cards.append(card)
    return [stage for stage in stages.values() if stage.cards]


def _dag(jobs: list[JobRead], plan: Plan | None) -> Markup | None:
    if plan is None or not any(job.needs is not None for job in plan.jobs):
        return None
    latest = {job.name: job for job in jobs}
    drawn = [
        DagJob(
            name=job.name,
            status=latest[job.name].status,
            job_id=latest[job.name].id,
            waits_for=job.waits_for,
            needs=tuple(need.job for need in job.needs or ()),
        )
        for job in plan.runnable_jobs()
        if job.name in latest
    ]
    return Markup(draw_dag(drawn)) if drawn else None


@router.get("/pipelines/{pipeline_id}")
def pipeline_page(request: Request, pipeline_id: RowId) -> Response:
    """A pipeline: stages of job cards, the needs graph, tests, artifacts, images, actions."""
    database = _database(request)

    def build(access: Access) -> Response:
        with database.transaction() as session:
            detail = get_pipeline_detail(session=session, pipeline_id=pipeline_id)
            if detail is None:
                raise NotFoundError(f"pipeline {pipeline_id} does not exist")
            access.need(Scope.READ, detail.repository_id)
            repository = get_repository(session=session, repository_id=detail.repository_id)
            plan = _plan(get_pipeline_plan(session=session, pipeline_id=pipeline_id))
            cases = list_test_cases(session=session, pipeline_id=pipeline_id)
            names = {job.id: job.name for job in detail.jobs}
            current = [job for job in detail.jobs if not job.retried]
            artifacts = [
                (job, artifact)
                for job in current
                for artifact in list_artifacts(session=session, job_id=job.id)
            ]
            images = [
                (names.get(image.job_id, "?"), image.job_id, image)
                for image in list_built_images(session=session, pipeline_id=pipeline_id)
            ]
        counts = {status: 0 for status in ("passed", "failed", "error", "skipped")}
        for case in cases:
            counts[case.status] = counts.get(case.status, 0) + 1
        statuses = {job.status for job in current}
        return render(
            request,
            "pipeline.html",
            viewer=access,
            section="pipelines",
            p=detail,
            repository=repository,
            stages=_stages(detail.jobs, plan),
            dag=_dag(detail.jobs, plan),
            tests=TestSummary(
                counts=counts,
                failed=[c for c in cases if c.status in ("failed", "error")],
                jobs=names,
            ),
            artifacts=artifacts,
            images=images,
            can_retry=plan is not None
            and not statuses & {"pending", "running"}
            and bool(statuses & {"success", "failed", "canceled"}),
            can_cancel=bool(statuses & {"created", "pending", "running", "manual"})
            and detail.status not in FINISHED_STATUSES,
            version=pipeline_version(database, pipeline_id),
        )

    return _page(request, build)


# -- one job ---------------------------------------------------------------------------------


def _job_of(database: Database, job_id: int) -> tuple[JobRead, PipelineRead, RepositoryRead]:
    with database.transaction() as session:
        job = get_job(session=session, job_id=job_id)
        if job is None:
            raise NotFoundError(f"job {job_id} does not exist")
        pipeline = get_pipeline(session=session, pipeline_id=job.pipeline_id)
        assert pipeline is not None
        repository = get_repository(session=session, repository_id=pipeline.repository_id)
        assert repository is not None
    return job, pipeline, repository


@router.get("/jobs/{job_id}")
def job_page(request: Request, job_id: RowId) -> Response:
    """A job: its metadata and its log, followed live while it runs."""
    database = _database(request)

    def build(access: Access) -> Response:
        job, pipeline, repository = _job_of(database, job_id)
        access.need(Scope.READ, repository.id)
        with database.transaction() as session:
            artifacts = list_artifacts(session=session, job_id=job_id)
        return render(
            request,
            "job.html",
            viewer=access,
            section="pipelines",
            j=job,
            p=pipeline,
            repository=repository,
            artifacts=artifacts,
            version=pipeline_version(database, pipeline.id),
        )

    return _page(request, build)


@router.get("/jobs/{job_id}/log/events")
async def job_log_events(request: Request, job_id: RowId) -> Any:
    """The job's log as the API's SSE follow (resumable with Last-Event-ID), for the viewer."""
    access = await run_in_threadpool(_viewer, request)
    return await api_jobs.log(
        job_id=job_id,
        request=request,
        database=_database(request),
        access=access,
        offset=0,
        accept="text/event-stream",
        last_event_id=request.headers.get("last-event-id"),
    )


@router.get("/jobs/{job_id}/raw")
async def job_raw_log(request: Request, job_id: RowId) -> Any:
    """The job's whole log as plain text, to download."""
    access = await run_in_threadpool(_viewer, request)
    response = await api_jobs.log(
        job_id=job_id,
        request=request,
        database=_database(request),
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
    access = await run_in_threadpool(_viewer, request)
    return await api_jobs.download_artifact(
        job_id=job_id,
        artifact_id=artifact_id,
        database=_database(request),
        settings=_settings(request),
        access=access,
    )


# -- repositories and badges -----------------------------------------------------------------


@router.get("/repos")
def repositories_page(request: Request) -> Response:
    """Every repository with its latest pipeline and badge."""
    database = _database(request)

    def build(access: Access) -> Response:
        access.need(Scope.READ)
        with database.transaction() as session:
            rows = [
                (r, latest_pipeline(session=session, repository_id=r.id))
                for r in list_repositories(session=session)
            ]
        return render(request, "repos.html", viewer=access, section="repos", repositories=rows)

    return _page(request, build)


@router.get("/repos/{repository_id}")
def repository_page(request: Request, repository_id: RowId) -> Response:
    """A repository: settings, the webhook to set up, its badge and recent pipelines."""
    database = _database(request)
    settings = _settings(request)

    def build(access: Access) -> Response:
        with database.transaction() as session:
            repository = get_repository(session=session, repository_id=repository_id)
            if repository is None:
                raise NotFoundError(f"repository {repository_id} does not exist")
            access.need(Scope.READ, repository.id)
            pipelines = list_pipelines(
                session=session, repository_id=repository.id, limit=RECENT_PIPELINES
            ).items
            secret = None
            if access.token is not None and access.token.allows(Scope.ADMIN, repository.id):
                secret = get_repository_credentials(
                    session=session,
                    cipher=SecretCipher(settings.encryption_key()),
                    repository_id=repository.id,
                ).webhook_secret
        badge_path = f"/badges/{repository.name}/{repository.default_branch}.svg"
        return render(
            request,
            "repo.html",
            viewer=access,
            section="repos",
            r=repository,
            pipelines=pipelines,
            repos={repository.id: repository.name},
            events="/dashboard/events?"
            + urlencode({"repo": repository.name, "limit": RECENT_PIPELINES}),
            webhook_url=webhook_url(settings, repository.provider),
            secret=secret,
            badge_path=badge_path,
            badge_url=settings.server_url + badge_path,
        )

    return _page(request, build)


BADGE_HEADERS = {
    "Cache-Control": "no-cache, max-age=0",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
    "X-Content-Type-Options": "nosniff",
}


def _badge_status(database: Database, access: Access, path: str) -> tuple[int, str | None]:
    """(HTTP status, pipeline status) of `repo/branch` (a repository name holds a slash, a
    branch may hold more: the first split naming a repository wins)."""
    parts = path.split("/")
    with database.transaction() as session:
        for cut in range(1, len(parts)):
            name, branch = "/".join(parts[:cut]), "/".join(parts[cut:])
            if not name or not branch:
                continue
            repository = get_repository_by_name(session=session, name=name)
            if repository is None:
                continue
            try:
                access.need(Scope.READ, repository.id)
            except WebError as exc:
                return exc.status, None
            latest = latest_pipeline(session=session, repository_id=repository.id, ref=branch)
            return 200, None if latest is None else latest.status
    return 404, None


@router.get("/badges/{path:path}")
def badge(request: Request, path: str) -> Response:
    """`/badges/{repo}/{branch}.svg`: the status of the branch's latest pipeline."""
    access = _viewer(request)
    status_code, status = 404, None
    if path.endswith(".svg"):
        status_code, status = _badge_status(_database(request), access, path[: -len(".svg")])
    return Response(
        badge_svg(status),
        status_code=status_code,
        media_type="image/svg+xml",
        headers=BADGE_HEADERS,
    )


# -- charts ----------------------------------------------------------------------------------

CHART_PIPELINES = 30
CHART_DAYS = 14


@router.get("/charts")
def charts_page(request: Request, repo: Filter = None, branch: Filter = None) -> Response:
    """A repository's trends: durations and pass rate of a branch, slowest jobs, flaky tests."""
    database = _database(request)

    def build(access: Access) -> Response:
        with database.transaction() as session:
            repositories = list_repositories(session=session)
            chosen = next((r for r in repositories if r.name == _blank(repo)), None)
            if _blank(repo) is not None and chosen is None:
                raise NotFoundError(f"no repository named {repo!r}")
            repository = chosen or (repositories[0] if repositories else None)
            if repository is None:
                access.need(Scope.READ)
                return render(
                    request, "charts.html", viewer=access, section="charts", repository=None
                )
            access.need(Scope.READ, repository.id)
            ref = _blank(branch) or repository.default_branch
            runs = trends.recent_durations(
                session=session, repository_id=repository.id, ref=ref, limit=CHART_PIPELINES
            )
            days = trends.pass_rate_by_day(
                session=session,
                repository_id=repository.id,
                ref=ref,
                days=CHART_DAYS,
                today=datetime.now(UTC),
            )
            slow = trends.slowest_jobs(session=session, repository_id=repository.id)
            flaky = trends.flakiest_tests(session=session, repository_id=repository.id)
        return render(
            request,
            "charts.html",
            viewer=access,
            section="charts",
            repositories=repositories,
            repository=repository,
            branch=ref,
            days=CHART_DAYS,
            durations_count=len(runs),
            durations=Markup(  # drawn by kapal, every label escaped
                charts.column_chart(
                    [
                        charts.Bar(
                            value=run.seconds,
                            label=f"#{run.id}",
                            status=run.status,
                            href=f"/pipelines/{run.id}",
                            title=f"#{run.id} {run.status}: {duration(run.seconds)}",
                        )
                        for run in runs
                    ],
                    label=f"durations of the last pipelines of {ref}",
                )
            ),
            pass_rate=Markup(
                charts.rate_chart(
                    [(d.day.strftime("%m-%d"), d.rate if d.total else None) for d in days],
                    label=f"pass rate of {ref} by day",
                )
            ),
            slowest_count=len(slow),
            slowest=Markup(
                charts.ranked_chart(
                    [
                        (j.name, j.mean, f"(longest {duration(j.longest)}, {j.runs} runs)")
                        for j in slow
                    ],
                    label="slowest jobs",
                )
            ),
            flaky_count=len(flaky),
            flaky=Markup(
                charts.ranked_chart(
                    [
                        (f"{t.suite} {t.name}", t.failed, f"failed, {t.passed} passed")
                        for t in flaky
                    ],
                    label="flakiest tests",
                    unit="",
                )
            ),
        )

    return _page(request, build)


# -- live events -----------------------------------------------------------------------------


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
    database = _database(request)
    access = await run_in_threadpool(_viewer, request)

    def check() -> ListQuery | None:
        with database.transaction() as session:
            if pipeline is not None:
                found = get_pipeline(session=session, pipeline_id=pipeline)
                if found is None:
                    raise NotFoundError(f"pipeline {pipeline} does not exist")
                access.need(Scope.READ, found.repository_id)
                return None
            repository_id = None
            if _blank(repo) is not None:
                named = get_repository_by_name(session=session, name=str(repo).strip())
                if named is None:
                    raise NotFoundError(f"no repository named {repo!r}")
                repository_id = named.id
            access.need(Scope.READ, repository_id)
        return ListQuery(
            repository_id=repository_id,
            ref=_blank(branch),
            status=_blank(status),
            source=_blank(source),
            cursor=_blank(cursor),
            limit=limit,
        )

    query = await run_in_threadpool(check)
    if query is None:
        assert pipeline is not None
        stream = follow_pipeline(request, database, pipeline, version)
    else:
        stream = follow_list(request, database, query)
    return EventSourceResponse(stream, ping=15, headers={"Cache-Control": "no-store"})


# -- sign-in ---------------------------------------------------------------------------------


@router.get("/signin")
def signin_page(request: Request, next: Annotated[str, Query(max_length=2000)] = "/") -> Response:
    """The sign-in form: paste an API token."""
    return render(request, "signin.html", viewer=_viewer(request), next=local_path(next))


@router.post("/signin")
async def signin(request: Request) -> Response:
    """Check the pasted token and keep it in an HttpOnly cookie; back to where the person was."""
    nobody = Access(token=None, public_reads=_settings(request).public_reads)
    try:
        form = await read_form(request)
    except WebError as exc:
        return _error_page(request, nobody, exc)
    target = local_path(form.get("next"))
    plaintext = form.get("token", "").strip()

    def check() -> None:
        with _database(request).transaction() as session:
            authenticate(session=session, settings=_settings(request), plaintext=plaintext)

    try:
        if not plaintext:
            raise AuthenticationError("paste an API token to sign in")
        await run_in_threadpool(check)
    except AuthenticationError as exc:
        return render(
            request, "signin.html", viewer=nobody, status_code=401, next=target, error=str(exc)
        )
    response = RedirectResponse(target, status_code=303)
    set_token_cookie(response, request, plaintext)
    return response


@router.post("/signout")
async def signout(request: Request) -> Response:
    """Forget the signed-in token."""
    nobody = Access(token=None, public_reads=_settings(request).public_reads)
    try:
        await read_form(request)
    except WebError as exc:
        return _error_page(request, nobody, exc)
    response = RedirectResponse("/", status_code=303)
    clear_token_cookie(response)
    return response


# -- write actions ---------------------------------------------------------------------------


def _back(request: Request, default: str) -> str:
    """The page a form was posted from (its Referer on this site), else `default`."""
    referer = request.headers.get("referer")
    if referer:
        parts = urlsplit(referer)
        if parts.netloc == request.headers.get("host", "") and parts.path:
            return local_path(parts.path, default)
    return default


def _with_notice(path: str, notice: str) -> str:
    return f"{path}?{urlencode({'notice': notice[:300]})}"


async def _act(
    request: Request, default: str, act: Callable[[Services, Access], str | None]
) -> Response:
    """Check the form and the signed-in token, then `act` (returning where to go, or None for
    the page the form came from); a refused action goes back there with its reason."""
    access: Access | None = None
    back = _back(request, default)
    try:
        await read_form(request)
        access = await run_in_threadpool(_viewer, request)
        if access.token is None:
            raise AuthenticationError(
                "this action needs a signed-in API token with the write scope; sign in first"
            )
        signed_in = access
        target = await run_in_threadpool(act, _services(request), signed_in)
    except ConflictError as exc:
        return RedirectResponse(_with_notice(back, str(exc)), status_code=303)
    except WebError as exc:
        return _error_page(request, access, exc)
    return RedirectResponse(target or back, status_code=303)


def _job_repository(services: Services, job_id: int) -> int:
    return _job_of(services.database, job_id)[2].id


def _pipeline_repository(services: Services, pipeline_id: int) -> int:
    with services.database.transaction() as session:
        found = get_pipeline(session=session, pipeline_id=pipeline_id)
    if found is None:
        raise NotFoundError(f"pipeline {pipeline_id} does not exist")
    return found.repository_id


def _who(access: Access) -> str:
    return access.token.name if access.token is not None else "anonymous"


@router.post("/jobs/{job_id}/play")
async def play(request: Request, job_id: RowId) -> Response:
    """Play a manual job (who played it is recorded as its reason)."""

    def act(services: Services, access: Access) -> None:
        access.need(Scope.WRITE, _job_repository(services, job_id))
        play_job(services=services, job_id=job_id, who=_who(access))

    return await _act(request, f"/jobs/{job_id}", act)


@router.post("/jobs/{job_id}/retry")
async def retry(request: Request, job_id: RowId) -> Response:
    """A new attempt of a finished job; on to its page when retried from the job's page."""

    def act(services: Services, access: Access) -> str | None:
        access.need(Scope.WRITE, _job_repository(services, job_id))
        new = retry_job(services=services, job_id=job_id)
        return f"/jobs/{new.id}" if _back(request, "") == f"/jobs/{job_id}" else None

    return await _act(request, f"/jobs/{job_id}", act)


@router.post("/jobs/{job_id}/cancel")
async def cancel(request: Request, job_id: RowId) -> Response:
    """Cancel a job."""

    def act(services: Services, access: Access) -> None:
        access.need(Scope.WRITE, _job_repository(services, job_id))
        cancel_job(services=services, job_id=job_id)

    return await _act(request, f"/jobs/{job_id}", act)


@router.post("/pipelines/{pipeline_id}/retry")
async def retry_all(
    request: Request, pipeline_id: RowId, all: Annotated[bool, Query()] = False
) -> Response:
    """Retry a pipeline's failed and canceled jobs (every job with `?all=1`)."""

    def act(services: Services, access: Access) -> str:
        access.need(Scope.WRITE, _pipeline_repository(services, pipeline_id))
        retry_pipeline(services=services, pipeline_id=pipeline_id, failed_only=not all)
        return f"/pipelines/{pipeline_id}"

    return await _act(request, f"/pipelines/{pipeline_id}", act)


@router.post("/pipelines/{pipeline_id}/cancel")
async def cancel_all(request: Request, pipeline_id: RowId) -> Response:
    """Cancel a pipeline."""

    def act(services: Services, access: Access) -> str:
        access.need(Scope.WRITE, _pipeline_repository(services, pipeline_id))
        cancel_pipeline(services=services, pipeline_id=pipeline_id)
        return f"/pipelines/{pipeline_id}"

    return await _act(request, f"/pipelines/{pipeline_id}", act)
