"""`/api/v1/tokens`: make, list and revoke API tokens (admin only); and `kapal token create`."""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter, Response
from pydantic import BaseModel, Field

from web.api.deps import MAX_ROW_ID, AccessDep, AdminDep, RowId, SessionDep
from web.db.models import utcnow
from web.db.repos import get_repository
from web.db.schemas import Scope, TokenRead
from web.db.tokens import create_token, list_tokens, revoke_token
from web.errors import NotFoundError

router = APIRouter(prefix="/api/v1/tokens", tags=["tokens"])


class TokenIn(BaseModel):
    """A token to make: its name, scopes, optionally one repository and a lifetime."""

    name: str = Field(min_length=1, max_length=255)
    scopes: list[Scope] = Field(default_factory=lambda: [Scope.WRITE], min_length=1)
    repository_id: int | None = Field(default=None, ge=1, le=MAX_ROW_ID)
    expires_in_days: int | None = Field(default=None, ge=1, le=3650)


class TokenOut(BaseModel):
    """A new token: `token` is its plaintext, shown this once."""

    token: str
    description: TokenRead


@router.post("", status_code=201)
def make_token(body: TokenIn, session: SessionDep, access: AdminDep) -> TokenOut:
    """Make a token; its plaintext is in this answer and nowhere else."""
    if body.repository_id is not None and (
        get_repository(session=session, repository_id=body.repository_id) is None
    ):
        raise NotFoundError(f"repository {body.repository_id} does not exist")
    expires = None if body.expires_in_days is None else utcnow() + timedelta(body.expires_in_days)
    made = create_token(
        session=session,
        name=body.name,
        scopes=body.scopes,
        repository_id=body.repository_id,
        expires_at=expires,
    )
    return TokenOut(token=made.plaintext, description=made.token)


@router.get("")
def tokens(session: SessionDep, access: AccessDep) -> list[TokenRead]:
    """Every token's description (never a token itself)."""
    access.need(Scope.ADMIN)
    return list_tokens(session=session)


@router.delete("/{token_id}", status_code=204)
def revoke(token_id: RowId, session: SessionDep, access: AccessDep) -> Response:
    """Revoke a token."""
    access.need(Scope.ADMIN)
    if not revoke_token(session=session, token_id=token_id):
        raise NotFoundError(f"token {token_id} does not exist or is revoked already")
    return Response(status_code=204)
