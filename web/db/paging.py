"""Cursor pagination, newest first: a cursor is the id of the last row of the previous page."""

from __future__ import annotations

import re
from typing import Any, TypeVar

from pydantic import BaseModel
from sqlalchemy import Select
from sqlalchemy.orm import InstrumentedAttribute, Session

from web.db.schemas import Page
from web.errors import InvalidCursorError

MAX_PAGE = 200
MAX_ID = 2**63 - 1  # the largest id a BIGINT holds
_CURSOR = re.compile(r"[0-9]{1,19}")  # ASCII digits only: str.isdigit() also takes "²"
T = TypeVar("T", bound=BaseModel)


def decode_cursor(cursor: str) -> int:
    """The row id a cursor stands for; InvalidCursorError for anything this server did not make."""
    if not _CURSOR.fullmatch(cursor) or int(cursor) > MAX_ID:
        raise InvalidCursorError(
            f"cursor {cursor[:40]!r} is not one this server handed out; start again without one"
        )
    return int(cursor)


def fetch_page(
    *,
    session: Session,
    query: Select[Any],
    id_column: InstrumentedAttribute[int],
    schema: type[T],
    cursor: str | None,
    limit: int,
) -> Page[T]:
    """Run `query` (rows of one model) newest first from `cursor`, at most `limit` rows."""
    limit = max(1, min(limit, MAX_PAGE))
    if cursor is not None:
        query = query.where(id_column < decode_cursor(cursor))
    rows = list(session.scalars(query.order_by(id_column.desc()).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return Page[schema](  # type: ignore[valid-type]
        items=[schema.model_validate(r) for r in rows],
        next_cursor=str(rows[-1].id) if more else None,
    )
