"""CI variables at run time: `$VAR` / `${VAR}` expansion and a job's final environment."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from pipeline.plan import Variable

_REFERENCE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)")
_MAX_DEPTH = 10


def expand(text: str, values: Mapping[str, str]) -> str:
    """Replace `$VAR` and `${VAR}` in `text` (unknown names become empty, `$$` a single `$`)."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        return values.get(match.group(1) or match.group(2), "")

    return _REFERENCE.sub(replace, text)


def resolve_variables(variables: Iterable[Variable]) -> dict[str, str]:
    """Final values of variables given in precedence order (later wins), references expanded.

    A variable marked `expand=False` keeps its value as written. References to other variables
    are expanded recursively up to a small depth, so `A=$B`, `B=$C` works and a cycle stops.
    """
    raw: dict[str, str] = {}
    literal: set[str] = set()
    for var in variables:
        raw[var.name] = var.value
        if var.expand:
            literal.discard(var.name)
        else:
            literal.add(var.name)
    resolved = dict(raw)
    for _ in range(_MAX_DEPTH):
        changed = False
        for name, value in raw.items():
            if name in literal or "$" not in value:
                continue
            new = _expand_keeping_escapes(value, resolved)
            if new != resolved[name]:
                resolved[name] = new
                changed = True
        if not changed:
            break
    return {
        name: value if name in literal else value.replace("$$", "$")
        for name, value in resolved.items()
    }


def _expand_keeping_escapes(text: str, values: Mapping[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$$"
        return values.get(match.group(1) or match.group(2), "")

    return _REFERENCE.sub(replace, text)
