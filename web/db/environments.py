"""Environments and their deployments in the history database.

`DatabaseDeployments` is the service's `runner.ship.deployments.DeploymentLog`: the shipper of a
worker's deploy job records through it (the environment row is made on the first deployment), and
a rollback reads an environment's history back through it. The read functions answer the API.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from runner.ship.deployments import Deployment
from web.db.models import Deployment as DeploymentRow
from web.db.models import Environment
from web.db.session import Database


class DeploymentRead(BaseModel):
    """One deployment: what digest went where, from which pipeline and job, who approved it."""

    model_config = ConfigDict(from_attributes=True, frozen=True)

    id: int
    environment_id: int
    pipeline_id: int | None
    job_id: int | None
    kind: str
    image: str
    digest: str
    target: str
    status: str
    user: str
    approved_by: str | None
    rollback_of: int | None
    message: str
    created_at: datetime


class EnvironmentRead(BaseModel):
    """An environment with the deployment in place (the last one that succeeded)."""

    model_config = ConfigDict(from_attributes=True, frozen=True)

    id: int
    repository_id: int
    name: str
    url: str | None
    created_at: datetime
    updated_at: datetime
    current: DeploymentRead | None = None


def _current(session: Session, environment_id: int) -> DeploymentRead | None:
    row = session.scalars(
        select(DeploymentRow)
        .where(DeploymentRow.environment_id == environment_id, DeploymentRow.status == "success")
        .order_by(DeploymentRow.id.desc())
        .limit(1)
    ).one_or_none()
    return None if row is None else DeploymentRead.model_validate(row)


def _environment(session: Session, row: Environment) -> EnvironmentRead:
    base = EnvironmentRead.model_validate(row)
    return base.model_copy(update={"current": _current(session, row.id)})


def list_environments(*, session: Session, repository_id: int | None) -> list[EnvironmentRead]:
    """Environments by repository and name (of one repository, or of every one for None)."""
    query = select(Environment).order_by(Environment.repository_id, Environment.name)
    if repository_id is not None:
        query = query.where(Environment.repository_id == repository_id)
    return [_environment(session, row) for row in session.scalars(query)]


def get_environment(*, session: Session, environment_id: int) -> EnvironmentRead | None:
    """One environment, or None."""
    row = session.get(Environment, environment_id)
    return None if row is None else _environment(session, row)


def list_deployments(
    *, session: Session, environment_id: int, limit: int = 100
) -> list[DeploymentRead]:
    """An environment's deployments, newest first."""
    rows = session.scalars(
        select(DeploymentRow)
        .where(DeploymentRow.environment_id == environment_id)
        .order_by(DeploymentRow.id.desc())
        .limit(limit)
    )
    return [DeploymentRead.model_validate(r) for r in rows]


def ensure_environment(
    *, session: Session, repository_id: int, name: str, url: str | None = None
) -> Environment:
    """The repository's environment `name`, made when it does not exist yet."""
    query = select(Environment).where(
        Environment.repository_id == repository_id, Environment.name == name
    )
    row = session.scalars(query).one_or_none()
    if row is None:
        try:
            with session.begin_nested():
                row = Environment(repository_id=repository_id, name=name, url=url)
                session.add(row)
        except IntegrityError:  # made by a concurrent deploy meanwhile
            row = session.scalars(query).one()
    elif url and row.url != url:
        row.url = url
    session.flush()
    return row


def _as_deployment(row: DeploymentRow, environment: str) -> Deployment:
    return Deployment(
        environment=environment,
        kind=row.kind,
        digest=row.digest,
        image=row.image,
        target=row.target,
        status=row.status,
        user=row.user,
        pipeline_id=row.pipeline_id,
        job=str(row.job_id or ""),
        rollback_of=row.rollback_of,
        message=row.message,
        spec=dict(row.spec or {}),
        created_at=row.created_at.timestamp(),
        id=row.id,
    )


class DatabaseDeployments:
    """A `DeploymentLog` over the database for one repository (and, for a job, its ids).

    Lifecycle: construct per job (or per rollback); each call runs in a transaction of its own.
    """

    def __init__(
        self,
        database: Database,
        repository_id: int,
        *,
        pipeline_id: int | None = None,
        job_id: int | None = None,
        approved_by: str | None = None,
        url: str | None = None,
    ) -> None:
        self.database = database
        self.repository_id = repository_id
        self.pipeline_id = pipeline_id
        self.job_id = job_id
        self.approved_by = approved_by
        self.url = url

    def record(self, deployment: Deployment) -> Deployment:
        """Insert the deployment (and its environment when new); it comes back with its id."""
        with self.database.transaction() as session:
            environment = ensure_environment(
                session=session,
                repository_id=self.repository_id,
                name=deployment.environment,
                url=self.url,
            )
            row = DeploymentRow(
                environment_id=environment.id,
                pipeline_id=self.pipeline_id,
                job_id=self.job_id,
                kind=deployment.kind,
                image=deployment.image,
                digest=deployment.digest,
                target=deployment.target,
                status=deployment.status,
                user=deployment.user,
                approved_by=self.approved_by,
                rollback_of=deployment.rollback_of,
                message=deployment.message[:2000],
                spec=_jsonable(deployment.spec),
            )
            session.add(row)
            session.flush()
            return _as_deployment(row, deployment.environment)

    def history(self, environment: str) -> list[Deployment]:
        """The environment's deployments, oldest first."""
        with self.database.transaction() as session:
            env = session.scalars(
                select(Environment).where(
                    Environment.repository_id == self.repository_id,
                    Environment.name == environment,
                )
            ).one_or_none()
            if env is None:
                return []
            rows = session.scalars(
                select(DeploymentRow)
                .where(DeploymentRow.environment_id == env.id)
                .order_by(DeploymentRow.id)
            )
            return [_as_deployment(row, environment) for row in rows]


def _jsonable(spec: Any) -> dict[str, Any]:
    return {str(k): v for k, v in dict(spec or {}).items()}
