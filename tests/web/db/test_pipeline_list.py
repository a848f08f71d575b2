"""The pipelines list against the rows themselves: every filter combination, paged by cursors
at several sizes, gives each matching pipeline once, newest first, as `get_pipeline` reads it."""

from __future__ import annotations

import itertools
from typing import Any

from tests.web.db.factories import make_pipeline, make_repository
from web.db.encryption import SecretCipher
from web.db.pipelines import get_pipeline, list_pipelines, set_pipeline_plan
from web.db.schemas import PipelineRead
from web.db.session import Database

REFS = ("main", "dev", "feature/x")
STATUSES = ("success", "failed", "running")
SOURCES = ("push", "api")
PIPELINES = 23
PAGES_AT_MOST = PIPELINES + 1  # one a page, and the last one empty at most


def _pages(database: Database, filters: dict[str, Any], limit: int) -> list[PipelineRead]:
    """Every page of the list under `filters`, read through the cursors it hands out."""
    seen: list[PipelineRead] = []
    cursor = None
    for _ in range(PAGES_AT_MOST):
        with database.reading() as session:
            page = list_pipelines(session=session, cursor=cursor, limit=limit, **filters)
        assert len(page.items) <= limit
        seen += page.items
        if page.next_cursor is None:
            return seen
        assert page.items, "a page with a next cursor holds pipelines"
        cursor = page.next_cursor
    raise AssertionError(f"still a next page after {PAGES_AT_MOST}: the cursors go round")


def test_every_filter_and_page_size_lists_each_match_once(
    database: Database, cipher: SecretCipher
) -> None:
    with database.transaction() as session:
        repositories = [make_repository(session, cipher, f"acme/r{n}").id for n in range(2)]
        made = [
            make_pipeline(
                session,
                repositories[n % 2],
                ref=REFS[n % 3],
                status=STATUSES[n % 5 % 3],
                source=SOURCES[int(n % 7 == 0)],
                message=f"change {n}",
                variables={"N": str(n)},
                trigger={"changed_files": [f"f{n}"]},
            )
            for n in range(PIPELINES)
        ]
        # the plan is never listed: a large one changes nothing on the list
        set_pipeline_plan(session=session, pipeline_id=made[0].id, plan={"jobs": ["x"] * 5000})
    with database.transaction() as session:
        stored = {p.id: get_pipeline(session=session, pipeline_id=p.id) for p in made}
    choices = {
        "repository_id": (None, repositories[1]),
        "ref": (None, "feature/x"),
        "status": (None, "failed"),
        "source": (None, "api"),
    }
    for values in itertools.product(*choices.values()):
        filters = {k: v for k, v in zip(choices, values, strict=True) if v is not None}
        expected = sorted(
            (p for p in stored.values() if p is not None and _matches(p, filters)),
            key=lambda p: p.id,
            reverse=True,
        )
        for limit in (1, 2, 5, 200):
            assert _pages(database, filters, limit) == expected, (filters, limit)


def _matches(pipeline: PipelineRead, filters: dict[str, Any]) -> bool:
    return all(getattr(pipeline, name) == value for name, value in filters.items())
