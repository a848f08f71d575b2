"""Variable expansion in Dockerfile words, as Docker's reference defines it."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runner.build.expansion import Expander, ExpansionError, expand_word, expand_words

ENV = {
    "A": "apple",
    "EMPTY": "",
    "P": "/usr/local/lib",
    "S": "foobarbaz",
    "V": "1.2.3",
    "IMG": "registry:5000/busybox:latest",
    "BR": "feature/x/y",
    "ODD": "a[b]*c?.d",
}


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
        # BuildKit's documented examples (Dockerfile reference, variable replacement)
        ("${S#f*b}", "arbaz"),
        ("${S##f*b}", "az"),
        ("${S%b*}", "foobar"),
        ("${S%%b*}", "foo"),
        ("${S/ba/fo}", "fooforbaz"),
        ("${S//ba/fo}", "fooforfoz"),
        # more forms people write
        ("${V%.*}", "1.2"),
        ("${V%%.*}", "1"),
        ("${IMG%:*}:stable", "registry:5000/busybox:stable"),
        ("${BR//\\//-}", "feature-x-y"),
        ("${BR/\\//-}", "feature-x/y"),
        ("${S/o*a/_}", "f_z"),  # the longest match of the first occurrence
        ("${S//?/.}", "........."),
        ("${S//*/all}", "all"),  # an empty match right after a match is not replaced
        ("${S/nope/x}", "foobarbaz"),
        ("${S/ba/}", "foorbaz"),  # the second `/` is required; an empty replacement deletes
        ("${S/ba/$A}", "fooapplerbaz"),
        ("${S/#/x}", "foobarbaz"),  # no bash anchors: `#` is a literal character here
        ("${UNSET/a/b}", ""),
        ("${UNSET#a}", ""),
        ("${ODD/[b]/x}", "ax*c?.d"),  # brackets are literal, not a class
        ("${ODD#*\\*}", "c?.d"),  # an escaped star is a literal star
        ("${ODD%\\?*}", "a[b]*c"),
        ("${ODD%%.?}", "a[b]*c?"),
        ("${P#'*/'}", "usr/local/lib"),  # quotes are removed before the pattern is read
        ("${P#$EMPTY}", "/usr/local/lib"),
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
    # with the backtick escape a backslash is an ordinary pattern character
    assert expand_word("${P//\\/x}", {"P": "a\\b"}, escape="`") == "axb"
    assert expand_word("${ODD#*`*}", ENV, escape="`") == "c?.d"


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
        ("${S/ba}", "missing '/'"),
        ("${S//ba", "missing '/'"),
        ("${S/ba/fo", "missing '}'"),
        ("${S:#x}", "unsupported modifier ':#'"),
        ("${S#x", "missing '}'"),
        ('"open', "unterminated double quote"),
    ],
)
def test_errors(text: str, message: str) -> None:
    with pytest.raises(ExpansionError, match=message):
        expand_word(text, ENV)


def test_deep_nesting_is_an_expansion_error_not_a_crash() -> None:
    assert expand_word("${U:-" * 60 + "x" + "}" * 60, ENV) == "x"
    with pytest.raises(ExpansionError, match="nested more than 64 deep"):
        expand_word("${U:-" * 5000 + "x" + "}" * 5000, ENV)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("$AB{}:-+?#%/*[]'\"\\ x")), max_size=30))
def test_fuzz_expansion_returns_or_raises_expansion_error(text: str) -> None:
    try:
        expand_word(text, ENV)
        expand_words(text, ENV)
    except ExpansionError:
        pass
