""".dockerignore: which context paths COPY and ADD may not see.

Docker's rules ("Dockerfile reference", .dockerignore file):
- one pattern per line; lines starting with `#` are comments; blank lines are skipped; each line
  is trimmed, then cleaned like Go's `filepath.Clean` (a leading `/` or `./` means the root);
- patterns use Go's `filepath.Match` syntax (`*`, `?`, `[a-z]`, `[^a-z]`, `\\` escape) plus `**`,
  which matches any number of directories, zero included;
- a line starting with `!` makes an exception: paths it matches are included again;
- the last pattern that matches a path decides; a pattern that matches a directory applies to
  everything beneath it, exceptions included: `docs/**` then `!docs/public` sends all of
  `docs/public/` (moby/patternmatcher's `MatchesOrParentMatches`).
The Dockerfile and .dockerignore are still read by the builder when excluded, but COPY and ADD do
not see them then, as in Docker.

The module is light (no dataclasses, no `runner.confined` until `load`): the build memo
(`runner.build.memo`) matches its snapshot with this same code before the builder is imported.
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path
from typing import NamedTuple

from runner.errors import BuildError, ConfinedPathError

__all__ = ["DockerIgnore", "IgnorePattern"]

_MAX_BYTES = 4 * 1024 * 1024


class IgnorePattern(NamedTuple):
    """One cleaned pattern, its compiled regex, whether it is an exception (`!`), and `scope`:
    the regex of the paths it decides, itself or one of its parents matching `regex`."""

    text: str
    regex: re.Pattern[str]
    exception: bool
    scope: re.Pattern[str]


class DockerIgnore:
    """The patterns of a .dockerignore file, in order (an immutable value)."""

    __slots__ = ("patterns",)
    patterns: tuple[IgnorePattern, ...]

    def __init__(self, patterns: tuple[IgnorePattern, ...] = ()) -> None:
        object.__setattr__(self, "patterns", tuple(patterns))

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"DockerIgnore is immutable: cannot set {name}")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DockerIgnore):
            return NotImplemented
        return self.patterns == other.patterns

    def __hash__(self) -> int:
        return hash(self.patterns)

    def __repr__(self) -> str:
        return f"DockerIgnore(patterns={self.patterns!r})"

    def __reduce__(self) -> tuple[type[DockerIgnore], tuple[tuple[IgnorePattern, ...]]]:
        return (DockerIgnore, (self.patterns,))  # copied and pickled through __init__

    @classmethod
    def parse(cls, text: str) -> DockerIgnore:
        """Parse the text of a .dockerignore file."""
        out: list[IgnorePattern] = []
        for raw in text.splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            exception = line.startswith("!")
            if exception:
                line = line[1:].strip()
            if not line:
                continue
            cleaned = _clean(line)
            regex = _compile(cleaned)
            # one match instead of one per parent: `x` or `x/...` where `x` matches (parents of
            # a cleaned path are exactly its prefixes that end before a `/`)
            scope = re.compile(f"(?:{regex.pattern})(?:/.*)?", re.DOTALL)
            out.append(IgnorePattern(cleaned, regex, exception, scope))
        return cls(tuple(out))

    @classmethod
    def load(cls, context: Path) -> DockerIgnore:
        """The .dockerignore at the root of `context`, or no patterns when there is none.

        Read inside the context (`runner.confined`): a link to a host file, a fifo or a device
        is not read (BuildError), and the file may hold at most 4 MiB.
        """
        from runner.confined import ConfinedTree  # heavy: only the builder loads a context

        with ConfinedTree(context) as tree:
            if tree.stat(".dockerignore") is None:
                return cls()
            try:
                raw = tree.read_bytes(".dockerignore", _MAX_BYTES + 1)
            except ConfinedPathError as exc:
                raise BuildError(f"cannot read the .dockerignore: {exc}") from None
        if len(raw) > _MAX_BYTES:
            raise BuildError(f"{context}/.dockerignore is larger than 4 MiB; it cannot be right")
        return cls.parse(raw.decode("utf-8", errors="replace"))

    def excluded(self, relpath: str) -> bool:
        """Whether the context-relative path (`/`-separated) is excluded."""
        path = _clean(relpath)
        if path in ("", "."):
            return False
        result = False
        for pattern in self.patterns:
            if pattern.exception != result:
                continue  # it could not change the answer (moby's MatchesOrParentMatches)
            if pattern.scope.fullmatch(path):  # the path or a parent (MatchesOrParentMatches)
                result = not pattern.exception
        return result

    def has_exceptions(self) -> bool:
        """Whether any `!` pattern exists (then an excluded directory must still be walked)."""
        return any(p.exception for p in self.patterns)


def _clean(path: str) -> str:
    cleaned = posixpath.normpath(path)
    cleaned = cleaned.lstrip("/")
    return "." if cleaned == "" else cleaned


def _class_body(body: str) -> str:
    """A `[...]` class's body for Python's re, meaning what it means to Go: a backslash stays
    literal, and `[`, `&&`, `~~`, `||` and `--` (which re reserves for nested sets and set
    operations, warning about them today) are literal characters, `--` still closing a range."""
    body = body.replace("\\", "\\\\")
    for special in "[&~|":
        body = body.replace(special, "\\" + special)
    return body.replace("--", "-\\-")


def _compile(pattern: str) -> re.Pattern[str]:
    """Translate Go filepath.Match syntax plus `**` into a regex over `/`-separated paths."""
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "*":
            if pattern.startswith("**", i):
                i += 2
                if i < n and pattern[i] == "/":
                    i += 1
                    out.append("(?:.*/)?")
                else:
                    out.append(".*")
                continue
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "[":
            end = pattern.find("]", i + 2 if pattern[i + 1 : i + 2] in ("^", "!") else i + 1)
            if end == -1:
                out.append(re.escape(ch))
            else:
                body = pattern[i + 1 : end]
                if body.startswith(("^", "!")):
                    body = "^" + _class_body(body[1:])
                else:
                    body = _class_body(body).replace("^", "\\^")
                out.append(f"[{body}]")
                i = end
        elif ch == "\\" and i + 1 < n:
            i += 1
            out.append(re.escape(pattern[i]))
        else:
            out.append(re.escape(ch))
        i += 1
    try:
        return re.compile("".join(out), re.DOTALL)
    except re.error:
        return re.compile(re.escape(pattern))
