"""Variable expansion in Dockerfile words, as Docker's reference defines it."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runner.build.expansion import Expander, ExpansionError, expand_word, expand_words

ENV = {"A": "apple", "EMPTY": "", "P": "/usr/local/lib"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("$A", "apple"),
        ("${A}_x", "apple_x"),
        ("$A_x", ""),  # the name is A_x, which is unset
        ("${UNSET:-dflt}", "dflt"),
        ("${EMPTY:-dflt}", "dflt"),
        ("${EMPTY-dflt}", ""),
        ("${UNSET-dflt}", "dflt"),
        ("${A:-dflt}", "apple"),
        ("${A:+alt}", "alt"),
        ("${EMPTY:+alt}", ""),
        ("${EMPTY+alt}", "alt"),
        ("${UNSET:+alt}", ""),
        ("${UNSET:-$A}", "apple"),
        ("${P#*/}", "usr/local/lib"),
        ("${P##*/}", "lib"),
        ("${P%/*}", "/usr/local"),
        ("${P%%/l*}", "/usr"),
        ("\\$A", "$A"),
        ("'$A'", "$A"),
        ('"$A b"', "apple b"),
        ('"\\$A"', "$A"),
        ("a\\ b", "a b"),
        ("$", "$"),
        ("cost$", "cost$"),
    ],
)
def test_expand_word(text: str, expected: str) -> None:
    assert expand_word(text, ENV) == expected


def test_backtick_escape() -> None:
    assert expand_word("`$A", ENV, escape="`") == "$A"
    assert expand_word("C:\\dir", ENV, escape="`") == "C:\\dir"


def test_words_split_on_unquoted_whitespace() -> None:
    assert expand_words('80/tcp "a b" $A', ENV) == ["80/tcp", "a b", "apple"]
    assert expand_words("''", ENV) == [""]


def test_used_variables_are_recorded() -> None:
    expander = Expander(ENV)
    expander.word("${A}-${UNSET:-x}")
    assert expander.used == {"A", "UNSET"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("${A", "missing '}'"),
        ("${}", "empty variable name"),
        ("${A:x}", "unsupported modifier"),
        ("${UNSET:?must be set}", "UNSET: must be set"),
        ("'open", "unterminated single quote"),
        ('"open', "unterminated double quote"),
    ],
)
def test_errors(text: str, message: str) -> None:
    with pytest.raises(ExpansionError, match=message):
        expand_word(text, ENV)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("$AB{}:-+?#%'\"\\ x")), max_size=30))
def test_fuzz_expansion_returns_or_raises_expansion_error(text: str) -> None:
    try:
        expand_word(text, ENV)
        expand_words(text, ENV)
    except ExpansionError:
        pass
