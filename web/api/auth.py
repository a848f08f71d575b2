"""Who a request is: its bearer token, what that token may do, and the admin token.

Writes always need a token; reads need one only when `Settings.public_reads` is false. The token
`KAPAL_ADMIN_TOKEN` names is compared in constant time and never stored; without it, `kapal serve`
makes an `admin` token on its first start (`ensure_admin_token`) and prints it that once.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.orm import Session

from web.db.schemas import Scope, TokenRead
from web.db.session import Database
from web.db.tokens import create_token, get_token_by_name, verify_token
from web.errors import AuthenticationError, PermissionDeniedError
from web.settings import Settings

ADMIN_TOKEN_NAME = "admin"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _settings_admin(settings: Settings) -> TokenRead:
    return TokenRead(
        id=0,
        name="KAPAL_ADMIN_TOKEN",
        prefix="",
        scopes=[Scope.ADMIN],
        repository_id=None,
        created_at=_EPOCH,
        expires_at=None,
        revoked_at=None,
    )


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer TOKEN` header; None without one.

    Raises AuthenticationError for a header of another scheme or an empty token.
    """
    if authorization is None or not authorization.strip():
        return None
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise AuthenticationError(
            "the Authorization header must be `Bearer TOKEN` (a kapal API token)"
        )
    return value.strip()


def authenticate(*, session: Session, settings: Settings, plaintext: str) -> TokenRead:
    """The token `plaintext` is; AuthenticationError when it is unknown, revoked or expired."""
    if settings.admin_token is not None:
        admin = settings.admin_token.get_secret_value()
        if admin and hmac.compare_digest(
            admin.encode("utf-8", "surrogatepass"), plaintext.encode("utf-8", "surrogatepass")
        ):
            return _settings_admin(settings)
    token = verify_token(session=session, plaintext=plaintext)
    if token is None:
        raise AuthenticationError(
            "the API token is unknown, revoked or expired; ask an admin for a new one "
            "(kapal token create NAME)"
        )
    return token


@dataclass(frozen=True)
class Access:
    """The token a request carries (None: anonymous) and the settings that say what reads need."""

    token: TokenRead | None
    public_reads: bool

    def need(self, scope: Scope, repository_id: int | None = None) -> TokenRead | None:
        """Check the request may do what `scope` covers (on `repository_id`, when given).

        Raises AuthenticationError (401) without a token, PermissionDeniedError (403) for a
        token lacking the scope or limited to another repository.
        """
        if scope is Scope.READ and self.public_reads:
            return self.token  # a token never gives less than no token
        if self.token is None:
            what = "reading" if scope is Scope.READ else "this operation"
            raise AuthenticationError(
                f"{what} needs an API token: send `Authorization: Bearer TOKEN` "
                "(set KAPAL_TOKEN for the kapal CLI)"
            )
        if (
            self.token.repository_id is not None
            and repository_id is None
            and (scope is Scope.ADMIN)
        ):
            raise PermissionDeniedError(
                f"token {self.token.name!r} is limited to one repository; this needs an admin token"
            )
        if not self.token.allows(scope, repository_id):
            scopes = ", ".join(s.value for s in self.token.scopes) or "none"
            where = f" on repository {repository_id}" if repository_id is not None else ""
            raise PermissionDeniedError(
                f"token {self.token.name!r} (scopes: {scopes}) may not do this: it needs the "
                f"{scope.value!r} scope{where}"
            )
        return self.token


def ensure_admin_token(*, database: Database, settings: Settings) -> str | None:
    """Make the `admin` token unless KAPAL_ADMIN_TOKEN is set or it exists; return its
    plaintext when made now (to print once), else None."""
    if settings.admin_token is not None:
        return None
    with database.transaction() as session:
        if get_token_by_name(session=session, name=ADMIN_TOKEN_NAME) is not None:
            return None
        return create_token(session=session, name=ADMIN_TOKEN_NAME, scopes=[Scope.ADMIN]).plaintext
