"""API tokens: created once in plaintext, stored as a SHA-256 hash, verified in constant time."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Collection
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from web.db.models import ApiToken, utcnow
from web.db.schemas import Scope, TokenCreated, TokenRead
from web.db.session import rowcount
from web.errors import ConflictError

TOKEN_PREFIX = "kapal_"


def hash_token(plaintext: str) -> str:
    """The stored form of a token: hex SHA-256 (tokens are 256 random bits; no salt needed)."""
    return hashlib.sha256(plaintext.encode("utf-8", "surrogatepass")).hexdigest()


def create_token(
    *,
    session: Session,
    name: str,
    scopes: Collection[Scope],
    repository_id: int | None = None,
    expires_at: datetime | None = None,
) -> TokenCreated:
    """Make a token; its plaintext is in the result and nowhere else, ever."""
    plaintext = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(
        name=name,
        token_hash=hash_token(plaintext),
        prefix=plaintext[: len(TOKEN_PREFIX) + 4],
        scopes=sorted(Scope(s).value for s in scopes),
        repository_id=repository_id,
        expires_at=expires_at,
    )
    session.add(row)
    try:
        session.flush()
    except IntegrityError:  # the caller's transaction is now to be rolled back
        raise ConflictError(
            f"a token named {name!r} already exists; revoke it or pick another name"
        ) from None
    return TokenCreated(plaintext=plaintext, token=TokenRead.model_validate(row))


def verify_token(*, session: Session, plaintext: str) -> TokenRead | None:
    """The live token whose plaintext this is, or None (unknown, revoked or expired).

    The lookup is by hash, so its timing says nothing about the plaintext; the final comparison
    is `hmac.compare_digest`.
    """
    digest = hash_token(plaintext)
    row = session.scalars(select(ApiToken).where(ApiToken.token_hash == digest)).one_or_none()
    if row is None or not hmac.compare_digest(row.token_hash, digest):
        return None
    if row.revoked_at is not None:
        return None
    if row.expires_at is not None and row.expires_at <= utcnow():
        return None
    return TokenRead.model_validate(row)


def list_tokens(*, session: Session) -> list[TokenRead]:
    """Every token (revoked ones too), oldest first."""
    return [
        TokenRead.model_validate(r) for r in session.scalars(select(ApiToken).order_by(ApiToken.id))
    ]


def get_token_by_name(*, session: Session, name: str) -> TokenRead | None:
    """The token with this name, or None."""
    row = session.scalars(select(ApiToken).where(ApiToken.name == name)).one_or_none()
    return None if row is None else TokenRead.model_validate(row)


def revoke_token(*, session: Session, token_id: int) -> bool:
    """Revoke a token; False when it does not exist or was revoked already."""
    return bool(
        rowcount(
            session.execute(
                update(ApiToken)
                .where(ApiToken.id == token_id, ApiToken.revoked_at.is_(None))
                .values(revoked_at=utcnow())
            )
        )
    )
