"""Repository secrets: encrypted at rest, write-only through the API, protected ones kept to
the default branch and the repository's protected refs."""

from __future__ import annotations

import dataclasses
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from runner.secrets import PipelineAccess, secrets_for
from runner.secrets import Secret as SecretValue
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

    The default branch is protected; `protected_refs` holds patterns over full ref names
    (`refs/heads/release/*`, `refs/tags/v*`; `*` is the only wildcard, as in GitLab), so a tag
    never passes for a branch of its name. The rule itself is `runner.secrets.PipelineAccess`'s,
    the one `kapal run` follows too.
    """
    return _access(
        default_branch=default_branch, protected_refs=protected_refs, ref=ref, tag=tag
    ).protected


def _access(
    *,
    default_branch: str,
    protected_refs: list[str],
    ref: str,
    tag: bool,
    from_fork: bool = False,
) -> PipelineAccess:
    return PipelineAccess(
        ref=ref,
        is_tag=tag,
        default_branch=default_branch,
        protected_branches=tuple(
            p.removeprefix("refs/heads/") for p in protected_refs if p.startswith("refs/heads/")
        ),
        protected_tags=tuple(
            p.removeprefix("refs/tags/") for p in protected_refs if p.startswith("refs/tags/")
        ),
        from_fork=from_fork,
    )


def pipeline_access(*, repository: Any, pipeline: Any) -> PipelineAccess:
    """The access of a pipeline (a row or a schema) of `repository`: its ref, and whether its
    code may come from anyone (a merge request's author, a fork), which is never protected."""
    facts: dict[str, Any] = pipeline.trigger or {}
    access = _access(
        default_branch=repository.default_branch,
        protected_refs=list(repository.protected_refs),
        ref=pipeline.ref,
        tag=pipeline.tag,
        from_fork=bool(facts.get("from_fork")),
    )
    if pipeline.source in UNTRUSTED_SOURCES:
        return dataclasses.replace(access, ref="")  # no ref is protected; the origin stays
    return access


def secrets_for_pipeline(
    *, session: Session, cipher: SecretCipher, pipeline_id: int
) -> dict[str, str]:
    """The decrypted secrets a pipeline's jobs receive (`runner.secrets.secrets_for`).

    Protected secrets go only to pipelines of a protected ref from a trusted source (a push, a
    tag, the API): a merge request's code comes from its author, whoever that is; a fork's
    pipeline gets none at all.
    """
    pipeline = session.get(Pipeline, pipeline_id)
    if pipeline is None:
        raise NotFoundError(f"pipeline {pipeline_id} does not exist")
    repository = session.get(Repository, pipeline.repository_id)
    if repository is None:
        raise NotFoundError(f"repository {pipeline.repository_id} does not exist")
    access = pipeline_access(repository=repository, pipeline=pipeline)
    if access.from_fork:
        return {}
    query = select(Secret).where(Secret.repository_id == repository.id)
    if not access.protected:
        query = query.where(Secret.protected.is_(False))
    stored = {
        row.name: SecretValue(cipher.decrypt(row.value), protected=row.protected)
        for row in session.scalars(query)
    }
    return secrets_for(access, stored)
