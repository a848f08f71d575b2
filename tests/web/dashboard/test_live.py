"""The live lists' shared reads: lists showing one page share a read while it is fresh; other
pages, and a page gone stale, are read again."""

from __future__ import annotations

from types import SimpleNamespace

from web.dashboard.live import ListQuery, SharedPages
from web.db.schemas import PipelineRead


def test_lists_of_one_page_share_a_fresh_read() -> None:
    loads: list[ListQuery] = []

    def load(query: ListQuery) -> list[PipelineRead]:
        loads.append(query)
        return []

    shared = SharedPages(fresh_for=3600)
    newest, failed = ListQuery(), ListQuery(status="failed")
    for _ in range(5):
        shared.read(newest, load)
    shared.read(failed, load)
    assert loads == [newest, failed]
    stale = SharedPages(fresh_for=0)
    stale.read(newest, load)
    stale.read(newest, load)
    assert loads == [newest, failed, newest, newest]


def test_one_shared_reader_per_app_state() -> None:
    state = SimpleNamespace()
    assert SharedPages.of(state) is SharedPages.of(state)
    assert SharedPages.of(SimpleNamespace()) is not SharedPages.of(state)
