"""Text for a person's terminal: what a pipeline, a commit or an image wrote, made safe to print.

Job names, commit messages, reasons, environment names and image configs come from people the
operator does not trust; printed raw, an escape sequence among them could move the cursor,
rewrite what the reader sees or retitle the terminal. The command line's tables print every
such cell through `aligned`: `printable`, and padded by `cell_width` to its column.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["aligned", "cell_width", "printable"]


def printable(text: str) -> str:
    """`text` with each control (or other unprintable) character written as its escape (`\\x1b`,
    `\\n`), so it prints as one line that changes nothing on the terminal."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def cell_width(text: str) -> int:
    """Terminal cells `text` takes: wide (East Asian) letters two, combining marks none."""
    if text.isascii():
        return len(text)
    import unicodedata

    return sum(
        0 if unicodedata.combining(c) else 2 if unicodedata.east_asian_width(c) in ("W", "F") else 1
        for c in text
    )


def aligned(rows: Sequence[Sequence[object]]) -> list[list[tuple[str, str]]]:
    """Each cell of `rows` as (its `printable` text, the spaces that pad it to its column's
    widest cell); a table prints a row as `"  ".join(text + pad ...)`."""
    cells = [[printable(str(cell)) for cell in row] for row in rows]
    widths = (
        [max(cell_width(row[at]) for row in cells) for at in range(len(cells[0]))] if cells else []
    )
    return [
        [(text, " " * (width - cell_width(text))) for text, width in zip(row, widths, strict=True)]
        for row in cells
    ]
