"""Repository secrets: encrypted at rest, write-only through the API, protected ones kept to
the default branch and the repository's protected refs."""

from __future__ import annotations

import fnmatch

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from web.db.encryption import SecretCipher
from web.db.models import Pipeline, Repository, Secret
from web.db.schemas import SecretRead
from web.db.session import rowcount
from web.errors import NotFoundError


def set_secret(
    *,
    session: Session,
    cipher: SecretCipher,
    repository_id: int,
    name: str,
    value: str,
    protected: bool = False,
) -> SecretRead:
    """Create or replace a repository secret."""
    if session.get(Repository, repository_id) is None:
        raise NotFoundError(f"repository {repository_id} does not exist")
    row = session.scalars(
        select(Secret).where(Secret.repository_id == repository_id, Secret.name == name)
    ).one_or_none()
    if row is None:
        row = Secret(repository_id=repository_id, name=name)
        session.add(row)
    row.value = cipher.encrypt(value)
    row.protected = protected
    session.flush()
    return SecretRead.model_validate(row)


def list_secrets(*, session: Session, repository_id: int) -> list[SecretRead]:
    """A repository's secrets by name (names and flags only)."""
    rows = session.scalars(
        select(Secret).where(Secret.repository_id == repository_id).order_by(Secret.name)
    )
    return [SecretRead.model_validate(r) for r in rows]


def delete_secret(*, session: Session, repository_id: int, name: str) -> bool:
    """Delete a secret; False when the repository has none of that name."""
    return bool(
        rowcount(
            session.execute(
                delete(Secret).where(Secret.repository_id == repository_id, Secret.name == name)
            )
        )
    )


# Pipelines from these sources run code anyone with a fork may have written: never protected.
UNTRUSTED_SOURCES = frozenset({"merge_request_event", "external_pull_request_event"})


def is_protected_ref(
    *, default_branch: str, protected_refs: list[str], ref: str, tag: bool
) -> bool:
    """Whether a branch (or tag, when `tag`) receives protected secrets.

    The default branch is protected; `protected_refs` holds fnmatch patterns over full ref names
    (`refs/heads/release/*`, `refs/tags/v*`), so a tag never passes for a branch of its name.
    """
    full = f"refs/tags/{ref}" if tag else f"refs/heads/{ref}"
    if not tag and ref == default_branch:
        return True
    return any(fnmatch.fnmatchcase(full, pattern) for pattern in protected_refs)


def secrets_for_pipeline(
    *, session: Session, cipher: SecretCipher, pipeline_id: int
) -> dict[str, str]:
    """The decrypted secrets a pipeline's jobs receive.

    Protected secrets go only to pipelines of a protected ref from a trusted source (a push, a
    tag, the API): a merge request's code comes from its author, whoever that is.
    """
    pipeline = session.get(Pipeline, pipeline_id)
    if pipeline is None:
        raise NotFoundError(f"pipeline {pipeline_id} does not exist")
    repository = session.get(Repository, pipeline.repository_id)
    if repository is None:
        raise NotFoundError(f"repository {pipeline.repository_id} does not exist")
    protected = pipeline.source not in UNTRUSTED_SOURCES and is_protected_ref(
        default_branch=repository.default_branch,
        protected_refs=list(repository.protected_refs),
        ref=pipeline.ref,
        tag=pipeline.tag,
    )
    query = select(Secret).where(Secret.repository_id == repository.id)
    if not protected:
        query = query.where(Secret.protected.is_(False))
    return {row.name: cipher.decrypt(row.value) for row in session.scalars(query)}
