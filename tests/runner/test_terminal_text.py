"""Text a pipeline wrote prints as one harmless line, and tables line up on wide letters."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from runner.terminal_text import cell_width, printable


@given(st.text())
def test_whatever_a_pipeline_wrote_prints_without_control_characters(text: str) -> None:
    shown = printable(text)
    assert shown.isprintable()
    assert shown == text if text.isprintable() else "\\" in shown


def test_escapes_are_written_out_and_wide_letters_take_two_cells() -> None:
    assert printable("job\x1b[2J\n\x07") == "job\\x1b[2J\\n\\x07"
    assert cell_width("デプロイ") == 8 and cell_width("e\u0301") == 1 and cell_width("ab") == 2
