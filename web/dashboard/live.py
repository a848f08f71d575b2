"""What the dashboard's pages follow live: changed pipeline rows, and a pipeline's changes.

`GET /dashboard/events` is a server-sent event stream. Each second the server runs the query the
page ran (one indexed page of pipelines, or one pipeline's job statuses) and sends only what
changed since the last look: a `row` event with the row's HTML (rendered by the same template
as the page, so every value is escaped the same way) and an `order` event with the ids the page
should now hold; for a pipeline page, a `changed` event telling it to fetch itself again.
Lists showing the same page share one read per poll (`SharedPages`), so a hundred people
watching the newest pipelines cost the database one indexed query a second.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import anyio
from fastapi import Request
from sqlalchemy import select

from web.dashboard.rendering import render_macro
from web.dashboard.stages import StageSummary, stage_summaries
from web.db.models import Job, Pipeline
from web.db.pipelines import list_pipelines
from web.db.repos import list_repositories
from web.db.schemas import PipelineRead
from web.db.session import Database

POLL_SECONDS = 1.0
PAGE_SIZE = 50


@dataclass(frozen=True)
class ListQuery:
    """The filters and page of a pipelines list (as `list_pipelines` takes them)."""

    repository_id: int | None = None
    ref: str | None = None
    status: str | None = None
    source: str | None = None
    cursor: str | None = None
    limit: int = PAGE_SIZE

    def read(self, database: Database) -> ListPage:
        """The page's pipelines as they are now, with their stages."""
        with database.transaction() as session:
            rows = list_pipelines(
                session=session,
                repository_id=self.repository_id,
                ref=self.ref,
                status=self.status,
                source=self.source,
                cursor=self.cursor,
                limit=self.limit,
            ).items
            stages = stage_summaries(session=session, pipeline_ids=[p.id for p in rows])
        return ListPage(rows, stages)


@dataclass(frozen=True)
class ListPage:
    """A page of pipelines as a list shows them: the rows, and each one's stages."""

    rows: list[PipelineRead]
    stages: dict[int, list[StageSummary]]


class SharedPages:
    """The pages of pipelines the open lists follow, read once per poll for all of them.

    Every open pipelines list polls its page each second; lists showing the same page (most
    show the newest one) share one read instead of each making its own. Safe to use from the
    worker threads the reads run in. Lifecycle: one per app, made on first use, kept on
    `app.state`; pages nobody asked for in a minute are forgotten.
    """

    FORGET_AFTER = 60.0

    def __init__(self, fresh_for: float = POLL_SECONDS / 2) -> None:
        self.fresh_for = fresh_for
        self._lock = threading.Lock()
        self._pages: dict[ListQuery, tuple[float, ListPage]] = {}

    def read(self, query: ListQuery, load: Callable[[ListQuery], ListPage]) -> ListPage:
        """The page of `query`: the one read less than `fresh_for` seconds ago, else `load`ed."""
        now = time.monotonic()
        with self._lock:
            kept = self._pages.get(query)
            if kept is not None and now - kept[0] < self.fresh_for:
                return kept[1]
        rows = load(query)
        with self._lock:
            self._pages[query] = (time.monotonic(), rows)
            for stale in [k for k, (at, _) in self._pages.items() if now - at > self.FORGET_AFTER]:
                del self._pages[stale]
        return rows

    @classmethod
    def of(cls, state: Any) -> SharedPages:
        """The app's shared pages (`request.app.state`), made on first use."""
        shared = getattr(state, "dashboard_pages", None)
        if not isinstance(shared, cls):
            shared = cls()
            state.dashboard_pages = shared
        return shared


def _row_key(p: PipelineRead, stages: list[StageSummary]) -> tuple[Any, ...]:
    return (p.status, p.started_at, p.finished_at, tuple(stages))


def _repository_names(database: Database) -> dict[int, str]:
    with database.transaction() as session:
        return {r.id: r.name for r in list_repositories(session=session)}


async def follow_list(
    request: Request, database: Database, query: ListQuery
) -> AsyncIterator[dict[str, str]]:
    """Events for a pipelines list: every row once, then each row that changes or appears."""
    seen: dict[int, tuple[Any, ...]] = {}
    order: list[int] = []
    names: dict[int, str] = {}
    shared = SharedPages.of(request.app.state)

    def load(wanted: ListQuery) -> ListPage:
        return wanted.read(database)

    while not await request.is_disconnected():
        page = await anyio.to_thread.run_sync(shared.read, query, load)
        rows = page.rows
        if any(p.repository_id not in names for p in rows):
            names = await anyio.to_thread.run_sync(_repository_names, database)
        for p in reversed(rows):  # oldest first: a new row is put on top of the older ones
            stages = page.stages.get(p.id, [])
            key = _row_key(p, stages)
            if seen.get(p.id) != key:
                seen[p.id] = key
                html = render_macro("macros.html", "pipeline_row", p, names, stages)
                yield {"event": "row", "data": json.dumps({"id": p.id, "html": html})}
        ids = [p.id for p in rows]
        if ids != order:
            order = ids
            yield {"event": "order", "data": json.dumps(ids)}
        seen = {i: seen[i] for i in ids}
        await anyio.sleep(POLL_SECONDS)


def pipeline_fingerprint(database: Database, pipeline_id: int) -> tuple[Any, ...]:
    """What changes on a pipeline page when anything on it changes (statuses and attempts)."""
    with database.transaction() as session:
        head = session.execute(
            select(Pipeline.status, Pipeline.finished_at).where(Pipeline.id == pipeline_id)
        ).one_or_none()
        jobs = session.execute(
            select(Job.id, Job.status, Job.exit_code).where(Job.pipeline_id == pipeline_id)
        ).all()
    return (tuple(head) if head else None, tuple(sorted(tuple(j) for j in jobs)))


def pipeline_version(database: Database, pipeline_id: int) -> str:
    """A short digest of `pipeline_fingerprint`: the page carries it, the stream compares."""
    text = repr(pipeline_fingerprint(database, pipeline_id))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


async def follow_pipeline(
    request: Request, database: Database, pipeline_id: int, version: str
) -> AsyncIterator[dict[str, str]]:
    """Events for a pipeline page served at `version`: `changed` each time it differs from the
    version last seen (at once when it changed between the page and the stream)."""
    last = version
    yield {"event": "ready", "data": str(pipeline_id)}
    while not await request.is_disconnected():
        now = await anyio.to_thread.run_sync(pipeline_version, database, pipeline_id)
        if now != last:
            last = now
            yield {"event": "changed", "data": now}
        await anyio.sleep(POLL_SECONDS)
