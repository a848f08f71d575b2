"""Path globs for `rules: changes` and `rules: exists`, matched as GitLab matches them.

GitLab calls Ruby's `File.fnmatch?(glob, path, FNM_PATHNAME | FNM_DOTMATCH | FNM_EXTGLOB)`:

- `*` matches any run of characters except `/` (dot files included), `?` one such character;
- `**/` at the start of a path segment matches zero or more whole directories; anywhere else
  `**` is just `*`, so `dir/**` matches `dir/a` but not `dir/a/b` (write `dir/**/*`);
- `[abc]`, `[a-z]`, `[!abc]`, `[^abc]` match one character other than `/`; an unclosed `[`
  matches nothing; a bracket may even contain `/` (the pattern is not split inside it);
- `{a,b}` alternatives, nested; a `{` never closed makes the pattern match nothing, a lone
  `}` is literal;
- `\\x` matches `x` literally, `\\/` is a separator, a trailing `\\` is ignored; the whole
  path must match; case matters.

tests/pipeline/test_globs.py compares these answers with Ruby's own File.fnmatch.

Lifecycle: `compile_glob` turns one pattern into a `Glob` (cheap; callers may keep it), and
`matches_changes` / `matches_exists` answer a rule's question for a list of paths.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import field
from typing import Literal

from pipeline.errors import ValidationError
from pipeline.records import record

__all__ = [
    "MAX_BRACE_ALTERNATIVES",
    "MAX_EXISTS_COMPARISONS",
    "Glob",
    "compile_glob",
    "expand_existing",
    "expand_variables",
    "include_wildcard",
    "matches_changes",
    "matches_exists",
]

MAX_BRACE_ALTERNATIVES = 1024
"""A pattern whose `{a,b}` braces expand to more alternatives than this is refused."""

MAX_EXISTS_COMPARISONS = 10_000
"""GitLab stops comparing `exists` wildcard patterns after this many and assumes a match."""

# GitLab's ExpandVariables: `$$` and `%%` stay as they are.
_VARIABLE_REFERENCE = re.compile(
    r"\$\$|%%|\$([A-Za-z_][A-Za-z0-9_]*)|\$\{([A-Za-z_][A-Za-z0-9_]*)\}|%([A-Za-z_][A-Za-z0-9_]*)%"
)

_NEVER = "(?!)"


@record
class Glob:
    """One compiled glob pattern."""

    pattern: str
    regex: re.Pattern[str] = field(compare=False, repr=False)

    def matches(self, path: str) -> bool:
        """Whether `path` (relative, `/`-separated) matches the whole pattern."""
        return self.regex.fullmatch(path) is not None


def compile_glob(pattern: str) -> Glob:
    """Compile a pattern; `ValidationError` when its braces expand beyond reason."""
    alternatives = _expand_braces(pattern)
    regex = "|".join(f"(?:{_translate(alt)})" for alt in alternatives) or _NEVER
    return Glob(pattern=pattern, regex=re.compile(regex, re.DOTALL))


def matches_changes(
    patterns: Iterable[str],
    changed_paths: Collection[str] | None,
    *,
    variables: Mapping[str, str] | None = None,
) -> bool:
    """`rules: changes`: true when any changed path matches any pattern.

    `changed_paths` None means the trigger has no list of changes (a tag, a schedule, a web or
    API pipeline, a first push): GitLab then treats `changes` as true. `$VAR` in a pattern is
    replaced when `variables` defines it and left as written otherwise, as GitLab does.
    """
    if changed_paths is None:
        return True
    globs = [compile_glob(expand_existing(pattern, variables)) for pattern in patterns]
    return any(glob.matches(path) for path in changed_paths for glob in globs)


def matches_exists(
    patterns: Iterable[str],
    project_files: Collection[str],
    *,
    variables: Mapping[str, str] | None = None,
) -> bool:
    """`rules: exists`: true when any file of the project matches any pattern.

    As in GitLab: a pattern without wildcards is an exact path, `**/*.ext` checks the file
    name's ending, and after `MAX_EXISTS_COMPARISONS` wildcard comparisons the rule is taken
    as matching. `$VAR` is replaced when `variables` defines it.
    """
    expanded = [expand_existing(pattern, variables) for pattern in patterns]
    exact = {pattern for pattern in expanded if not _has_wildcards(pattern)}
    endings = [
        pattern.removeprefix("**/*")
        for pattern in expanded
        if pattern not in exact and _is_ending_glob(pattern)
    ]
    globs = [
        compile_glob(pattern)
        for pattern in expanded
        if pattern not in exact and not _is_ending_glob(pattern)
    ]
    if exact.intersection(project_files):
        return True
    if endings and any(path.endswith(tuple(endings)) for path in project_files):
        return True
    comparisons = 0
    for glob in globs:
        for path in project_files:
            comparisons += 1
            if comparisons > MAX_EXISTS_COMPARISONS or glob.matches(path):
                return True
    return False


def expand_existing(text: str, variables: Mapping[str, str] | None) -> str:
    """`$VAR`, `${VAR}` and `%VAR%` replaced by the variables that exist; the rest untouched."""
    if not variables:
        return text

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2) or match.group(3)
        if name is None or name not in variables:
            return match.group(0)
        return variables[name]

    return _VARIABLE_REFERENCE.sub(replace, text)


def expand_variables(text: str, variables: Mapping[str, str]) -> str:
    """`$VAR`, `${VAR}` and `%VAR%` replaced, unknown ones by nothing (GitLab's `expand`)."""

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2) or match.group(3)
        if name is None:
            return match.group(0)
        return variables.get(name, "")

    return _VARIABLE_REFERENCE.sub(replace, text)


def include_wildcard(pattern: str) -> re.Pattern[str]:
    """`include: local` wildcards, GitLab's own grammar (not `File.fnmatch`'s).

    GitLab escapes the pattern and turns only `**` into "anything, `/` included" and `*` into
    "anything but `/`"; `?` and `[` are literal. So `configs/*.yml` is the files directly in
    `configs/`, `configs/**.yml` every `.yml` under it, `configs/**/*.yml` those in its
    subfolders only.
    """
    text = re.escape(pattern.lstrip("/"))
    text = text.replace(r"\*\*", "\x00").replace(r"\*", "[^/]*?").replace("\x00", ".*?")
    return re.compile(text, re.DOTALL)


def _has_wildcards(pattern: str) -> bool:
    return any(char in pattern for char in "*?[{")


def _is_ending_glob(pattern: str) -> bool:
    """`**/*.js`-like patterns, which GitLab answers with `path.end_with?(".js")`."""
    ending = pattern.removeprefix("**/*")
    return ending.startswith(".") and "/" not in ending and not _has_wildcards(ending)


def _expand_braces(pattern: str) -> list[str]:
    """Ruby's brace expansion: the first balanced `{...}` split on its top-level commas."""
    results: list[str] = []
    pending = [pattern]
    while pending:
        current = pending.pop()
        span = _first_brace(current)
        if span is None:
            results.append(current)
        elif span == "unbalanced":
            pass  # Ruby matches nothing with a `{` that is never closed
        else:
            start, end, commas = span
            prefix, suffix = current[:start], current[end + 1 :]
            bounds = [start, *commas, end]
            pending.extend(
                prefix + current[bounds[i] + 1 : bounds[i + 1]] + suffix
                for i in reversed(range(len(bounds) - 1))
            )
        if len(results) + len(pending) > MAX_BRACE_ALTERNATIVES:
            raise ValidationError(
                f"the glob {pattern!r} expands to more than {MAX_BRACE_ALTERNATIVES} "
                "alternatives through its {...} braces; list fewer patterns"
            )
    return results


def _first_brace(pattern: str) -> tuple[int, int, list[int]] | Literal["unbalanced"] | None:
    """(index of `{`, index of its `}`, top-level commas between); None without any `{`."""
    index, start, depth = 0, -1, 0
    commas: list[int] = []
    while index < len(pattern):
        char = pattern[index]
        if char == "\\":
            index += 2
            continue
        if char == "{":
            if depth == 0:
                start, commas = index, []
            depth += 1
        elif char == "}" and depth > 0:
            depth -= 1
            if depth == 0:
                return start, index, commas
        elif char == "," and depth == 1:
            commas.append(index)
        index += 1
    return "unbalanced" if start >= 0 else None


def _normalise_escapes(pattern: str) -> str:
    """Ruby drops a trailing lone backslash, and `\\/` is a path separator like `/` — except
    that only a literal `**/` recurses: a `**` segment before `\\/` is a plain `*`."""
    out: list[str] = []
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if char == "\\":
            if index + 1 >= len(pattern):
                break
            following = pattern[index + 1]
            if following == "/" and "".join(out[-2:]) == "**" and (len(out) == 2 or out[-3] == "/"):
                out[-2:] = ["*"]
            out.append(following if following == "/" else char + following)
            index += 2
            continue
        out.append(char)
        index += 1
    return "".join(out)


def _segments(pattern: str) -> list[str] | None:
    """The pattern split at `/`, a bracket expression staying whole even when it holds a `/`
    (as in Ruby); None when a bracket is never closed, which makes Ruby match nothing."""
    segments: list[str] = []
    current: list[str] = []
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if char == "\\" and index + 1 < len(pattern):
            current.append(pattern[index : index + 2])
            index += 2
        elif char == "[":
            end = _bracket_end(pattern, index)
            if end is None:
                return None
            current.append(pattern[index:end])
            index = end
        elif char == "/":
            segments.append("".join(current))
            current = []
            index += 1
        else:
            current.append(char)
            index += 1
    segments.append("".join(current))
    return segments


def _bracket_end(pattern: str, start: int) -> int | None:
    """The index just after the `]` closing the bracket at `start`, or None."""
    index = start + 1
    if index < len(pattern) and pattern[index] in "!^":
        index += 1
    while index < len(pattern):
        if pattern[index] == "]":
            return index + 1
        index += 2 if pattern[index] == "\\" else 1
    return None


def _translate(pattern: str) -> str:
    """One brace-free glob as a regular expression over the whole path."""
    segments = _segments(_normalise_escapes(pattern))
    if segments is None:
        return _NEVER
    parts: list[str] = []
    index = 0
    while index < len(segments):
        segment = segments[index]
        if segment == "**" and index < len(segments) - 1:
            # Consecutive `**/` collapse; together they match any number of directories.
            while index < len(segments) - 1 and segments[index] == "**":
                index += 1
            parts.append("(?:[^/]*/)*" + _segment(segments[index]))
        else:
            parts.append(_segment(segment))
        index += 1
        if index < len(segments):
            parts.append("/")
    return "".join(parts)


def _segment(segment: str) -> str:
    """One path segment of a glob as a regular expression (a `/` only inside brackets)."""
    out: list[str] = []
    index = 0
    while index < len(segment):
        char = segment[index]
        if char == "*":
            while index < len(segment) and segment[index] == "*":
                index += 1
            out.append("[^/]*")
            continue
        if char == "?":
            out.append("[^/]")
        elif char == "[":
            bracket, index = _bracket(segment, index)
            out.append(bracket)
            continue
        elif char == "\\" and index + 1 < len(segment):
            index += 1
            out.append(re.escape(segment[index]))
        else:
            out.append(re.escape(char))
        index += 1
    return "".join(out)


def _bracket(segment: str, start: int) -> tuple[str, int]:
    """The class starting at `segment[start] == "["` and the index after it."""
    index = start + 1
    negate = index < len(segment) and segment[index] in "!^"
    if negate:
        index += 1
    items: list[str] = []
    while True:
        if index >= len(segment):
            # Ruby's fnmatch fails the whole match at an unclosed bracket.
            return _NEVER, len(segment)
        char = segment[index]
        if char == "]":
            break
        low, index = _bracket_char(segment, index)
        if low is None:
            return _NEVER, len(segment)
        if index + 1 < len(segment) and segment[index] == "-" and segment[index + 1] != "]":
            high, index = _bracket_char(segment, index + 1)
            if high is None:
                return _NEVER, len(segment)
            if high >= low:
                items.append(f"{_class_char(low)}-{_class_char(high)}")
        else:
            items.append(_class_char(low))
    index += 1
    if not items:
        # `[]` or a class of empty ranges matches nothing; negated, anything but `/`.
        return ("[^/]" if negate else _NEVER), index
    # A bracket never matches the `/` between path segments, even one that lists it.
    return ("[^/" if negate else "(?!/)[") + "".join(items) + "]", index


def _bracket_char(segment: str, index: int) -> tuple[str | None, int]:
    """One (possibly escaped) character inside a bracket and the index after it."""
    if segment[index] == "\\":
        index += 1
        if index >= len(segment):
            return None, index
    return segment[index], index + 1


def _class_char(char: str) -> str:
    return char if char.isalnum() else "\\" + char
