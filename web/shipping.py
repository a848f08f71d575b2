"""The service's side of shipping: the shipper a worker's job gets, and rollbacks asked of the API.

A deploy job on a worker ships with the repository's view of the image store (its own builds
first), the repository's registry secrets (`CI_REGISTRY_USER`/`CI_REGISTRY_PASSWORD`, only those
its ref may receive), and records each deployment in the database with the pipeline, the job,
and who played it when it was a `when: manual` job (its approval gate). Services run on the
worker's host under `<data_dir>/services` (see `runner.ship.services`).

A rollback through the API runs in the web process, on its host: with the embedded worker of
`kapal serve` that is where the services run. It re-deploys an earlier deployment's exact digest
with the secrets of the pipeline that made that deployment.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping

from runner.errors import RunnerError
from runner.images.store import ImageStore
from runner.ship.deploy import ShipContext, Shipper
from runner.ship.deployments import rollback_target
from runner.ship.push import PushSettings
from runner.ship.settings import services_for
from web.db.environments import DatabaseDeployments, DeploymentRead, get_environment
from web.db.models import Deployment as DeploymentRow
from web.db.secrets import secrets_for_pipeline
from web.errors import ConflictError, NotFoundError
from web.orchestration import Services
from web.settings import Settings


def approver_of(when: str, played_by: str | None) -> str | None:
    """Who approved a deployment: whoever played its manual job (`play_job`)."""
    return (played_by or None) if when == "manual" else None


def push_settings(settings: Settings) -> PushSettings:
    """Insecure registries and the auth file, from the operator's settings."""
    return PushSettings(
        insecure=tuple(settings.insecure_registries), auth_file=settings.registry_auth_file
    )


def job_shipper(
    *,
    services: Services,
    store: ImageStore,
    owner: str,
    repository_id: int,
    pipeline_id: int,
    job_id: int,
    job_name: str,
    user: str,
    approved_by: str | None,
    secrets: Mapping[str, str],
    url: str | None = None,
) -> Shipper:
    """The shipper of one job attempt on a worker."""
    return Shipper(
        store,
        owner=owner,
        services=services_for(services.settings),
        deployments=DatabaseDeployments(
            services.database,
            repository_id,
            pipeline_id=pipeline_id,
            job_id=job_id,
            approved_by=approved_by,
            url=url,
        ),
        push=push_settings(services.settings),
        context=ShipContext(
            user=approved_by or user, pipeline_id=pipeline_id, job=job_name, secrets=secrets
        ),
    )


def rollback_environment(
    *, services: Services, environment_id: int, who: str, to: int | None = None
) -> DeploymentRead:
    """Re-deploy an earlier deployment of the environment (`to`, else the one before the
    current); the new deployment, which names the one it rolls back to.

    NotFoundError for an unknown environment; ConflictError when there is nothing to roll back
    to or the re-deploy fails (with the one-line reason; no success is recorded then).
    """
    with services.database.transaction() as session:
        environment = get_environment(session=session, environment_id=environment_id)
        if environment is None:
            raise NotFoundError(f"environment {environment_id} does not exist")
    records = DatabaseDeployments(
        services.database, environment.repository_id, approved_by=who, url=environment.url
    )
    try:
        target = rollback_target(records.history(environment.name), to)
    except RunnerError as exc:
        raise ConflictError(f"cannot roll {environment.name} back: {exc}") from None
    secrets: dict[str, str] = {}
    if target.pipeline_id is not None:
        with services.database.transaction() as session, contextlib.suppress(NotFoundError):
            secrets = secrets_for_pipeline(
                session=session, cipher=services.cipher(), pipeline_id=target.pipeline_id
            )
    owner = f"repo:{environment.repository_id}"
    shipper = Shipper(
        ImageStore(services.settings.images_dir),
        owner=owner,
        services=services_for(services.settings),
        deployments=records,
        push=push_settings(services.settings),
        context=ShipContext(user=who, secrets=secrets),
    )
    lines: list[str] = []
    try:
        done = shipper.rollback(environment.name, lines.append, to=target.id, values=secrets)
    except RunnerError as exc:
        raise ConflictError(f"cannot roll {environment.name} back: {exc}") from None
    with services.database.transaction() as session:
        row = session.get(DeploymentRow, done.id)
        assert row is not None
        return DeploymentRead.model_validate(row)
