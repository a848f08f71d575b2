"""`POST /hooks/github|gitlab|gitea`: a git host's delivery in, a pipeline (or a reason) out.

The checks run in this order, each answering as soon as it fails: the body's size (413, by the
app's body limit, before anything is read into memory), which repository the delivery names
(400 when the body names none, 404 when none registered matches), the signature with that
repository's secret (401), the event and payload (400, 415; 202 `{"ignored": ...}` for an event
that asks for nothing). A verified delivery is recorded once per provider + delivery id: a
redelivery answers 200 with the first one's `{"pipeline_id": N}` and makes nothing new.

A push, tag or merge request is answered 201 `{"pipeline_id": N, "status": "created"}` as soon
as its delivery and pipeline are recorded (on PostgreSQL in one statement): git and the planner
run on a worker (the `plan_pipeline` task; the request is sent after the answer, by the web
process's `web.tasks.PlanSender`, several at once in a burst), which fails the pipeline with the
reason when its file is invalid or the commit cannot be fetched, and marks it `skipped` with the
reason when the commit has no pipeline file or `workflow: rules` create none (the delivery
records the same outcome). When no message can be sent to a worker, the web process plans the
pipeline itself; a request lost on the way is sent again by a worker (`web.hooks.lost_plans`).

Served by `HookEndpoint`, a plain ASGI route ahead of the FastAPI route that documents it: the
request path is the body, one thread-pool hop for the database, and the JSON answer.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from sqlalchemy import Row, select
from sqlalchemy.orm import Session
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from web.db.deliveries import finish_delivery, record_delivery_pipeline
from web.db.encryption import SecretCipher
from web.db.models import Repository
from web.db.schemas import DeliveryCreate, Provider
from web.db.session import Database
from web.errors import NotFoundError
from web.hooks import Ignored, RepositoryIdentity, Trigger, identify_repository, parse_delivery
from web.orchestration import (
    Services,
    create_pipeline_from_trigger,
    pipeline_of_trigger,
    start_trigger_pipeline,
)
from web.settings import Settings

router = APIRouter(tags=["webhooks"])

# Never kept with a stored delivery: GitLab's token header is the webhook secret itself.
_SECRET_HEADERS = frozenset({"x-gitlab-token", "authorization", "cookie"})
MAX_KEPT_HEADER = 1024
# The outcome of a delivery kapal failed to turn into a pipeline (a redelivery tries again).
FAILED_PREFIX = "failed: "
IGNORED_PREFIX = "ignored: "


def _find_repository(
    session: Session, provider: Provider, identity: RepositoryIdentity
) -> Row[int, str, str, bytes]:
    """The repository a delivery names: its id, name and (encrypted) secret, in one query."""
    candidates = [
        row
        for row in session.execute(
            select(
                Repository.id, Repository.name, Repository.clone_url, Repository.webhook_secret
            ).where(Repository.provider == provider.value)
        )
        if identity.matches(name=row.name, clone_url=row.clone_url)
    ]
    # the repository registered under the delivery's name first, then one with its clone URL
    candidates.sort(key=lambda r: (r.name.lower() != identity.full_name.lower(), r.name))
    if candidates:
        return candidates[0]
    raise NotFoundError(
        f"no {provider.value} repository registered as {identity.full_name[:200]!r}; "
        "register it first (kapal repo add, or POST /api/v1/repos)"
    )


def _kept_headers(headers: dict[str, str]) -> dict[str, str]:
    return {
        name: value[:MAX_KEPT_HEADER]
        for name, value in headers.items()
        if name.lower() not in _SECRET_HEADERS
    }


# SQLite has one writer: this process's deliveries take turns here, each woken as the one
# before commits, rather than in SQLite's busy wait, which sleeps up to 100 ms between tries
# (measured: 2,000 deliveries from 16 connections, p99 1.2 s without, 0.15 s with)
_SQLITE_WRITER = threading.Lock()


@contextmanager
def _recording(database: Database) -> Iterator[Session]:
    """Where a delivery is recorded: on PostgreSQL statements committed one by one (the delivery
    and its pipeline are one statement; no BEGIN and COMMIT round trips), elsewhere (SQLite,
    whose three statements make them) one transaction, one of this process's at a time."""
    if database.dialect != "postgresql":
        with _SQLITE_WRITER, database.transaction() as session:
            yield session
        return
    with (
        database.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection,
        Session(bind=connection) as session,
    ):
        yield session


def _deliver(
    *,
    settings: Settings,
    database: Database,
    services: Services,
    provider: Provider,
    headers: dict[str, str],
    body: bytes,
) -> tuple[int, dict[str, Any]]:
    """Everything after the body is read (blocking: database, git): the status and JSON."""
    identity = identify_repository(provider.value, headers, body)
    cipher = SecretCipher(settings.encryption_key())
    # one connection from the repository's secret to the delivery and its pipeline (on
    # PostgreSQL two statements: the repository, then the delivery with its pipeline; on
    # SQLite one transaction): a refused delivery (a bad signature...) writes nothing
    with _recording(database) as session:
        repository = _find_repository(session, provider, identity)
        secret = cipher.decrypt(repository.webhook_secret)
        outcome = parse_delivery(provider.value, headers, body, secret=secret)
        delivery = DeliveryCreate(
            provider=provider,
            delivery_id=outcome.delivery_id[:255],
            event=outcome.event[:255],
            payload=body,
            headers=_kept_headers(headers),
            repository_id=repository.id,
        )
        recorded, made = record_delivery_pipeline(
            session=session,
            delivery=delivery,
            pipeline=pipeline_of_trigger(repository.id, outcome)
            if isinstance(outcome, Trigger)
            else None,
            outcome="pipeline" if isinstance(outcome, Trigger) else IGNORED_PREFIX + outcome.reason,
        )
    row_id = recorded.id
    if not recorded.created:
        if recorded.pipeline_id is not None:
            return 200, {"pipeline_id": recorded.pipeline_id, "redelivery": True}
        if recorded.outcome.startswith(IGNORED_PREFIX):
            return 202, {"ignored": recorded.outcome.removeprefix(IGNORED_PREFIX)}
        if not recorded.outcome.startswith(FAILED_PREFIX):
            return 200, {"pipeline_id": None, "redelivery": True, "note": "still being processed"}
    if isinstance(outcome, Ignored):
        return 202, outcome.body()
    try:
        if made is None:  # the first delivery failed on kapal's side: try again
            started = create_pipeline_from_trigger(
                services=services,
                repository_id=repository.id,
                trigger=outcome,
                delivery_row_id=row_id,
                plan_now=False,
            )
        else:
            started = start_trigger_pipeline(
                services=services,
                pipeline=made,
                trigger=outcome,
                delivery_row_id=row_id,
                plan_now=False,
            )
    except BaseException as exc:
        # leave the delivery redeliverable: the host's retry (or a person's) runs it again
        with database.transaction() as session:
            finish_delivery(session=session, id=row_id, outcome=f"{FAILED_PREFIX}{exc}"[:2000])
        raise
    if started.pipeline is None:
        return 202, {"ignored": started.ignored or "no pipeline"}
    return 201, {"pipeline_id": started.pipeline.id, "status": started.pipeline.status}


class HookEndpoint:
    """The plain ASGI endpoint of `POST /hooks/<provider>`, ahead of FastAPI's route of the
    same path (which describes it in OpenAPI and answers the same way, through `answer`): no
    dependency solving, no request object; what it raises goes to the app's error handlers."""

    def __init__(self, provider: Provider) -> None:
        self.provider = provider

    async def answer(self, state: Any, headers: dict[str, str], body: bytes) -> JSONResponse:
        """The response to one delivery (the database and git run in the thread pool)."""
        status, answer = await run_in_threadpool(
            _deliver,
            settings=state.settings,
            database=state.database,
            services=state.services,
            provider=self.provider,
            headers=headers,
            body=body,
        )
        return JSONResponse(answer, status_code=status)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Read the body (the app's body limit has already refused an oversized one: 413)
        and answer."""
        body = await Request(scope, receive).body()
        headers = {
            name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]
        }
        response = await self.answer(scope["app"].state, headers, body)
        await response(scope, receive, send)


def _route(provider: Provider) -> None:
    endpoint = HookEndpoint(provider)
    router.routes.append(
        Route(f"/hooks/{provider.value}", endpoint, methods=["POST"], include_in_schema=False)
    )

    async def receive(request: Request) -> JSONResponse:
        return await endpoint.answer(
            request.app.state, dict(request.headers.items()), await request.body()
        )

    receive.__name__ = f"receive_{provider.value}_webhook"
    receive.__doc__ = f"Take a {provider.value} webhook delivery (push, tag, merge request, ping)."
    router.add_api_route(
        f"/hooks/{provider.value}",
        receive,
        methods=["POST"],
        status_code=201,
        summary=f"{provider.value} webhook",
        responses={
            200: {"description": "a redelivery: the pipeline the first delivery made"},
            201: {"description": "the pipeline recorded (`created`); a worker plans it"},
            202: {"description": 'an event that asks for no pipeline: `{"ignored": reason}`'},
            400: {"description": "malformed payload or headers, with the reason"},
            401: {"description": "bad or missing signature"},
            404: {"description": "no repository registered for the delivery"},
            413: {"description": "body over the webhook body limit"},
            415: {"description": "a content type other than JSON or form `payload=`"},
        },
    )


for _provider in Provider:
    _route(_provider)
