"""`lint()`: every problem of a pipeline file at once, for `kapal lint` and editors."""

from __future__ import annotations

from pathlib import Path

from pipeline.document import Document, load
from pipeline.errors import PipelineError
from pipeline.remote import RemoteFetcher
from pipeline.validate import validate_collecting


def lint(source: str | Path | Document, remote: RemoteFetcher | None = None) -> list[PipelineError]:
    """Load (unless given a Document), resolve and validate; return the problems in file order.

    `remote` fetches `include: remote` files; without one they are errors.
    """
    try:
        document = source if isinstance(source, Document) else load(source)
    except PipelineError as exc:
        return exc.problems
    _, problems = validate_collecting(document, None, remote)
    return problems
