""" "Did you mean" hints that never propose a name with another meaning.

`keyword_hint` picks among a fixed vocabulary (keywords, `when:` values) by similarity, leaving
out words that differ in a meaningful part (`before_script` for `after_scrpt`).
`name_hint` picks among names the user chose (jobs, templates, stages) only when the difference
looks like a slip of the keyboard: letter case and separators, or one letter changed, added,
dropped or swapped, never a digit (`test1` is not a typo of `test2`, nor `arm64` of `amd64`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

# Keywords that look alike but mean opposite things: never proposed for one another.
_OPPOSITES = (
    ("before_script", "after_script"),
    ("only", "except"),
    ("pull", "push"),
    ("on_success", "on_failure"),
    ("start_in", "start"),
)
_SEPARATORS = re.compile(r"[-_.:/ ]+")


def keyword_hint(word: Any, candidates: Iterable[str]) -> str:
    """` (did you mean 'x'?)` for the closest keyword, or "" when none is close enough."""
    import difflib  # only for a misspelt word: a valid file never loads it

    text = str(word)
    options = sorted(candidates)
    for close in difflib.get_close_matches(text, options, n=3, cutoff=0.6):
        if not _opposite(text, close):
            return f" (did you mean {close!r}?)"
    return ""


def _opposite(word: str, candidate: str) -> bool:
    for first, second in _OPPOSITES:
        for mine, other in ((first, second), (second, first)):
            if candidate == other and _edits(word, mine) < _edits(word, other):
                return True
    return False


def name_hint(word: Any, candidates: Iterable[str]) -> str:
    """` (did you mean 'x'?)` for a name that differs from `word` only by a slip, else ""."""
    text = str(word)
    found = [c for c in sorted(set(candidates)) if c != text and _slip(text, c)]
    return f" (did you mean {found[0]!r}?)" if len(found) == 1 else ""


def _slip(word: str, candidate: str) -> bool:
    if _normal(word) == _normal(candidate):
        return True
    if min(len(word), len(candidate)) < 4 or _edits(word, candidate) != 1:
        return False
    differing = set(word).symmetric_difference(candidate) | _replaced(word, candidate)
    return not any(ch.isdigit() for ch in differing)


def _normal(name: str) -> str:
    return _SEPARATORS.sub("", name.lower())


def _replaced(a: str, b: str) -> set[str]:
    if len(a) != len(b):
        return set()
    return {ch for x, y in zip(a, b, strict=True) if x != y for ch in (x, y)}


def _edits(a: str, b: str) -> int:
    """Damerau-Levenshtein distance (optimal string alignment), capped at 3 for speed."""
    if abs(len(a) - len(b)) > 2:
        return 3
    previous2: list[int] = []
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        current = [i]
        for j, cb in enumerate(b, start=1):
            cost = 0 if ca == cb else 1
            value = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                value = min(value, previous2[j - 2] + 1)
            current.append(value)
        previous2, previous = previous, current
    return min(previous[-1], 3)
