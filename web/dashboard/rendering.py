"""The dashboard's Jinja environment (autoescaping every value) and the HTML responses it makes,
each with the browser's CSRF cookie and a Content-Security-Policy allowing kapal's own files only.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from web.api.auth import Access
from web.dashboard import display
from web.dashboard.signin import (
    CSRF_FIELD,
    csrf_value,
    forget_notice,
    notice_of,
    set_csrf_cookie,
)

TEMPLATES = Path(__file__).parent / "templates"
# Scripts and styles come from kapal only; no inline script or style attribute is needed, so a
# line of a log or a commit message that slipped past escaping still could not run.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
    "form-action 'self'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(("html", "svg"), default=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        duration=display.duration,
        iso=display.iso,
        first_line=display.first_line,
        status_word=display.status_word,
        size=display.size,
        source_word=display.source_word,
        web_link=display.web_link,
    )
    env.globals.update(
        STATUSES=display.STATUSES,
        SOURCES=display.SOURCES,
        CSRF_FIELD=CSRF_FIELD,
        seconds_between=display.seconds_between,
        age=display.age,
    )
    return env


ENVIRONMENT = _environment()


def render_fragment(name: str, **context: Any) -> str:
    """A template rendered to a string (rows sent over SSE)."""
    return ENVIRONMENT.get_template(name).render(now=datetime.now(UTC), **context)


def render_macro(template: str, macro: str, *args: Any, **kwargs: Any) -> str:
    """One macro of a template rendered to a string (a table row, a job card)."""
    module = ENVIRONMENT.get_template(template).make_module({"now": datetime.now(UTC)})
    return str(getattr(module, macro)(*args, **kwargs))


def render(
    request: Request,
    name: str,
    *,
    viewer: Access,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    """A page: `name` rendered with the viewer, the CSRF value and `context`."""
    csrf, new = csrf_value(request)
    notice = notice_of(request)
    html = ENVIRONMENT.get_template(name).render(
        request=request,
        viewer=viewer,
        csrf=csrf,
        now=datetime.now(UTC),
        notice=notice,
        **context,
    )
    response = HTMLResponse(html, status_code=status_code, headers=SECURITY_HEADERS)
    response.headers["Cache-Control"] = "no-store"
    if notice:
        forget_notice(response)
    if new:
        set_csrf_cookie(response, request, csrf)
    return response
