"""The pipelines page: every repository's pipelines newest first, filtered, a page at a time
(its rows follow the database through `events_view`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from web.api.auth import Access
from web.dashboard.live import PAGE_SIZE
from web.dashboard.pages import Filter, blank, database_of, page
from web.dashboard.rendering import render
from web.dashboard.stages import stage_summaries
from web.db.pipelines import list_pipelines
from web.db.repos import get_repository_by_name, list_repositories
from web.db.schemas import Scope
from web.errors import NotFoundError

router = APIRouter(include_in_schema=False)


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
    filters = ListFilters(blank(repo), blank(branch), blank(status), blank(source))
    cursor = blank(cursor)
    database = database_of(request)

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
            stages = stage_summaries(session=session, pipeline_ids=[p.id for p in page.items])
        return render(
            request,
            "pipelines.html",
            viewer=access,
            section="pipelines",
            page=page,
            stages=stages,
            filters=filters,
            cursor=cursor,
            repositories=repositories,
            repos={r.id: r.name for r in repositories},
            events="/dashboard/events?" + filters.query(cursor=cursor),
            newest_url="/?" + filters.query(),
            older_url="/?" + filters.query(cursor=page.next_cursor),
        )

    return page(request, build)
