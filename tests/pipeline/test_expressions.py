"""`rules: if:` expressions, case by case against GitLab's documentation.

Citations are to GitLab's doc/ci/jobs/job_rules.md ("CI/CD variable expressions" and the sections
after it) unless stated; "impl." marks a case where the documentation is silent and GitLab's
expression code (lib/gitlab/ci/pipeline/expression) decides.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.errors import ExpressionError, PipelineError
from pipeline.expressions import Expression, evaluate, parse_expression

VARS = {
    "CI_PIPELINE_SOURCE": "merge_request_event",
    "CI_COMMIT_BRANCH": "main",
    "CI_DEFAULT_BRANCH": "main",
    "CI_COMMIT_TITLE": "Merge branch 'feature' into 'main'",
    "EMPTY": "",
    "VARIABLE": "some value",
    "VARIABLE_1": "x",
    "VARIABLE_2": "x",
    "VARIABLE_3": "y",
    "teststring": "abcde",
    "other": "fghij",
    "pattern": "/^ab.*/",
    "string1": "regex-job1",
    "CI_JOB_NAME": "regex-job1",
    "UPPER": "RELEASE-1",
}


def holds(expression: str, variables: dict[str, str] | None = None) -> bool:
    return evaluate(expression, VARS if variables is None else variables)


# -- comparing with strings and variables ----------------------------------------------------


def test_compare_variable_to_string_with_either_quote() -> None:
    """Doc: `if: $VARIABLE == "some value"`; both single and double quotes are valid."""
    assert holds('$VARIABLE == "some value"')
    assert holds("$VARIABLE == 'some value'")
    assert not holds('$VARIABLE == "other value"')


def test_not_equal_to_string() -> None:
    """Doc: `if: $VARIABLE != "some value"`."""
    assert not holds('$VARIABLE != "some value"')
    assert holds('$VARIABLE != "another"')


def test_string_on_the_left_compares_the_same() -> None:
    """Older docs: `"some value" == $VARIABLE` is correct too (impl.: equality is symmetric)."""
    assert holds('"some value" == $VARIABLE')


def test_pipeline_source_example() -> None:
    """Doc "rules examples": `if: $CI_PIPELINE_SOURCE == "merge_request_event"`."""
    assert holds('$CI_PIPELINE_SOURCE == "merge_request_event"')
    assert not holds('$CI_PIPELINE_SOURCE == "schedule"')


def test_compare_two_variables() -> None:
    """Doc: `if: $VARIABLE_1 == $VARIABLE_2` and `!=`;
    "Common if clauses": `$CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH`."""
    assert holds("$VARIABLE_1 == $VARIABLE_2")
    assert not holds("$VARIABLE_1 != $VARIABLE_2")
    assert holds("$VARIABLE_1 != $VARIABLE_3")
    assert holds("$CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH")


def test_two_undefined_variables_are_equal() -> None:
    """Impl.: both sides evaluate to nil, and nil == nil."""
    assert holds("$UNDEFINED_A == $UNDEFINED_B")
    assert not holds("$UNDEFINED_A == $EMPTY")


def test_strings_are_not_expanded() -> None:
    """Doc (issue 426131 and the lexer): a quoted `"$VAR"` is the literal text `$VAR`."""
    assert not holds('$VARIABLE == "$VARIABLE"')
    assert holds('$LITERAL == "$VARIABLE"', {"LITERAL": "$VARIABLE"})
    assert not holds('"${ENVIRONMENT}" == "production"', {"ENVIRONMENT": "production"})


def test_braced_variable_names_are_refused_as_gitlab_does() -> None:
    """GitLab's lexer takes `$NAME` only (Lexeme::Variable PATTERN = /\\$(?<name>\\w+)/), so
    `${NAME}` makes the whole expression invalid there: an error pointing at it here."""
    with pytest.raises(ExpressionError) as caught:
        parse_expression('$A == "1" && ${VARIABLE} == "some value"')
    assert caught.value.column == 14
    assert "write $VARIABLE" in caught.value.message


# -- null, empty and bare variables ----------------------------------------------------------


def test_undefined_variable_equals_null() -> None:
    """Doc: `if: $VARIABLE == null` is true when the variable is not defined."""
    assert holds("$UNDEFINED == null")
    assert not holds("$UNDEFINED != null")


def test_defined_variable_is_not_null() -> None:
    """Doc: `if: $VARIABLE != null` checks that the variable is defined."""
    assert holds("$VARIABLE != null")
    assert not holds("$VARIABLE == null")


def test_empty_variable_equals_empty_string_not_null() -> None:
    """Doc: `if: $VARIABLE == ""` checks for defined but empty; an empty variable is not null."""
    assert holds('$EMPTY == ""')
    assert not holds('$EMPTY != ""')
    assert not holds("$EMPTY == null")
    assert holds("$EMPTY != null")


def test_undefined_variable_is_not_the_empty_string() -> None:
    """Doc: `== ""` is for a variable that is *defined* but empty."""
    assert not holds('$UNDEFINED == ""')
    assert holds('$UNDEFINED != ""')


def test_bare_variable_is_true_when_defined_and_not_empty() -> None:
    """Doc: `if: $VARIABLE` checks that the variable is both defined and not empty."""
    assert holds("$VARIABLE")
    assert not holds("$EMPTY")
    assert not holds("$UNDEFINED")


def test_common_bare_clauses() -> None:
    """Doc "Common if clauses": `if: $CI_COMMIT_TAG` (tag pushes) and `if: $CI_COMMIT_BRANCH`."""
    tag_push = {"CI_COMMIT_TAG": "v1.0.0", "CI_PIPELINE_SOURCE": "push"}
    assert evaluate("$CI_COMMIT_TAG", tag_push)
    assert not evaluate("$CI_COMMIT_BRANCH", tag_push)


def test_null_on_its_own_and_strings_on_their_own() -> None:
    """Impl.: a bare value is true when present; `null` never is, a non-empty string always is."""
    assert not holds("null")
    assert holds('"text"')
    assert not holds('""')


# -- regular expressions ---------------------------------------------------------------------


def test_regex_match_and_not_match() -> None:
    """Doc: `if: $VARIABLE =~ /^content.*/` and `if: $VARIABLE !~ /^content.*/`."""
    variables = {"VARIABLE": "content-123"}
    assert evaluate("$VARIABLE =~ /^content.*/", variables)
    assert not evaluate("$VARIABLE !~ /^content.*/", variables)
    assert not evaluate("$VARIABLE =~ /^content.*/", {"VARIABLE": "other"})
    assert evaluate("$VARIABLE !~ /^content.*/", {"VARIABLE": "other"})


def test_regex_is_case_sensitive_unless_i_flag() -> None:
    """Doc: matching is case-sensitive by default; `/pattern/i` makes it case-insensitive."""
    assert not holds("$UPPER =~ /^release/")
    assert holds("$UPPER =~ /^release/i")


def test_regex_matches_a_substring_unless_anchored() -> None:
    """Doc: `/issue/` also matches `severe-issues`; `/^issue-.*$/` is equivalent to `/^issue-/`."""
    branch = {"B": "severe-issues"}
    assert evaluate("$B =~ /issue/", branch)
    assert not evaluate("$B =~ /^issue-.*$/", branch)
    for name in ("issue-1", "issue-"):
        assert evaluate("$B =~ /^issue-.*$/", {"B": name}) == evaluate(
            "$B =~ /^issue-/", {"B": name}
        )


def test_dollar_is_end_of_text_as_in_re2() -> None:
    """RE2 syntax (doc links it): without the m flag `$` is the end of the text, even before a
    trailing newline, where Python's own `$` would also match."""
    assert not evaluate("$M =~ /^main$/", {"M": "main\n"})
    assert evaluate("$M =~ /^main$/m", {"M": "main\nx"})


def test_at_sign_by_hex_code() -> None:
    """Doc: to match `@` write the hex code `\\x40`."""
    assert evaluate(r"$B =~ /^user\x40host$/", {"B": "user@host"})


def test_escaped_slash_inside_regex() -> None:
    """Impl. (Pattern lexeme): `\\/` inside the literal is a slash."""
    assert evaluate(r"$B =~ /^feature\/x/", {"B": "feature/x-1"})


def test_commit_title_example() -> None:
    """Doc "Common if clauses": default branch and a merge commit title."""
    assert holds("$CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH && $CI_COMMIT_TITLE =~ /Merge branch.*/")


def test_regex_stored_in_a_variable() -> None:
    """Doc "Store a regular expression in a variable": `pattern: '/^ab.*/'` and
    `$teststring =~ $pattern` runs for 'abcde' and not for 'fghij'."""
    assert holds("$teststring =~ $pattern")
    assert not holds("$other =~ $pattern")
    assert holds("$other !~ $pattern")


def test_variables_inside_a_regex_are_not_resolved() -> None:
    """Doc: `$CI_JOB_NAME =~ /$string1/` does NOT run: the regex is not expanded."""
    assert not holds("$CI_JOB_NAME =~ /$string1/")
    stored = {"CI_JOB_NAME": "regex-job2", "string2": "regex-job2", "pattern": "/$string2/"}
    assert not evaluate("$CI_JOB_NAME =~ $pattern", stored)


def test_right_side_that_is_not_a_regex_is_a_substring_check() -> None:
    """Doc "Troubleshooting": `"23" =~ "1234"` is true (left is a substring of the right),
    the opposite of `"23" =~ /1234/`."""
    assert holds('"23" =~ "1234"')
    assert not holds('"23" =~ /1234/')
    assert holds('"5" !~ "1234"')


def test_quoted_regex_on_the_right_is_a_regex() -> None:
    """Impl. (Matches: every right side goes through Pattern.build_and_evaluate): a quoted
    `"/^ab/"` is matched as the regular expression it spells."""
    assert holds('$teststring =~ "/^ab/"')
    assert not holds('$teststring =~ "/^b/"')


def test_variable_holding_an_invalid_regex_falls_back_to_substring() -> None:
    """Impl. (Pattern.build_and_evaluate): a value that is not a valid `/regex/` is used as text,
    so no error happens at evaluation time."""
    assert evaluate("$A =~ $P", {"A": "[a", "P": "/x[a/"})
    assert not evaluate("$A =~ $P", {"A": "b", "P": "/x[a/"})


def test_match_against_undefined_variable() -> None:
    """Impl.: an undefined left side is matched as the empty string (`nil.to_s`), so an anchored
    pattern does not match it; an undefined right side makes `=~` false and `!~` true."""
    assert not holds("$UNDEFINED =~ /^v[0-9]+/")
    assert holds("$UNDEFINED !~ /^v[0-9]+/")
    assert holds("$UNDEFINED =~ /^$|x/")
    assert not holds("$VARIABLE =~ $UNDEFINED_PATTERN")
    assert holds("$VARIABLE !~ $UNDEFINED_PATTERN")
    assert not holds("$VARIABLE =~ null")


def test_regex_flags_m_and_s() -> None:
    """RE2 flags after the closing slash: `m` multi-line anchors, `s` lets `.` match a newline."""
    text = {"T": "first\nsecond"}
    assert not evaluate("$T =~ /^second/", text)
    assert evaluate("$T =~ /^second/m", text)
    assert not evaluate("$T =~ /first.second/", text)
    assert evaluate("$T =~ /first.second/s", text)


def test_ungreedy_flag_is_accepted() -> None:
    """GitLab's pattern lexeme accepts the RE2 `U` flag; matching (search) is unaffected."""
    assert evaluate("$T =~ /a.+b/U", {"T": "a1b2b"})


def test_re2_syntax_python_reads_differently() -> None:
    """RE2 syntax: `{,3}` is a literal, `\\z` is end of text, `[[:digit:]]` a POSIX class,
    `\\Q...\\E` quotes, `(?<name>...)` names a group."""
    assert evaluate("$T =~ /^a{,3}$/", {"T": "a{,3}"})
    assert evaluate(r"$T =~ /x\z/", {"T": "x"})
    assert evaluate("$T =~ /^v[[:digit:]]+$/", {"T": "v12"})
    assert not evaluate(r"$T =~ /\Qa.b\E/", {"T": "axb"})
    assert evaluate("$T =~ /(?<major>[0-9]+)[.]/", {"T": "12.3"})


# -- && || and parentheses -------------------------------------------------------------------


def test_and_or_examples() -> None:
    """Doc "Join variable expressions together": the three `&&` / `||` examples."""
    variables = {"VARIABLE1": "content-1", "VARIABLE2": "something", "VARIABLE3": "y"}
    assert evaluate('$VARIABLE1 =~ /^content.*/ && $VARIABLE2 == "something"', variables)
    assert not evaluate("$VARIABLE1 =~ /^content.*/ && $VARIABLE2 =~ /thing$/ && $NOPE", variables)
    assert evaluate("$VARIABLE1 =~ /^content.*/ && $VARIABLE2 =~ /thing$/ && $VARIABLE3", variables)


def test_and_binds_tighter_than_or() -> None:
    """Doc: precedence follows Ruby, so `&&` evaluates before `||`:
    `$V1 =~ /^content.*/ || $V2 =~ /thing$/ && $V3` is `A || (B && C)`."""
    only_first = {"VARIABLE1": "content"}
    assert evaluate(
        "$VARIABLE1 =~ /^content.*/ || $VARIABLE2 =~ /thing$/ && $VARIABLE3", only_first
    )
    assert not evaluate(
        "($VARIABLE1 =~ /^content.*/ || $VARIABLE2 =~ /thing$/) && $VARIABLE3", only_first
    )
    # Issue 213008's rule: `$f && $CI_JOB_NAME =~ /test*/ || $t` is `($f && ...) || $t`.
    assert evaluate("$f && $CI_JOB_NAME =~ /test*/ || $t", {"t": "t", "CI_JOB_NAME": "x"})


def test_parentheses_examples() -> None:
    """Doc "Complex rules" and "Join variable expressions together": nested parentheses."""
    assert evaluate(
        '($CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH || $CI_COMMIT_BRANCH == "develop")'
        " && $MY_VARIABLE",
        {"CI_COMMIT_BRANCH": "develop", "CI_DEFAULT_BRANCH": "main", "MY_VARIABLE": "1"},
    )
    expression = (
        '$CI_COMMIT_BRANCH == "my-branch" || '
        '(($VARIABLE1 == "thing" || $VARIABLE2 == "thing") && $VARIABLE3)'
    )
    assert evaluate(expression, {"VARIABLE2": "thing", "VARIABLE3": "1"})
    assert not evaluate(expression, {"VARIABLE2": "thing"})
    assert evaluate(expression, {"CI_COMMIT_BRANCH": "my-branch"})


def test_bare_variable_on_the_left_of_or() -> None:
    """Doc: a bare `$a` is true only when defined and not empty; so `$a || $b == '1'` with an
    empty `a` runs through `$b == '1'` (GitLab issue 358775 reports GitLab getting this wrong)."""
    assert evaluate("$a || $b == '1'", {"a": "", "b": "1"})
    assert evaluate("$b == '1' || $a", {"a": "", "b": "1"})
    assert not evaluate("$a && $b == '1'", {"a": "", "b": "1"})


def test_whitespace_is_optional_and_free() -> None:
    """Impl.: the lexer skips whitespace between tokens."""
    assert holds('$VARIABLE=="some value"&&($EMPTY==""||$X)')
    assert holds('  \t$VARIABLE   ==   "some value"  ')


def test_expression_object_reused_and_lists_variables() -> None:
    """A parsed Expression evaluates against several contexts and names what it reads."""
    parsed = parse_expression('$A == "1" || ($B =~ /x./ && $C)')
    assert isinstance(parsed, Expression)
    assert parsed.variable_names == {"A", "B", "C"}
    assert parsed.evaluate({"A": "1"})
    assert not parsed.evaluate({"B": "xy"})
    assert parsed.evaluate({"B": "xy", "C": "on"})
    assert evaluate(parsed, {"A": "1"})


# -- errors with positions -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "column", "fragment"),
    [
        ("", 1, "the expression is empty"),
        ("   ", 1, "the expression is empty"),
        ("$A ==", 6, "expected a value"),
        ('$A = "x"', 4, "use == to compare"),
        ('$A == "x" & $B', 11, "use && to join"),
        ('$A == "x" | $B', 11, "use || to join"),
        ("$A ! $B", 4, "use != or !~"),
        ('$A == "abc', 7, "not closed"),
        ("$A =~ /abc", 7, "not closed: add a /"),
        ("$A =~ /./", 7, "shorter than two characters"),
        ("$A =~ //", 7, "shorter than two characters"),
        ("$A =~ /ab[/", 10, "missing ]"),
        ("$A =~ /(ab/", 7, "unterminated subpattern"),
        ("$A =~ /a(?=b)/", 9, "lookahead"),
        (r"$A =~ /(a)\1/", 11, "backreferences"),
        (r"$A =~ /\pL+/", 8, "Unicode classes"),
        ("$A =~ /a{1001}/", 9, "above 1000"),
        ("$A == /ab/", 4, "use `=~`"),
        ("$A != /ab/", 4, "use `!~`"),
        ("/ab/ =~ $A", 1, "cannot be on the left"),
        ("/ab/", 1, "not a condition"),
        ("($A", 4, "expected `)` to close the `(` at column 1"),
        ("$A)", 3, "no matching `(`"),
        ("()", 2, "expected a value"),
        ("($A) == $B", 6, "parenthesised group cannot be compared"),
        ("$A == $B == $C", 10, "cannot be chained"),
        ("$A $B", 4, "expected && or ||"),
        ("$A &&", 6, "expected a value"),
        ("|| $A", 1, "expected a value"),
        ("$", 1, "variable name"),
        ("${A", 1, "variable name only as $NAME"),
        ("$A == ${B}", 7, "write $B"),
        ("$A == main", 7, "strings are quoted"),
        ("nullable", 1, "unexpected `nullable`"),
        ('$A == "x" && $B ==', 19, "found the end"),
        ("$A\u00a0== 'x'", 3, "U+00A0 is not a plain space"),
        ("$A =~ /ab\\/", 7, "not closed"),
    ],
)
def test_parse_errors_name_the_column(text: str, column: int, fragment: str) -> None:
    """Each mistake is an ExpressionError pointing at the column a person must fix."""
    with pytest.raises(ExpressionError) as caught:
        parse_expression(text)
    assert caught.value.column == column, str(caught.value)
    assert caught.value.expression == text
    assert fragment in str(caught.value)


def test_error_message_quotes_the_expression() -> None:
    """The message says which expression and where: enough to find it in the file."""
    with pytest.raises(ExpressionError, match=r"invalid expression `\$A =` at column 4"):
        parse_expression("$A =")


def test_token_limit() -> None:
    """Impl. (Lexer::MAX_TOKENS): GitLab refuses more than 100 tokens ("Too many tokens!")."""
    within = "$A" + " && $A" * 49  # 99 tokens: a valid expression always has an odd count
    assert parse_expression(within).evaluate({"A": "1"})
    too_long = within + " && $B"  # the 101st token is $B
    with pytest.raises(ExpressionError, match="at most 100 tokens") as caught:
        parse_expression(too_long)
    assert caught.value.column == too_long.rindex("$B") + 1


def test_evaluate_parses_text_and_reports_errors() -> None:
    """`evaluate` given text parses it first: a bad expression is an ExpressionError there too."""
    with pytest.raises(ExpressionError):
        evaluate("$A ==", {})


def test_expression_error_is_a_pipeline_error() -> None:
    """The hierarchy: callers catching PipelineError catch expression problems."""
    assert issubclass(ExpressionError, PipelineError)


# -- property: nothing but ExpressionError ---------------------------------------------------

_PIECES = st.sampled_from(
    [
        "$A", "${B}", "$", "${", "}", '"x"', "'y'", '"', "'", "null", "/ab/", "/a/", "/", "/i",
        "/[a-z]+/i", "/(?=x)/", r"/\1x/", "==", "!=", "=~", "!~", "=", "!", "&&", "||", "&",
        "|", "(", ")", " ", "\t", "\n", "\\", "{", "[", "*", "?", "nul", "$CI_COMMIT_BRANCH",
    ]
)  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.text(max_size=60), st.lists(_PIECES, max_size=25).map("".join)))
def test_any_text_parses_or_raises_expression_error(text: str) -> None:
    """Whatever the text, parse_expression returns an Expression or raises ExpressionError, and
    a parsed expression evaluates to a bool without raising."""
    try:
        parsed = parse_expression(text)
    except ExpressionError as exc:
        assert 1 <= exc.column <= len(text) + 1
        return
    assert isinstance(parsed.evaluate({"A": "a/b", "B": "", "CI_COMMIT_BRANCH": "/ab/"}), bool)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=30), st.text(max_size=30))
def test_any_variable_values_evaluate_without_error(left: str, right: str) -> None:
    """Variable values are data: whatever they hold, evaluation answers True or False."""
    variables = {"L": left, "R": right}
    for text in ("$L =~ $R", "$L !~ $R", "$L == $R", "$L && $R", "$R =~ /a.b/i"):
        assert isinstance(evaluate(text, variables), bool)
