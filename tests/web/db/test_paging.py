"""Cursors: anything a client sends is a page position or a clear InvalidCursorError."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from web.db.paging import decode_cursor
from web.errors import InvalidCursorError


@given(st.text(max_size=40) | st.from_regex(r"[0-9²١]{1,25}", fullmatch=True))
def test_any_text_is_a_position_or_refused(cursor: str) -> None:
    try:
        position = decode_cursor(cursor)
    except InvalidCursorError as exc:
        assert "start again without one" in str(exc)
        assert "\n" not in str(exc).replace(repr(cursor[:40]), "")
    else:
        assert position >= 0
        assert int(cursor) == position


@given(st.integers(min_value=0, max_value=2**63 - 1))
def test_handed_out_cursors_round_trip(position: int) -> None:
    assert decode_cursor(str(position)) == position


def test_out_of_range_is_refused() -> None:
    for cursor in (str(2**63), "²", "١٢", " 12", "12\n", "+1"):
        try:
            decode_cursor(cursor)
        except InvalidCursorError:
            continue
        raise AssertionError(f"{cursor!r} was taken")
