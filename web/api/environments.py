"""`/api/v1/environments`: environments with their current deployment, their history, rollback.

A `when: manual` deploy job is an environment's approval gate: it waits in `manual` until
someone plays it (`POST /api/v1/jobs/{id}/play`); the deployment it makes records who played it
(`approved_by`). A rollback re-deploys an earlier deployment's exact digest (see
`web.shipping`).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from web.api.deps import AccessDep, RowId, ServicesDep, SessionDep, WriterDep
from web.db.environments import (
    DeploymentRead,
    EnvironmentRead,
    get_environment,
    list_deployments,
    list_environments,
)
from web.db.schemas import Scope
from web.errors import NotFoundError
from web.shipping import rollback_environment

router = APIRouter(prefix="/api/v1/environments", tags=["environments"])


class RollbackIn(BaseModel):
    """Which deployment to go back to; none: the one before the current."""

    to: int | None = Field(default=None, ge=1)


@router.get("")
def environments(
    session: SessionDep,
    access: AccessDep,
    repo: Annotated[int | None, Query(description="repository id", ge=1)] = None,
) -> list[EnvironmentRead]:
    """Environments with their current deployment (every repository the token may read)."""
    if repo is not None:
        access.need(Scope.READ, repo)
        return list_environments(session=session, repository_id=repo)
    token = access.need(Scope.READ)
    limited = token.repository_id if token is not None else None
    return list_environments(session=session, repository_id=limited)


def _environment(session: SessionDep, access: AccessDep, environment_id: int) -> EnvironmentRead:
    found = get_environment(session=session, environment_id=environment_id)
    if found is None:
        raise NotFoundError(f"environment {environment_id} does not exist")
    access.need(Scope.READ, found.repository_id)
    return found


@router.get("/{environment_id}")
def environment(environment_id: RowId, session: SessionDep, access: AccessDep) -> EnvironmentRead:
    """One environment and its current deployment."""
    return _environment(session, access, environment_id)


@router.get("/{environment_id}/deployments")
def deployments(
    environment_id: RowId,
    session: SessionDep,
    access: AccessDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[DeploymentRead]:
    """The environment's deployments, newest first."""
    _environment(session, access, environment_id)
    return list_deployments(session=session, environment_id=environment_id, limit=limit)


@router.post("/{environment_id}/rollback", status_code=201)
def rollback(
    environment_id: RowId, services: ServicesDep, access: WriterDep, body: RollbackIn | None = None
) -> DeploymentRead:
    """Re-deploy an earlier deployment's digest (409 with the reason when it cannot)."""
    with services.database.transaction() as session:
        found = get_environment(session=session, environment_id=environment_id)
    if found is None:
        raise NotFoundError(f"environment {environment_id} does not exist")
    token = access.need(Scope.WRITE, found.repository_id)
    who = token.name if token is not None else "anonymous"
    return rollback_environment(
        services=services,
        environment_id=environment_id,
        who=who,
        to=body.to if body is not None else None,
    )
