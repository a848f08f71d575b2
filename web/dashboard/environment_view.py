"""Environments: each one's current deployment, its history, and a rollback button (a re-deploy of
an earlier deployment's exact digest through `web.shipping`, as `POST /api/v1/environments/{id}/
rollback` does)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from web.api.auth import Access
from web.dashboard.actions import act_then_return, who
from web.dashboard.pages import RowId, database_of, page
from web.dashboard.rendering import render
from web.db.environments import get_environment, list_deployments, list_environments
from web.db.repos import list_repositories
from web.db.schemas import Scope
from web.errors import NotFoundError
from web.orchestration import Services
from web.shipping import rollback_environment

HISTORY = 100

router = APIRouter(include_in_schema=False)


@router.get("/environments")
def environments_page(request: Request) -> Response:
    """Every environment with its current deployment."""
    database = database_of(request)

    def build(access: Access) -> Response:
        token = access.need(Scope.READ)
        limited = token.repository_id if token is not None else None
        with database.transaction() as session:
            environments = list_environments(session=session, repository_id=limited)
            names = {r.id: r.name for r in list_repositories(session=session)}
        return render(
            request,
            "environments.html",
            viewer=access,
            section="environments",
            environments=environments,
            repos=names,
        )

    return page(request, build)


@router.get("/environments/{environment_id}")
def environment_page(request: Request, environment_id: RowId) -> Response:
    """One environment: its current deployment and its history, each earlier one a rollback
    target."""
    database = database_of(request)

    def build(access: Access) -> Response:
        with database.transaction() as session:
            environment = get_environment(session=session, environment_id=environment_id)
            if environment is None:
                raise NotFoundError(f"environment {environment_id} does not exist")
            access.need(Scope.READ, environment.repository_id)
            history = list_deployments(
                session=session, environment_id=environment_id, limit=HISTORY
            )
            names = {r.id: r.name for r in list_repositories(session=session)}
        return render(
            request,
            "environment.html",
            viewer=access,
            section="environments",
            environment=environment,
            repository=names.get(environment.repository_id, "?"),
            history=history,
        )

    return page(request, build)


@router.post("/environments/{environment_id}/rollback")
async def rollback(
    request: Request,
    environment_id: RowId,
    to: Annotated[int | None, Query(ge=1)] = None,
) -> Response:
    """Roll the environment back (to deployment `to`, else the one before the current)."""

    def act(services: Services, access: Access) -> str:
        with services.database.transaction() as session:
            environment = get_environment(session=session, environment_id=environment_id)
        if environment is None:
            raise NotFoundError(f"environment {environment_id} does not exist")
        access.need(Scope.WRITE, environment.repository_id)
        rollback_environment(
            services=services, environment_id=environment_id, who=who(access), to=to
        )
        return f"/environments/{environment_id}"

    return await act_then_return(request, f"/environments/{environment_id}", act)
