"""Errors of the pipeline language.

Every problem a user can cause with a pipeline file is one of these; nothing else escapes
`load`, `resolve`, `validate` or `plan`. An error that groups several problems (every
duplicate key of a file, every invalid keyword) lists them in `.problems`, in file order::

    PipelineError                     any problem with a pipeline; carries a Location when known
    ├── LoadError                     the file cannot be read or is not YAML (may hold several)
    ├── IncludeError                  include: a missing file, a cycle, an unsupported kind
    ├── ExtendsError                  extends: an unknown template or a cycle
    ├── ValidationError               a keyword or value is wrong (may hold several problems)
    │   └── UnsupportedKeywordError   GitLab has the keyword, kapal does not support it yet
    ├── ExpressionError               a `rules: if:` expression does not parse
    ├── PlanError                     the jobs cannot be planned (needs cycle, unknown need, ...)
    └── PipelineWarning               valid GitLab worth a look; planned anyway, an error with
                                      `--strict` (a duplicate key, an ignored server keyword)

Warnings travel in the same lists as errors; `severity` tells them apart and `as_dict()` gives
the JSON form `kapal lint --json` / `kapal plan --json` print.
"""

from __future__ import annotations

from typing import Any

from pipeline.keywords import GLOBAL_KEYWORDS
from pipeline.records import record


@record
class Location:
    """Where a problem is: file, 1-based line and column, and the keyword path when known."""

    file: str
    line: int = 0
    column: int = 0
    keyword: str = ""

    def __str__(self) -> str:
        if self.line:
            return f"{self.file}:{self.line}:{self.column}"
        return self.file


class PipelineError(Exception):
    """A problem with a pipeline file that the user can fix."""

    severity = "error"

    def __init__(
        self,
        message: str,
        location: Location | None = None,
        *,
        problems: list[PipelineError] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.location = location
        self._problems = problems

    def __str__(self) -> str:
        if self.location is None:
            return self.message
        return f"{self.location}: {self.message}"

    @property
    def problems(self) -> list[PipelineError]:
        """The individual problems this error stands for (itself, unless it groups several)."""
        return list(self._problems) if self._problems else [self]

    def as_dict(self) -> dict[str, Any]:
        """This problem as JSON fields: file, line, column, job, keyword, message, severity."""
        loc = self.location
        path = loc.keyword if loc is not None else ""
        parts = path.split(": ") if path else []
        job = ""
        if parts and parts[0] not in GLOBAL_KEYWORDS | {"extends", "!reference"}:
            job = parts[0]
        keyword = ": ".join(parts[1:]) if job else path
        message = self.message
        if path and message.startswith(path + ": "):
            message = message[len(path) + 2 :]
        return {
            "file": loc.file if loc is not None else "",
            "line": loc.line if loc is not None else 0,
            "column": loc.column if loc is not None else 0,
            "job": job or None,
            "keyword": keyword or None,
            "message": message,
            "severity": self.severity,
        }


class LoadError(PipelineError):
    """The file cannot be read or is not valid YAML."""


class IncludeError(PipelineError):
    """An `include:` cannot be resolved."""


class ExtendsError(PipelineError):
    """An `extends:` names an unknown template or forms a cycle."""


class ValidationError(PipelineError):
    """One or more keywords or values are wrong."""


class UnsupportedKeywordError(ValidationError):
    """A keyword GitLab CI has that kapal does not support yet."""


class ExpressionError(PipelineError):
    """A `rules: if:` (or `workflow: rules: if:`) expression does not parse.

    `expression` is the text and `column` the 1-based column inside it where the problem is,
    so a caller that knows where the expression sits in the file can point at the exact spot.
    """

    def __init__(
        self,
        message: str,
        location: Location | None = None,
        *,
        expression: str = "",
        column: int = 0,
    ) -> None:
        super().__init__(message, location)
        self.expression = expression
        self.column = column


class PlanError(PipelineError):
    """The jobs cannot be put in order: a `needs` cycle, an unknown job, an empty pipeline..."""


class PipelineWarning(PipelineError):
    """Valid GitLab that deserves a look (a duplicate key, an ignored keyword); never raised.

    Collected beside errors; planning goes on. `kapal lint --strict` treats it as an error.
    """

    severity = "warning"
