"""Who looks at the dashboard: the API token kept in an HttpOnly, SameSite=Strict cookie, and the
CSRF token every form posts back.

A person signs in by pasting an API token into a form; the token is checked like an
`Authorization: Bearer` header and kept in the `kapal_token` cookie, which scripts cannot read
and other sites cannot send. Every form also carries the value of the `kapal_csrf` cookie (a
random value set with the first page), compared in constant time before any POST does anything
(double-submit), and a POST whose `Origin` names another site is refused as well.
"""

from __future__ import annotations

import hmac
import secrets
from urllib.parse import parse_qs, quote, unquote, urlsplit

from fastapi import Request, Response

from web.api.auth import Access, authenticate
from web.db.session import Database
from web.errors import AuthenticationError, PermissionDeniedError
from web.settings import Settings

TOKEN_COOKIE = "kapal_token"
CSRF_COOKIE = "kapal_csrf"
CSRF_FIELD = "csrf"
# why an action was refused, shown once on the page it returns to (a cookie, not the URL: a
# link made elsewhere cannot put words on a kapal page)
NOTICE_COOKIE = "kapal_notice"
NOTICE_MAX = 300
NOTICE_MAX_AGE = 60
TOKEN_MAX_AGE = 14 * 24 * 3600
MAX_FORM_BYTES = 16 * 1024


def viewer(request: Request, database: Database, settings: Settings) -> Access:
    """The access of the person behind `request`: their signed-in token, or anonymous.

    A cookie holding a token that is unknown, revoked or expired counts as signed out.
    """
    plaintext = request.cookies.get(TOKEN_COOKIE)
    if not plaintext:
        return Access(token=None, public_reads=settings.public_reads)
    try:
        with database.transaction() as session:
            token = authenticate(session=session, settings=settings, plaintext=plaintext)
    except AuthenticationError:
        return Access(token=None, public_reads=settings.public_reads)
    return Access(token=token, public_reads=settings.public_reads)


def csrf_value(request: Request) -> tuple[str, bool]:
    """The CSRF value of this browser, and whether it is new (to be set as a cookie)."""
    current = request.cookies.get(CSRF_COOKIE, "")
    if (
        len(current) >= 32
        and current.isascii()
        and current.replace("-", "").replace("_", "").isalnum()
    ):
        return current, False
    return secrets.token_urlsafe(32), True


def _keep(
    response: Response, request: Request, name: str, value: str, max_age: int | None = None
) -> None:
    """Set a cookie scripts cannot read and other sites cannot make the browser send."""
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )


def set_csrf_cookie(response: Response, request: Request, value: str) -> None:
    """Keep `value` as this browser's CSRF value."""
    _keep(response, request, CSRF_COOKIE, value)


def set_token_cookie(response: Response, request: Request, plaintext: str) -> None:
    """Keep a signed-in token (HttpOnly, SameSite=Strict, Secure over HTTPS)."""
    _keep(response, request, TOKEN_COOKIE, plaintext, TOKEN_MAX_AGE)


def set_notice_cookie(response: Response, request: Request, notice: str) -> None:
    """Show `notice` once, on the next page this browser opens."""
    _keep(response, request, NOTICE_COOKIE, quote(notice[:NOTICE_MAX]), NOTICE_MAX_AGE)


def notice_of(request: Request) -> str:
    """The notice waiting for this browser, or empty (`forget_notice` once it is shown)."""
    value = request.cookies.get(NOTICE_COOKIE)
    return "" if value is None else unquote(value)[:NOTICE_MAX]


def forget_notice(response: Response) -> None:
    """Forget the notice shown by this response."""
    response.delete_cookie(NOTICE_COOKIE, path="/", httponly=True, samesite="strict")


def clear_token_cookie(response: Response) -> None:
    """Sign out: forget the token cookie."""
    response.delete_cookie(TOKEN_COOKIE, path="/", httponly=True, samesite="strict")


async def read_form(request: Request) -> dict[str, str]:
    """The fields of a posted urlencoded form (the first value of each), checked for CSRF.

    Raises PermissionDeniedError (403) for a form without this browser's CSRF value, or one
    posted from another site; AuthenticationError never (the caller checks sign-in).
    """
    origin = request.headers.get("origin")
    if origin and origin != "null":
        parts = urlsplit(origin)
        if parts.netloc != request.headers.get("host", ""):
            raise PermissionDeniedError(
                f"a form posted from {origin[:100]} is refused: post it from this dashboard"
            )
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise PermissionDeniedError("the form is larger than any dashboard form")
    fields = {
        name: values[0]
        for name, values in parse_qs(
            body.decode("utf-8", "replace"), keep_blank_values=True
        ).items()
    }
    expected = request.cookies.get(CSRF_COOKIE, "")
    sent = fields.get(CSRF_FIELD, "")
    if not expected or not hmac.compare_digest(expected.encode(), sent.encode()):
        raise PermissionDeniedError(
            "the form's CSRF token does not match this browser's; reload the page and try again"
        )
    return fields


def local_path(target: str | None, default: str = "/") -> str:
    """`target` when it is a path on this site (`/...`, not `//host`), else `default`."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return default
    if any(ord(c) < 0x20 for c in target):
        return default
    return target
