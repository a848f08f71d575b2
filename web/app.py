"""The FastAPI application: `create_app(settings)` mounts the webhooks, the REST API, health
and metrics, with a body-size limit and error answers a person can act on.

Lifecycle: `create_app` makes nothing that holds a resource; the app's lifespan opens the
database (and, unless `services` is given, a Celery app to send jobs through) and disposes of
them at shutdown. Whatever a client sends is answered with a 4xx and `{"error": "..."}`; a
database that cannot be reached is a 503 saying to retry (the engine reconnects by itself once
it is back); a 500 means kapal itself failed, and its body says no more than that (the traceback
is logged).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from starlette.exceptions import HTTPException

from web.api import environments, health, hooks, jobs, pipelines, repos, tokens
from web.dashboard import routes as dashboard
from web.db.session import Database
from web.errors import PayloadTooLargeError, WebError
from web.orchestration import Services
from web.settings import Settings

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

HOOKS_PREFIX = "/hooks/"
BODYLESS_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "DELETE"})
DATABASE_DOWN = (
    "kapal cannot reach its database right now; retry in a few seconds (a webhook: redeliver "
    "it from the git host); if this lasts, check that the database is up and KAPAL_DATABASE_URL"
)


class BodyLimit:
    """ASGI middleware: read a request's whole body, refusing it with 413 past the limit
    (webhooks: `webhook_body_limit`, the API: `api_body_limit`) before any handler parses it.

    A Content-Length over the limit is refused without reading a byte; a body sent without one
    is refused as soon as what arrived passes the limit.
    """

    def __init__(self, app: ASGIApp, *, webhook_limit: int, api_limit: int) -> None:
        self.app = app
        self.webhook_limit = webhook_limit
        self.api_limit = api_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in BODYLESS_METHODS:
            await self.app(scope, receive, send)
            return
        hook = str(scope["path"]).startswith(HOOKS_PREFIX)
        limit = self.webhook_limit if hook else self.api_limit
        what = "webhook body" if hook else "request body"
        length = _content_length(scope)
        if length is not None and length > limit:
            await _too_large(send, what, length, limit, hook)
            return
        body = bytearray()
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = bool(message.get("more_body", False))
            if len(body) > limit:
                await _too_large(send, what, len(body), limit, hook)
                return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name.lower() == b"content-length":
            text = value.decode("latin-1").strip()
            return int(text) if text.isascii() and text.isdigit() else None
    return None


async def _too_large(send: Send, what: str, size: int, limit: int, hook: bool) -> None:
    if hook:
        message = str(
            PayloadTooLargeError(
                f"the webhook body is {size} bytes or more, over the limit of {limit} bytes; "
                "deliver fewer commits per push or raise KAPAL_WEBHOOK_BODY_LIMIT"
            )
        )
    else:
        message = (
            f"the {what} is {size} bytes or more, over the limit of {limit} bytes "
            "(KAPAL_API_BODY_LIMIT)"
        )
    response = JSONResponse({"error": message}, status_code=413, headers={"Connection": "close"})
    await response({"type": "http"}, _no_receive, send)


async def _no_receive() -> Message:
    return {"type": "http.disconnect"}


def _location(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc if p not in ("body",)]
    return ".".join(parts) or "body"


def _validation_message(errors: list[Any]) -> str:
    shown = []
    for error in errors[:5]:
        where = _location(error.get("loc", ()))
        shown.append(f"{where}: {error.get('msg', 'invalid')}")
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return "invalid request: " + "; ".join(shown) + more


def _connection_lost(exc: DBAPIError) -> bool:
    """Whether `exc` means the database cannot be reached (down, restarting, connection cut),
    rather than a statement kapal got wrong."""
    return exc.connection_invalidated or isinstance(exc, OperationalError | InterfaceError)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        log.exception("%s %s failed", request.method, request.url.path)
        return JSONResponse(
            {"error": "kapal failed to handle this request; the server log has the details"},
            status_code=500,
        )

    @app.exception_handler(WebError)
    async def web_error(_request: Request, exc: WebError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return JSONResponse(exc.body(), status_code=exc.status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"error": _validation_message(list(exc.errors()))}, status_code=422)

    @app.exception_handler(ValidationError)
    async def invalid_value(_request: Request, exc: ValidationError) -> JSONResponse:
        return JSONResponse({"error": _validation_message(list(exc.errors()))}, status_code=422)

    @app.exception_handler(HTTPException)
    async def http_error(_request: Request, exc: HTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 404 and detail == "Not Found":
            detail = "no such route; the API is described at /openapi.json"
        elif exc.status_code == 405:
            detail = "this route does not take that method; see /openapi.json"
        return JSONResponse(
            {"error": detail}, status_code=exc.status_code, headers=getattr(exc, "headers", None)
        )

    @app.exception_handler(DBAPIError)
    async def database_error(request: Request, exc: DBAPIError) -> JSONResponse:
        if not _connection_lost(exc):
            return await internal_error(request, exc)
        log.error("%s %s: the database is unavailable: %s", request.method, request.url.path, exc)
        return JSONResponse({"error": DATABASE_DOWN}, status_code=503, headers={"Retry-After": "5"})


def _default_services(settings: Settings, database: Database) -> Services:
    from web.tasks import create_celery  # Celery only where jobs are sent through it

    return create_celery(settings, database=database).services


def create_app(settings: Settings, *, services: Services | None = None) -> FastAPI:
    """The kapal web application for `settings`.

    `services` (the service layer, with its database and dispatcher) is made at start-up when
    not given: a `Database` of `settings.database_url` and a Celery app sending jobs to workers.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        made = services is None
        current = services or _default_services(settings, Database(settings.database_url))
        app.state.settings = settings
        app.state.services = current
        app.state.database = current.database
        try:
            yield
        finally:
            if made:
                current.database.dispose()

    app = FastAPI(
        title="kapal",
        summary="CI/CD pipelines on containers: webhooks in, pipelines, jobs and logs out.",
        version="1",
        lifespan=lifespan,
        openapi_url="/openapi.json",
    )
    _install_error_handlers(app)
    for router in (
        hooks.router,
        health.router,
        repos.router,
        pipelines.router,
        jobs.router,
        tokens.router,
        environments.router,
        dashboard.router,
    ):
        app.include_router(router)
    app.mount(dashboard.STATIC_PATH, dashboard.static_files, name="dashboard-static")
    app.add_middleware(
        BodyLimit,
        webhook_limit=settings.webhook_body_limit,
        api_limit=settings.api_body_limit,
    )
    return app
