"""Text for a person's terminal: what a pipeline, a commit or an image wrote, made safe to print.

Job names, commit messages, reasons, environment names and image configs come from people the
operator does not trust; printed raw, an escape sequence among them could move the cursor,
rewrite what the reader sees or retitle the terminal. The command line's tables print every
such cell through `printable`, and line columns up with `cell_width`.
"""

from __future__ import annotations

__all__ = ["cell_width", "printable"]


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
