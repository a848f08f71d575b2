"""Signing in with an API token (kept in an HttpOnly, SameSite=Strict cookie) and out."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse, Response

from web.api.auth import Access, authenticate
from web.dashboard.pages import database_of, error_page, settings_of, viewer_of
from web.dashboard.rendering import render
from web.dashboard.signin import clear_token_cookie, local_path, read_form, set_token_cookie
from web.errors import AuthenticationError, WebError

router = APIRouter(include_in_schema=False)


@router.get("/signin")
def signin_page(request: Request, next: Annotated[str, Query(max_length=2000)] = "/") -> Response:
    """The sign-in form: paste an API token."""
    return render(request, "signin.html", viewer=viewer_of(request), next=local_path(next))


@router.post("/signin")
async def signin(request: Request) -> Response:
    """Check the pasted token and keep it in an HttpOnly cookie; back to where the person was."""
    nobody = Access(token=None, public_reads=settings_of(request).public_reads)
    try:
        form = await read_form(request)
    except WebError as exc:
        return error_page(request, nobody, exc)
    target = local_path(form.get("next"))
    plaintext = form.get("token", "").strip()

    def check() -> None:
        with database_of(request).transaction() as session:
            authenticate(session=session, settings=settings_of(request), plaintext=plaintext)

    try:
        if not plaintext:
            raise AuthenticationError("paste an API token to sign in")
        await run_in_threadpool(check)
    except AuthenticationError as exc:
        return render(
            request, "signin.html", viewer=nobody, status_code=401, next=target, error=str(exc)
        )
    response = RedirectResponse(target, status_code=303)
    set_token_cookie(response, request, plaintext)
    return response


@router.post("/signout")
async def signout(request: Request) -> Response:
    """Forget the signed-in token."""
    nobody = Access(token=None, public_reads=settings_of(request).public_reads)
    try:
        await read_form(request)
    except WebError as exc:
        return error_page(request, nobody, exc)
    response = RedirectResponse("/", status_code=303)
    clear_token_cookie(response)
    return response
