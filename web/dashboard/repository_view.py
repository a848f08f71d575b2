"""Repositories: the list with their badges, a repository's settings and webhook (its secret for
admins), and the status badges at `/badges/{repo}/{branch}.svg`."""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import Response

from web.api.auth import Access
from web.api.repos import webhook_url
from web.dashboard.badges import badge_svg
from web.dashboard.pages import RowId, database_of, page, settings_of, viewer_of
from web.dashboard.rendering import render
from web.dashboard.stages import stage_summaries
from web.db.encryption import SecretCipher
from web.db.pipelines import latest_pipeline, latest_pipelines, list_pipelines
from web.db.repos import (
    get_repository,
    get_repository_by_name,
    get_repository_credentials,
    list_repositories,
)
from web.db.schemas import Scope
from web.db.session import Database
from web.errors import NotFoundError, WebError

RECENT_PIPELINES = 15

router = APIRouter(include_in_schema=False)


@router.get("/repos")
def repositories_page(request: Request) -> Response:
    """Every repository with its latest pipeline and badge."""
    database = database_of(request)

    def build(access: Access) -> Response:
        access.need(Scope.READ)
        with database.transaction() as session:
            newest = latest_pipelines(session=session)
            rows = [(r, newest.get(r.id)) for r in list_repositories(session=session)]
        return render(request, "repos.html", viewer=access, section="repos", repositories=rows)

    return page(request, build)


@router.get("/repos/{repository_id}")
def repository_page(request: Request, repository_id: RowId) -> Response:
    """A repository: settings, the webhook to set up, its badge and recent pipelines."""
    database = database_of(request)
    settings = settings_of(request)

    def build(access: Access) -> Response:
        with database.transaction() as session:
            repository = get_repository(session=session, repository_id=repository_id)
            if repository is None:
                raise NotFoundError(f"repository {repository_id} does not exist")
            access.need(Scope.READ, repository.id)
            pipelines = list_pipelines(
                session=session, repository_id=repository.id, limit=RECENT_PIPELINES
            ).items
            stages = stage_summaries(session=session, pipeline_ids=[p.id for p in pipelines])
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
            stages=stages,
            repos={repository.id: repository.name},
            events="/dashboard/events?"
            + urlencode({"repo": repository.name, "limit": RECENT_PIPELINES}),
            webhook_url=webhook_url(settings, repository.provider),
            secret=secret,
            badge_path=badge_path,
            badge_url=settings.server_url + badge_path,
        )

    return page(request, build)


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
    access = viewer_of(request)
    status_code, status = 404, None
    if path.endswith(".svg"):
        status_code, status = _badge_status(database_of(request), access, path[: -len(".svg")])
    return Response(
        badge_svg(status),
        status_code=status_code,
        media_type="image/svg+xml",
        headers=BADGE_HEADERS,
    )
