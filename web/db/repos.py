"""Repositories: register, read, list, update, delete; decrypt their credentials on demand."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from web.db.encryption import SecretCipher
from web.db.models import Repository
from web.db.schemas import (
    Provider,
    RepositoryCreate,
    RepositoryCredentials,
    RepositoryRead,
    RepositoryUpdate,
)
from web.errors import ConflictError, NotFoundError


def _read(row: Repository) -> RepositoryRead:
    return RepositoryRead(
        id=row.id,
        name=row.name,
        clone_url=row.clone_url,
        provider=Provider(row.provider),
        default_branch=row.default_branch,
        protected_refs=list(row.protected_refs),
        allow_host_network=row.allow_host_network,
        has_status_token=row.status_token is not None,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _row(session: Session, repository_id: int) -> Repository:
    row = session.get(Repository, repository_id)
    if row is None:
        raise NotFoundError(f"repository {repository_id} does not exist")
    return row


def create_repository(
    *, session: Session, cipher: SecretCipher, new: RepositoryCreate
) -> RepositoryRead:
    """Register a repository; its webhook secret and status token are stored encrypted."""
    row = Repository(
        name=new.name,
        clone_url=new.clone_url,
        provider=new.provider.value,
        default_branch=new.default_branch,
        webhook_secret=cipher.encrypt(new.webhook_secret),
        status_token=None if new.status_token is None else cipher.encrypt(new.status_token),
        protected_refs=list(new.protected_refs),
        allow_host_network=new.allow_host_network,
    )
    session.add(row)
    try:
        session.flush()
    except IntegrityError:  # the caller's transaction is now to be rolled back
        raise ConflictError(
            f"a repository named {new.name!r} already exists; update it or pick another name"
        ) from None
    return _read(row)


def get_repository(*, session: Session, repository_id: int) -> RepositoryRead | None:
    """The repository with this id, or None."""
    row = session.get(Repository, repository_id)
    return None if row is None else _read(row)


def get_repository_by_name(*, session: Session, name: str) -> RepositoryRead | None:
    """The repository with this name (`owner/name`), or None."""
    row = session.scalars(select(Repository).where(Repository.name == name)).one_or_none()
    return None if row is None else _read(row)


def list_repositories(*, session: Session) -> list[RepositoryRead]:
    """Every repository, by name."""
    return [_read(r) for r in session.scalars(select(Repository).order_by(Repository.name))]


def update_repository(
    *, session: Session, cipher: SecretCipher, repository_id: int, changes: RepositoryUpdate
) -> RepositoryRead:
    """Apply the fields of `changes` that are set; raises NotFoundError for an unknown id."""
    row = _row(session, repository_id)
    if changes.clone_url is not None:
        row.clone_url = changes.clone_url
    if changes.default_branch is not None:
        row.default_branch = changes.default_branch
    if changes.webhook_secret is not None:
        row.webhook_secret = cipher.encrypt(changes.webhook_secret)
    if changes.status_token is not None:
        row.status_token = cipher.encrypt(changes.status_token) if changes.status_token else None
    if changes.protected_refs is not None:
        row.protected_refs = list(changes.protected_refs)
    if changes.allow_host_network is not None:
        row.allow_host_network = changes.allow_host_network
    session.flush()
    return _read(row)


def delete_repository(*, session: Session, repository_id: int) -> bool:
    """Delete a repository with its pipelines, jobs, logs and secrets; False when unknown."""
    row = session.get(Repository, repository_id)
    if row is None:
        return False
    session.delete(row)
    session.flush()
    return True


def get_repository_credentials(
    *, session: Session, cipher: SecretCipher, repository_id: int
) -> RepositoryCredentials:
    """The decrypted webhook secret and status token; raises NotFoundError for an unknown id."""
    row = _row(session, repository_id)
    return RepositoryCredentials(
        webhook_secret=cipher.decrypt(row.webhook_secret),
        status_token=None if row.status_token is None else cipher.decrypt(row.status_token),
    )
