"""GitLab `/regex/flags` literals: RE2 syntax read the way RE2 reads it, or refused clearly.

Reference: RE2's syntax page (github.com/google/re2/wiki/Syntax), which GitLab's job_rules.md
names as the syntax of `=~` / `!~`, and GitLab's Pattern lexeme for the literal's shape.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
import re2
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from pipeline.errors import ExpressionError
from pipeline.regex import compile_regex, split_ref_pattern, split_regex_literal


@pytest.mark.parametrize(
    ("literal", "expected"),
    [
        ("/^main$/", ("^main$", "")),
        ("/release/i", ("release", "i")),
        ("/a.b/msU", ("a.b", "msU")),
        (r"/feature\/x/", ("feature/x", "")),
        ("/./", None),  # GitLab: single-character regexes are not supported
        ("//", None),
        ("/ab\\/", None),  # the last character before the slash may not be a backslash
        ("/ab/x", None),  # unknown flag
        ("ab", None),
        ("/ab", None),
    ],
)
def test_literal_shape(literal: str, expected: tuple[str, str] | None) -> None:
    """The shape GitLab's lexer accepts: two or more characters, `\\/` for a slash, flags ismU."""
    assert split_regex_literal(literal) == expected


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("/a/", ("a", "")),  # one character is a regex in only/except (RubySyntax), unlike if:
        ("//", ("", "")),
        ("/release/i", ("release", "i")),
        (r"/feature\/x/", (r"feature\/x", "")),  # RE2 reads `\/` as a slash
        ("/a/b/", ("a/b", "")),
        ("/ab/x", None),
        ("main", None),
        ("/ab", None),
    ],
)
def test_ref_pattern_shape(ref: str, expected: tuple[str, str] | None) -> None:
    """The shape GitLab's RubySyntax gives only/except refs: anything between the outer slashes."""
    assert split_ref_pattern(ref) == expected


@pytest.mark.parametrize(
    ("body", "flags", "text", "expected"),
    [
        ("^main$", "", "main\n", False),  # RE2 `$` without m: end of text only
        ("^a$", "m", "x\na\ny", True),
        ("a{,3}", "", "a{,3}", True),  # `{,n}` is a literal in RE2
        ("a{2}", "", "aa", True),
        ("x{", "", "x{", True),
        (r"\x{263a}", "", "\u263a", True),
        (r"\x41", "", "A", True),
        (r"\101", "", "A", True),  # octal
        (r"\Qa.b*\E", "", "a.b*", True),
        (r"\Qa.b*\E", "", "aXbb", False),
        (r"x\z", "", "x\n", False),
        ("[[:alpha:]]+[[:digit:]]", "", "ab1", True),
        ("[[:punct:]]", "", "a", False),
        ("(?<v>[0-9]+)", "", "v12", True),
        ("(?P<v>[0-9]+)", "", "v12", True),
        ("(?i)MAIN", "", "main", True),
        ("(?i:MA)IN", "", "maIN", True),
        ("(?i:MA)IN", "", "main", False),
        (r"\d+", "", "\u0663", False),  # RE2's \d is ASCII only
        (r"\s", "", "\v", False),  # RE2's \s is [\t\n\f\r ]
        ("[a-c&&x]", "", "&", True),  # no set operations: & is a character
        ("[]a]", "", "]", True),
        ("[^]a]", "", "]", False),
        (r"[\d_]", "", "_", True),
        ("a.c", "", "a\nc", False),
        ("a.c", "s", "a\nc", True),
        ("fo+", "i", "FOO", True),
        ("#x", "", "#x", True),
    ],
)
def test_matching(body: str, flags: str, text: str, expected: bool) -> None:
    """Each pattern matches (search) as RE2 would."""
    assert compile_regex(body, flags).search(text) is expected


@pytest.mark.parametrize(
    ("body", "text", "expected"),
    [
        ("a(?i)b", "aB", True),
        ("a(?i)b", "Ab", False),
        ("(?i)a(?-i)b", "Ab", True),
        ("(?i)a(?-i)b", "AB", False),
        ("^a(?i)b|c$", "xC", True),  # the flag lasts across `|` to the end of the group
        ("(x(?i)y)z", "xYz", True),
        ("(x(?i)y)z", "xYZ", False),  # ...and stops where the group ends
        ("(?m:^b$)", "a\nb\nc", True),
        ("^b$", "a\nb\nc", False),
        ("\\B", "", True),  # Python's own \B never matches the empty string
        ("^*a", "a", True),  # RE2 repeats assertions
        ("a\\b+", "a b", True),
    ],
)
def test_inline_flags_and_assertions(body: str, text: str, expected: bool) -> None:
    """RE2's mid-pattern `(?i)`, scoped flags and repeated assertions, read as RE2 reads them."""
    assert compile_regex(body).search(text) is expected


def test_ungreedy_flag_swaps_greediness() -> None:
    """RE2 `U`: `x*` is lazy and `x*?` greedy."""
    assert compile_regex("a.+b", "U").compiled.match("a1b2b").group(0) == "a1b"  # type: ignore[union-attr]
    assert compile_regex("a.+?b", "U").compiled.match("a1b2b").group(0) == "a1b2b"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("body", "column", "fragment"),
    [
        ("a(?=b)", 2, "lookahead"),
        ("(?<!a)b", 1, "lookbehind"),
        (r"(a)\1", 4, "backreferences"),
        ("(?P=n)", 1, "backreferences"),
        ("(?>a)", 1, "atomic"),
        ("(?#c)", 1, "comments"),
        (r"\pL", 1, "Unicode classes"),
        (r"\p{Greek}", 1, "Unicode classes"),
        ("a{1001}", 2, "above 1000"),
        ("a{3,2}", 2, "maximum is below the minimum"),
        ("a*+", 3, "possessive"),
        ("[a", 1, "missing ]"),
        ("[b-a]", 3, "end is before its start"),
        ("[[:nope:]]", 2, "unknown POSIX class"),
        ("[[:^alpha:]]", 2, "negated POSIX"),
        (r"\k", 1, "unknown escape"),
        (r"\x4", 1, "two hex digits"),
        (r"\x{110000}", 1, "beyond the last Unicode"),
        ("\\", 1, "trailing backslash"),
        ("(ab", 0, "unterminated subpattern"),
        ("ab)", 0, "unbalanced parenthesis"),
        ("*a", 1, "nothing to repeat"),
        (r"a\E", 2, "without a \\Q"),
        ("\\é", 1, "unknown escape"),
        ("[[:x-y:]]", 2, "unknown POSIX class"),
    ],
)
def test_refused_with_column(body: str, column: int, fragment: str) -> None:
    """What RE2 (or kapal's translation) does not accept is an ExpressionError naming it; the
    column is inside the pattern, or 0 when only the whole pattern can be blamed."""
    with pytest.raises(ExpressionError) as caught:
        compile_regex(body)
    assert fragment in caught.value.message
    assert caught.value.column == column
    assert caught.value.expression == body


def test_unknown_flag_refused() -> None:
    """Flags are i, m, s, U only."""
    with pytest.raises(ExpressionError, match="unknown regular expression flag 'x'"):
        compile_regex("ab", "x")


def test_str_shows_the_literal() -> None:
    """A compiled regex prints as it was written."""
    assert str(compile_regex("^v[0-9]+", "i")) == "/^v[0-9]+/i"


# -- RE2 itself as the peer --------------------------------------------------------------------

_RE2_PIECES = st.sampled_from(
    ["a", "b", "A", ".", "*", "+", "?", "{2}", "{1,2}", "{,2}", "{", "}", "(", ")", "(?:",
     "(?i)", "(?-i)", "(?i:", "(?s:", "(?m:", "(?U)", "|", "^", "$", "\\", "\\d", "\\w", "\\s",
     "\\S", "\\b", "\\B", "\\A", "\\z", "\\Z", "\\x41", "\\x{61}", "\\Q", "\\E", "\\1", "\\0",
     "\\12", "\\n", "\\.", "\\/", "[", "]", "[^", "[a-c]", "[[:alpha:]]", "[[:digit:]]", "[:",
     ":]", "-", "&&", "~", "#", " ", "(?P<n>", "(?<n>", "(?=", "(?!", "(?#", "*?", "+?", "??",
     "*+", "\\k", "\\_", "\\é", "[\\d]", "[\\s-]", "[a\\]]", "[]a]", "\\[", "\\-", "[\\x41-\\x43]",
     "[^\\n]", "[b-a]", "[a-\\d]"]
)  # fmt: skip
_TEXTS = st.text("abAB1_ -/.\n[]{}*", max_size=8)


def _re2_accepts(pattern: str) -> Any:
    options = re2.Options()
    options.log_errors = False
    try:
        return re2.compile(pattern, options)
    except re2.error:
        return None


@pytest.mark.slow
@settings(max_examples=600, deadline=None)
@given(
    st.lists(_RE2_PIECES, min_size=1, max_size=6).map("".join),
    st.sampled_from(["", "i", "m", "s", "ms", "is"]),
    st.lists(_TEXTS, min_size=1, max_size=4),
)
def test_agrees_with_re2(body: str, flags: str, texts: list[str]) -> None:
    """Random patterns: kapal refuses what RE2 refuses, refuses what RE2 accepts only with a
    "not supported by kapal" message, and otherwise finds a match exactly where RE2 does.

    Texts are ASCII: RE2 checks `\\b`/`\\B` between the bytes of a UTF-8 character, a
    difference that only shows inside non-ASCII text. Quantifiers right after a flag group
    (`a*(?i)??`) are left out: RE2 accepts even a second quantifier there.
    """
    assume(not re.search(r"\(\?[imsU-]*\)[*+?{]", body))
    reference = _re2_accepts(f"(?{flags}){body}" if flags else body)
    try:
        ours = compile_regex(body, flags)
    except ExpressionError as exc:
        assert reference is None or "kapal" in exc.message, exc.message
        return
    assert reference is not None, f"RE2 refuses /{body}/{flags}, kapal accepted it"
    for text in texts:
        assert ours.search(text) is (reference.search(text) is not None), (body, flags, text)


@pytest.mark.timeout(60)
def test_hostile_pattern_on_long_text_completes() -> None:
    """A nested quantifier against a long commit message answers instead of backtracking
    forever (a backtracking engine needs ~2^100000 steps here; the timeout catches a hang)."""
    pattern = compile_regex("^(a+)+$")
    assert pattern.search("a" * 100_000 + "!") is False
    assert pattern.search("a" * 100_000) is True
