"""`/api/v1/repos`: register repositories, list and update them, and set their secrets.

Registering, changing and deleting a repository and its secrets need an admin token; secret
values are write-only (listed by name, never returned).
"""

from __future__ import annotations

import re

from fastapi import APIRouter, Response
from pydantic import BaseModel, Field, field_validator

from web.api.deps import AccessDep, AdminDep, CipherDep, RowId, SessionDep, SettingsDep
from web.db import repos, secrets
from web.db.schemas import (
    Provider,
    RepositoryCreate,
    RepositoryRead,
    RepositoryUpdate,
    Scope,
    SecretRead,
)
from web.errors import NotFoundError
from web.settings import Settings

router = APIRouter(prefix="/api/v1/repos", tags=["repositories"])

SECRET_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,254}")


class RepositoryIn(BaseModel):
    """A repository to register (`secret` is the webhook secret shared with the git host)."""

    name: str = Field(min_length=1, max_length=255, examples=["acme/shop"])
    clone_url: str = Field(min_length=1, max_length=2048)
    provider: Provider
    secret: str = Field(min_length=1, max_length=1024)
    default_branch: str = Field(default="main", min_length=1, max_length=255)
    status_token: str | None = Field(default=None, max_length=4096)
    protected_refs: list[str] = Field(default_factory=list)
    allow_host_network: bool = False


class RepositoryChanges(BaseModel):
    """Changes to a repository; fields left out stay as they are."""

    clone_url: str | None = Field(default=None, min_length=1, max_length=2048)
    default_branch: str | None = Field(default=None, min_length=1, max_length=255)
    secret: str | None = Field(default=None, min_length=1, max_length=1024)
    status_token: str | None = Field(default=None, max_length=4096)
    protected_refs: list[str] | None = None
    allow_host_network: bool | None = None


class RepositoryOut(RepositoryRead):
    """A repository as the API shows it: with the URL its git host delivers webhooks to."""

    webhook_url: str


class SecretIn(BaseModel):
    """A secret's value (write-only) and whether only protected refs receive it."""

    value: str = Field(max_length=65536)
    protected: bool = False


class SecretName(BaseModel):
    """Checks a secret's name is a variable name."""

    name: str

    @field_validator("name")
    @classmethod
    def _variable_name(cls, value: str) -> str:
        if not SECRET_NAME.fullmatch(value):
            raise ValueError("a secret's name is a variable name: letters, digits and _")
        return value


def webhook_url(settings: Settings, provider: Provider) -> str:
    """Where a git host sends a repository's deliveries."""
    return f"{settings.server_url}/hooks/{provider.value}"


def _out(settings: Settings, repository: RepositoryRead) -> RepositoryOut:
    return RepositoryOut(
        **repository.model_dump(), webhook_url=webhook_url(settings, repository.provider)
    )


def _existing(session: SessionDep, repository_id: int) -> RepositoryRead:
    found = repos.get_repository(session=session, repository_id=repository_id)
    if found is None:
        raise NotFoundError(f"repository {repository_id} does not exist")
    return found


@router.post("", status_code=201)
def create_repository(
    body: RepositoryIn,
    session: SessionDep,
    cipher: CipherDep,
    settings: SettingsDep,
    access: AdminDep,
) -> RepositoryOut:
    """Register a repository; answers its id and the webhook URL to give the git host."""
    access.need(Scope.ADMIN)
    created = repos.create_repository(
        session=session,
        cipher=cipher,
        new=RepositoryCreate(
            name=body.name,
            clone_url=body.clone_url,
            provider=body.provider,
            webhook_secret=body.secret,
            default_branch=body.default_branch,
            status_token=body.status_token,
            protected_refs=body.protected_refs,
            allow_host_network=body.allow_host_network,
        ),
    )
    return _out(settings, created)


@router.get("")
def list_repositories(
    session: SessionDep, settings: SettingsDep, access: AccessDep, name: str | None = None
) -> list[RepositoryOut]:
    """Every repository by name (only the one named `name`, when given)."""
    access.need(Scope.READ)
    if name is not None:
        found = repos.get_repository_by_name(session=session, name=name)
        return [] if found is None else [_out(settings, found)]
    return [_out(settings, r) for r in repos.list_repositories(session=session)]


@router.get("/{repository_id}")
def get_repository(
    repository_id: RowId, session: SessionDep, settings: SettingsDep, access: AccessDep
) -> RepositoryOut:
    """One repository."""
    access.need(Scope.READ, repository_id)
    return _out(settings, _existing(session, repository_id))


@router.patch("/{repository_id}")
def update_repository(
    repository_id: RowId,
    body: RepositoryChanges,
    session: SessionDep,
    cipher: CipherDep,
    settings: SettingsDep,
    access: AdminDep,
) -> RepositoryOut:
    """Change a repository's clone URL, default branch, webhook secret or policies."""
    access.need(Scope.ADMIN)
    changes = RepositoryUpdate(
        clone_url=body.clone_url,
        default_branch=body.default_branch,
        webhook_secret=body.secret,
        status_token=body.status_token,
        protected_refs=body.protected_refs,
        allow_host_network=body.allow_host_network,
    )
    updated = repos.update_repository(
        session=session, cipher=cipher, repository_id=repository_id, changes=changes
    )
    return _out(settings, updated)


@router.delete("/{repository_id}", status_code=204)
def delete_repository(repository_id: RowId, session: SessionDep, access: AccessDep) -> Response:
    """Delete a repository with its pipelines, jobs, logs and secrets."""
    access.need(Scope.ADMIN)
    if not repos.delete_repository(session=session, repository_id=repository_id):
        raise NotFoundError(f"repository {repository_id} does not exist")
    return Response(status_code=204)


@router.get("/{repository_id}/secrets")
def list_secrets(repository_id: RowId, session: SessionDep, access: AccessDep) -> list[SecretRead]:
    """A repository's secrets: names and flags, never values."""
    access.need(Scope.ADMIN)
    _existing(session, repository_id)
    return secrets.list_secrets(session=session, repository_id=repository_id)


@router.put("/{repository_id}/secrets/{name}")
def set_secret(
    repository_id: RowId,
    name: str,
    body: SecretIn,
    session: SessionDep,
    cipher: CipherDep,
    access: AdminDep,
) -> SecretRead:
    """Create or replace a secret (its value is stored encrypted and never shown again)."""
    access.need(Scope.ADMIN)
    SecretName(name=name)
    return secrets.set_secret(
        session=session,
        cipher=cipher,
        repository_id=repository_id,
        name=name,
        value=body.value,
        protected=body.protected,
    )


@router.delete("/{repository_id}/secrets/{name}", status_code=204)
def delete_secret(
    repository_id: RowId, name: str, session: SessionDep, access: AccessDep
) -> Response:
    """Delete a secret."""
    access.need(Scope.ADMIN)
    if not secrets.delete_secret(session=session, repository_id=repository_id, name=name):
        raise NotFoundError(f"repository {repository_id} has no secret named {name!r}")
    return Response(status_code=204)
