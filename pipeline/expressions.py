"""GitLab's CI/CD variable expressions: `rules: if:`, `workflow: rules: if:`, `only: variables:`.

Grammar (`&&` binds tighter than `||`; comparisons do not chain)::

    expression := and ("||" and)*
    and        := term ("&&" term)*
    term       := "(" expression ")" | value [("==" | "!=" | "=~" | "!~") value]
    value      := $NAME | ${NAME} | "text" | 'text' | null | /regex/flags

Semantics follow GitLab's documentation (doc/ci/jobs/job_rules.md, "CI/CD variable expressions"):
an undefined variable equals `null` and nothing else, so `$UNDEF == null` holds, `$EMPTY == ""`
holds and `$EMPTY == null` does not; a bare value is true when it is defined and not empty; quoted
strings are literal (no variable expansion); the right of `=~`/`!~` may be a `/regex/`, a variable
holding one (`"/^ab.*/"`), or anything else, in which case GitLab checks that the left side is a
substring of it; the left side of a match is the empty string when undefined. Regular expressions
use RE2 syntax (see `pipeline.regex`). Like GitLab, an expression has at most 100 tokens.

Lifecycle: `parse_expression` once per `if:` while validating (errors carry the column), then
`Expression.evaluate` any number of times against each trigger's variables; an `Expression` is
immutable and never raises while evaluating.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import field
from typing import Literal

from pipeline.errors import ExpressionError
from pipeline.records import record
from pipeline.regex import Regex, compile_regex, split_regex_literal

__all__ = [
    "MAX_TOKENS",
    "And",
    "Comparison",
    "Expression",
    "Node",
    "Null",
    "Or",
    "Pattern",
    "StringLiteral",
    "Variable",
    "evaluate",
    "parse_expression",
]

MAX_TOKENS = 100
"""GitLab's lexer refuses expressions longer than this many tokens."""

Operator = Literal["==", "!=", "=~", "!~"]


@record
class Variable:
    """`$NAME` or `${NAME}`: the variable's value, or None when it is not defined."""

    name: str
    column: int


@record
class StringLiteral:
    """A quoted string, taken literally."""

    value: str
    column: int


@record
class Null:
    """The `null` keyword: equal to an undefined variable only."""

    column: int


@record
class Pattern:
    """A `/regex/flags` literal, compiled when parsed."""

    regex: Regex
    column: int


Value = Variable | StringLiteral | Null | Pattern


@record
class Comparison:
    """`left OP right` with one of `==`, `!=`, `=~`, `!~`."""

    operator: Operator
    left: Value
    right: Value


@record
class And:
    """`left && right`."""

    left: Node
    right: Node


@record
class Or:
    """`left || right`."""

    left: Node
    right: Node


Node = Variable | StringLiteral | Null | Comparison | And | Or


@record
class Expression:
    """A parsed expression: its text and syntax tree."""

    text: str
    root: Node = field(repr=False)

    def evaluate(self, variables: Mapping[str, str]) -> bool:
        """Whether the expression holds for these variables (undefined means absent)."""
        return _truth(self.root, variables)

    @property
    def variable_names(self) -> frozenset[str]:
        """The names of the variables the expression reads."""
        return frozenset(_variable_names(self.root))

    def __str__(self) -> str:
        return self.text


def parse_expression(text: str) -> Expression:
    """Parse an expression; raise `ExpressionError` naming the column and what was expected."""
    if not isinstance(text, str):
        raise ExpressionError(
            f"an expression must be a string, not {type(text).__name__}",
            expression=str(text),
        )
    tokens = list(_tokens(text))
    if tokens[0].kind == "end":
        raise ExpressionError(
            'the expression is empty: write a condition such as $CI_COMMIT_BRANCH == "main"',
            expression=text,
            column=1,
        )
    parser = _Parser(text, tokens)
    root = parser.expression()
    parser.expect_end()
    return Expression(text=text, root=root)


def evaluate(expression: str | Expression, variables: Mapping[str, str]) -> bool:
    """Evaluate an expression (parsing it first when given as text) against variables."""
    parsed = parse_expression(expression) if isinstance(expression, str) else expression
    return parsed.evaluate(variables)


# -- lexing ----------------------------------------------------------------------------------

TokenKind = Literal[
    "variable", "string", "null", "regex", "operator", "and", "or", "open", "close", "end"
]

_VARIABLE = re.compile(r"\$(?:\{([A-Za-z0-9_]+)\}|([A-Za-z0-9_]+))")
_REGEX_LITERAL = re.compile(r"/(?:[^/]|\\/)+[^\\]/[ismU]*")
_SYMBOLS: dict[str, TokenKind] = {
    "==": "operator",
    "!=": "operator",
    "=~": "operator",
    "!~": "operator",
    "&&": "and",
    "||": "or",
    "(": "open",
    ")": "close",
}
_DESCRIPTIONS: dict[str, str] = {
    "variable": "a variable",
    "string": "a string",
    "null": "null",
    "regex": "a regular expression",
    "end": "the end of the expression",
}
_OPERATOR_HINTS = {
    "=": "`=` is not an operator: use == to compare or =~ to match a regular expression",
    "!": "`!` is not an operator: use != or !~",
    "&": "`&` is not an operator: use && to join conditions",
    "|": "`|` is not an operator: use || to join conditions",
}
_WHITESPACE = " \t\n\r\f\v"  # Ruby's \s: what GitLab's lexer skips between tokens
_SHORT_REGEX = re.compile(r"/(?:\\/|[^/])?/")
_VALUE_HINT = "a value ($VARIABLE, \"string\", 'string', null or /regex/)"


@record
class _Token:
    kind: TokenKind
    text: str
    column: int
    value: str = ""

    def describe(self) -> str:
        return _DESCRIPTIONS.get(self.kind, f"`{self.text}`")


def _error(text: str, column: int, message: str) -> ExpressionError:
    return ExpressionError(
        f"invalid expression `{text}` at column {column}: {message}",
        expression=text,
        column=column,
    )


def _tokens(text: str) -> Iterator[_Token]:
    """The tokens of `text`, ending with an `end` token."""
    pos, count = 0, 0
    while True:
        while pos < len(text) and text[pos] in _WHITESPACE:
            pos += 1
        column = pos + 1
        if pos >= len(text):
            yield _Token("end", "", column)
            return
        count += 1
        if count > MAX_TOKENS:
            raise _error(
                text,
                column,
                f"GitLab accepts at most {MAX_TOKENS} tokens in an expression; "
                "split the condition over several rules",
            )
        char = text[pos]
        two = text[pos : pos + 2]
        if len(two) == 2 and two in _SYMBOLS:
            yield _Token(_SYMBOLS[two], two, column)
            pos += 2
        elif char in _SYMBOLS:
            yield _Token(_SYMBOLS[char], char, column)
            pos += 1
        elif text.startswith("${", pos):
            # GitLab's lexer reads `$NAME` only; `${NAME}` makes the expression invalid there.
            braced = re.match(r"\$\{(\w*)\}?", text[pos:])
            name = braced[1] if braced and braced[1] else "NAME"
            raise _error(
                text,
                column,
                f"`{braced[0] if braced else '${'}` is not a variable in an expression: GitLab "
                f"reads a variable name only as $NAME, without braces; write ${name}",
            )
        elif char == "$":
            match = _VARIABLE.match(text, pos)
            if match is None:
                raise _error(
                    text, column, "expected a variable name (letters, digits, _) after `$`"
                )
            yield _Token("variable", match.group(0), column, match.group(1) or match.group(2))
            pos = match.end()
        elif char in "\"'":
            end = text.find(char, pos + 1)
            if end < 0:
                raise _error(
                    text, column, f"this string is not closed: add the closing {char} at the end"
                )
            yield _Token("string", text[pos : end + 1], column, text[pos + 1 : end])
            pos = end + 1
        elif char == "/":
            token = _regex_token(text, pos)
            yield token
            pos += len(token.text)
        elif text.startswith("null", pos) and not _is_word(text, pos + 4):
            yield _Token("null", "null", column)
            pos += 4
        elif char in "=!&|":
            raise _error(text, column, _OPERATOR_HINTS[char])
        elif char.isspace():
            raise _error(
                text, column, f"U+{ord(char):04X} is not a plain space: replace it with one"
            )
        else:
            word = re.match(r"\w+|\S", text[pos:])
            found = word.group(0) if word else char
            raise _error(
                text,
                column,
                f"unexpected `{found}`: expected {_VALUE_HINT}, an operator "
                "(==, !=, =~, !~, &&, ||) or a parenthesis; variables start with $ and "
                "strings are quoted",
            )


def _is_word(text: str, pos: int) -> bool:
    return pos < len(text) and (text[pos].isalnum() or text[pos] == "_")


def _regex_token(text: str, pos: int) -> _Token:
    """The `/regex/flags` token at `pos`, its pattern compiled; ExpressionError if invalid."""
    column = pos + 1
    match = _REGEX_LITERAL.match(text, pos)
    if match is None:
        if _SHORT_REGEX.match(text, pos) is None:
            raise _error(text, column, "this regular expression is not closed: add a /")
        raise _error(
            text,
            column,
            "GitLab does not accept a regular expression shorter than two characters "
            "(like /./ or //); write it longer, e.g. /^.+$/",
        )
    literal = match.group(0)
    parts = split_regex_literal(literal)
    if parts is None:  # pragma: no cover - _REGEX_LITERAL and split_regex_literal agree
        raise _error(text, column, "not a regular expression literal")
    try:
        compile_regex(*parts)
    except ExpressionError as exc:
        # The body starts one column after the opening slash.
        raise _error(text, column + exc.column, exc.message) from None
    return _Token("regex", literal, column)


# -- parsing ---------------------------------------------------------------------------------


class _Parser:
    """Recursive descent over the token list (its depth is bounded by MAX_TOKENS)."""

    def __init__(self, text: str, tokens: list[_Token]) -> None:
        self.text = text
        self.tokens = tokens
        self.index = 0

    @property
    def current(self) -> _Token:
        return self.tokens[self.index]

    def advance(self) -> _Token:
        token = self.tokens[self.index]
        if token.kind != "end":
            self.index += 1
        return token

    def fail(self, token: _Token, message: str) -> ExpressionError:
        return _error(self.text, token.column, message)

    def expression(self) -> Node:
        node = self.conjunction()
        while self.current.kind == "or":
            self.advance()
            node = Or(node, self.conjunction())
        return node

    def conjunction(self) -> Node:
        node = self.term()
        while self.current.kind == "and":
            self.advance()
            node = And(node, self.term())
        return node

    def term(self) -> Node:
        token = self.current
        if token.kind == "open":
            self.advance()
            node = self.expression()
            if self.current.kind != "close":
                raise self.fail(
                    self.current,
                    f"expected `)` to close the `(` at column {token.column}, "
                    f"found {self.current.describe()}",
                )
            self.advance()
            following = self.current
            if following.kind == "operator":
                raise self.fail(
                    following,
                    f"a parenthesised group cannot be compared with `{following.text}`; "
                    "compare variables inside the parentheses",
                )
            return node
        left = self.value(after=None)
        if self.current.kind != "operator":
            if isinstance(left, Pattern):
                raise self.fail(
                    token,
                    "a regular expression on its own is not a condition; "
                    "match a variable with it: $VARIABLE =~ /regex/",
                )
            return left
        operator_token = self.advance()
        operator: Operator = operator_token.text  # type: ignore[assignment]
        if isinstance(left, Pattern):
            raise self.fail(
                token,
                f"a regular expression cannot be on the left of `{operator}`; "
                "write $VARIABLE =~ /regex/",
            )
        right = self.value(after=operator_token)
        if isinstance(right, Pattern) and operator in ("==", "!="):
            suggestion = "=~" if operator == "==" else "!~"
            raise self.fail(
                operator_token,
                f"`{operator}` compares strings; use `{suggestion}` to match a regular expression",
            )
        if self.current.kind == "operator":
            raise self.fail(
                self.current,
                f"comparisons cannot be chained; join them with && or ||, "
                f'e.g. $A == "x" && $B {self.current.text} ...',
            )
        return Comparison(operator, left, right)

    def value(self, after: _Token | None) -> Value:
        token = self.advance()
        if token.kind == "variable":
            return Variable(token.value, token.column)
        if token.kind == "string":
            return StringLiteral(token.value, token.column)
        if token.kind == "null":
            return Null(token.column)
        if token.kind == "regex":
            parts = split_regex_literal(token.text)
            assert parts is not None  # the lexer checked the shape
            return Pattern(compile_regex(*parts), token.column)
        where = f" after `{after.text}`" if after is not None else ""
        raise self.fail(token, f"expected {_VALUE_HINT}{where}, found {token.describe()}")

    def expect_end(self) -> None:
        token = self.current
        if token.kind == "end":
            return
        if token.kind == "close":
            raise self.fail(token, "this `)` has no matching `(`")
        raise self.fail(
            token,
            f"expected && or || between conditions, found {token.describe()}",
        )


# -- evaluation ------------------------------------------------------------------------------


def _value(node: Value, variables: Mapping[str, str]) -> str | Regex | None:
    if isinstance(node, Variable):
        return variables.get(node.name)
    if isinstance(node, StringLiteral):
        return node.value
    if isinstance(node, Pattern):
        return node.regex
    return None


def _matches(text: str | None, pattern: str | Regex | None) -> bool | None:
    """GitLab's `=~`: None when there is no pattern at all (undefined or null right side)."""
    if pattern is None:
        return None
    subject = text if isinstance(text, str) else ""
    if isinstance(pattern, str):
        parts = split_regex_literal(pattern)
        if parts is None:
            # Not a /regex/: GitLab scans the right side for the left (a substring check).
            return subject in pattern
        try:
            regex = compile_regex(*parts)
        except ExpressionError:
            return subject in pattern
        return regex.search(subject)
    return pattern.search(subject)


def _truth(node: Node, variables: Mapping[str, str]) -> bool:
    if isinstance(node, Or):
        return _truth(node.left, variables) or _truth(node.right, variables)
    if isinstance(node, And):
        return _truth(node.left, variables) and _truth(node.right, variables)
    if isinstance(node, Comparison):
        left = _value(node.left, variables)
        right = _value(node.right, variables)
        if node.operator == "==":
            return left == right
        if node.operator == "!=":
            return left != right
        matched = _matches(left if isinstance(left, str) else None, right)
        if node.operator == "=~":
            return bool(matched)
        return matched is None or not matched
    value = _value(node, variables)
    return isinstance(value, str) and value != ""


def _variable_names(node: Node | Pattern) -> Iterator[str]:
    if isinstance(node, And | Or | Comparison):
        yield from _variable_names(node.left)
        yield from _variable_names(node.right)
    elif isinstance(node, Variable):
        yield node.name
