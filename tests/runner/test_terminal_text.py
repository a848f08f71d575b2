"""Text a pipeline wrote prints as one harmless line, and tables line up on wide letters."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from runner.terminal_text import aligned, cell_width, printable


@given(st.text())
def test_whatever_a_pipeline_wrote_prints_without_control_characters(text: str) -> None:
    shown = printable(text)
    assert shown.isprintable()
    assert shown == text if text.isprintable() else "\\" in shown


def test_escapes_are_written_out_and_wide_letters_take_two_cells() -> None:
    assert printable("job\x1b[2J\n\x07") == "job\\x1b[2J\\n\\x07"
    assert cell_width("デプロイ") == 8 and cell_width("e\u0301") == 1 and cell_width("ab") == 2


def test_aligned_cells_are_escaped_and_padded_to_their_column_in_terminal_cells() -> None:
    rows = aligned([("name", "n"), ("デプロイ", 7), ("x\x1b", None)])
    assert [text for text, _ in (row[0] for row in rows)] == ["name", "デプロイ", "x\\x1b"]
    assert [cell_width(text + pad) for row in rows for text, pad in row] == [8, 4] * 3
