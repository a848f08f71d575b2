"""Variable expansion in Dockerfile words, as Docker's builder does it.

Docker expands `$VAR` and `${VAR}` (with the modifiers `:-`, `-`, `:+`, `+`, `:?`, `?`, and
BuildKit's `#`, `##`, `%`, `%%`, `/pattern/replacement`, `//pattern/replacement`) in the
arguments of ADD, COPY, ENV, EXPOSE, FROM, LABEL, STOPSIGNAL, USER, VOLUME, WORKDIR and ONBUILD,
never in RUN, CMD or ENTRYPOINT (the shell does that). Quotes group words and are removed; single
quotes stop expansion; the escape character makes the next character literal.

BuildKit's patterns (its shell lexer, not bash): `*` matches any run, `?` one character, the
escape character makes the next one literal, and everything else (brackets too) is literal. `#`
and `%` strip the shortest match (`##`/`%%` the longest) from the front or back; `/` replaces the
first (longest) match, `//` every match; the second `/` is required (`${A/x/}` deletes an `x`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["Expander", "ExpansionError", "expand_word", "expand_words"]

_NAME_START = re.compile(r"[A-Za-z_]")
_NAME_CHAR = re.compile(r"[A-Za-z0-9_]")
# Docker's special single-character parameters, expanded to nothing in a Dockerfile.
_SPECIAL = set("*#@?-$!0123456789")
# `${A:-${B:-...}}` recurses; a hostile Dockerfile must get an error, not a RecursionError
_MAX_DEPTH = 64


class ExpansionError(ValueError):
    """A word has a malformed or failing `${...}` expression (the caller adds file:line)."""


@dataclass
class Expander:
    """Expand Dockerfile words against `env`, recording which variables were read."""

    env: Mapping[str, str]
    escape: str = "\\"
    used: set[str] = field(default_factory=set)

    def word(self, text: str) -> str:
        """Expand `text` as one word: quotes removed, whitespace kept."""
        return "".join(_Scan(self, text, split=False).run()[0])

    def words(self, text: str) -> list[str]:
        """Expand `text` and split it into words on unquoted whitespace."""
        return _Scan(self, text, split=True).run()

    def lookup(self, name: str) -> str | None:
        """Value of `name`, or None when it is not set; records the read."""
        self.used.add(name)
        return self.env.get(name)


def expand_word(text: str, env: Mapping[str, str], escape: str = "\\") -> str:
    """Expand `text` as a single word (see `Expander.word`)."""
    return Expander(env, escape).word(text)


def expand_words(text: str, env: Mapping[str, str], escape: str = "\\") -> list[str]:
    """Expand `text` and split it into words (see `Expander.words`)."""
    return Expander(env, escape).words(text)


class _Scan:
    """One pass over a word: a tiny state machine over quotes, escapes and `$`."""

    def __init__(self, expander: Expander, text: str, *, split: bool) -> None:
        self.x = expander
        self.text = text
        self.pos = 0
        self.split = split
        self.depth = 0

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def take(self) -> str:
        ch = self.peek()
        self.pos += 1
        return ch

    def run(self) -> list[str]:
        words: list[str] = []
        cur: list[str] = []
        seen = False  # a quoted empty string still makes a word
        while self.pos < len(self.text):
            ch = self.peek()
            if self.split and ch in " \t\r\n":
                self.pos += 1
                if cur or seen:
                    words.append("".join(cur))
                cur, seen = [], False
                continue
            seen = True
            cur.append(self.unquoted_piece(stop=""))
        if cur or seen or not self.split:
            words.append("".join(cur))
        return words

    def unquoted_piece(self, stop: str) -> str:
        """Read one element outside quotes (a char, an escape, a quoted run or a `$`)."""
        ch = self.take()
        if ch == self.x.escape:
            nxt = self.take()
            return nxt if nxt else ch
        if ch == "'":
            return self.single_quoted()
        if ch == '"':
            return self.double_quoted()
        if ch == "$":
            return self.dollar()
        return ch

    def single_quoted(self) -> str:
        out: list[str] = []
        while True:
            if self.pos >= len(self.text):
                raise ExpansionError("unterminated single quote")
            ch = self.take()
            if ch == "'":
                return "".join(out)
            out.append(ch)

    def double_quoted(self) -> str:
        out: list[str] = []
        while True:
            if self.pos >= len(self.text):
                raise ExpansionError("unterminated double quote")
            ch = self.take()
            if ch == '"':
                return "".join(out)
            if ch == self.x.escape:
                nxt = self.peek()
                if nxt in ('"', "$", self.x.escape):
                    out.append(self.take())
                    continue
                out.append(ch)
                continue
            if ch == "$":
                out.append(self.dollar())
                continue
            out.append(ch)

    def dollar(self) -> str:
        ch = self.peek()
        if ch == "{":
            self.pos += 1
            self.depth += 1
            if self.depth > _MAX_DEPTH:
                raise ExpansionError(f"${{...}} nested more than {_MAX_DEPTH} deep; flatten it")
            try:
                return self.braced()
            finally:
                self.depth -= 1
        if ch and _NAME_START.match(ch):
            start = self.pos
            while self.peek() and _NAME_CHAR.match(self.peek()):
                self.pos += 1
            return self.x.lookup(self.text[start : self.pos]) or ""
        if ch and ch in _SPECIAL:
            self.pos += 1
            return ""
        return "$"

    def braced(self) -> str:
        start = self.pos
        if self.peek() and self.peek() in _SPECIAL and self.peek() not in "#-?":
            self.pos += 1
        else:
            while self.peek() and _NAME_CHAR.match(self.peek()):
                self.pos += 1
        name = self.text[start : self.pos]
        if not name:
            raise ExpansionError(f"bad substitution: empty variable name at '${{{self.rest()}'")
        value = self.x.lookup(name) if name[0] not in _SPECIAL else None
        op = self.take()
        if not op:
            raise ExpansionError(f"missing '}}' to close ${{{name}")
        if op == "}":
            return value or ""
        if op == "/":
            return self.replace(name, value or "")
        if op == ":":
            op += self.take()
            if op not in (":-", ":+", ":?"):
                raise ExpansionError(f"unsupported modifier '{op}' in ${{{name}...}}")
        elif op in ("#", "%"):
            # the pattern keeps its escapes: `\*` is a literal star, as in BuildKit
            word = self.until("}", name, raw_escapes=True)
            if word.startswith(op):
                op, word = op + op, word[1:]
            return _trim(value or "", word, op, self.x.escape)
        elif op not in ("-", "+", "?"):
            shown = op or "end of text"
            raise ExpansionError(f"bad substitution in ${{{name}...}}: unexpected {shown!r}")
        word = self.until("}", name)
        empty = value is None or value == ""
        if op == ":-":
            return word if empty else (value or "")
        if op == "-":
            return word if value is None else value
        if op == ":+":
            return "" if empty else word
        if op == "+":
            return "" if value is None else word
        if (op == ":?" and empty) or value is None:
            raise ExpansionError(f"{name}: {word or 'is not set'}")
        return value or ""

    def replace(self, name: str, value: str) -> str:
        """`${NAME/pattern/replacement}` (first match) or `${NAME//pattern/replacement}` (all)."""
        every = self.peek() == "/"
        if every:
            self.pos += 1
        pattern = self.until("/", name, raw_escapes=True)
        replacement = self.until("}", name)
        regex = _pattern_regex(pattern, self.x.escape, greedy=True)
        if not every:
            match = regex.search(value)
            if match is None:
                return value
            return value[: match.start()] + replacement + value[match.end() :]
        out: list[str] = []
        last, previous_end = 0, -1
        for match in regex.finditer(value):
            if match.start() == match.end() == previous_end:
                continue  # like Go, an empty match right after a match is not replaced
            out += [value[last : match.start()], replacement]
            last = previous_end = match.end()
        out.append(value[last:])
        return "".join(out)

    def until(self, stop: str, name: str, *, raw_escapes: bool = False) -> str:
        """Read (and expand) up to the unquoted, unescaped `stop` character; consume it."""
        out: list[str] = []
        while True:
            if self.pos >= len(self.text):
                raise ExpansionError(f"missing '{stop}' in ${{{name}...}}")
            if self.peek() == stop:
                self.pos += 1
                return "".join(out)
            if raw_escapes and self.peek() == self.x.escape:
                self.pos += 1
                out.append(self.x.escape + self.take())
                continue
            out.append(self.unquoted_piece(stop=stop))

    def rest(self) -> str:
        return self.text[self.pos : self.pos + 20]


def _pattern_regex(
    pattern: str, escape: str, *, greedy: bool, anchored: bool = False
) -> re.Pattern[str]:
    """BuildKit's shell pattern: `*` any run, `?` one character, the escape makes the next literal.

    Everything else, brackets included, is literal (BuildKit has no bracket expressions).
    """
    out = ["^"] if anchored else []
    star = ".*" if greedy else ".*?"
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        i += 1
        if ch == "*":
            out.append(star)
        elif ch == "?":
            out.append(".")
        elif ch == escape and i < n:
            out.append(re.escape(pattern[i]))  # `\*`, `\?`, `\/`, `\}`: that character
            i += 1
        else:
            out.append(re.escape(ch))
    return re.compile("".join(out))


def _reverse_pattern(pattern: str, escape: str) -> str:
    """`pattern` backwards, each escape kept in front of the character it escapes."""
    units: list[str] = []
    i = 0
    while i < len(pattern):
        if pattern[i] == escape and i + 1 < len(pattern):
            units.append(pattern[i : i + 2])
            i += 2
        else:
            units.append(pattern[i])
            i += 1
    return "".join(reversed(units))


def _trim(value: str, pattern: str, op: str, escape: str) -> str:
    """Pattern removal: `#`/`##` shortest/longest from the front, `%`/`%%` from the back.

    As BuildKit does it: a regex anchored at the start (lazy stars for the shortest match); the
    back is trimmed by reversing both the value and the pattern.
    """
    greedy = len(op) == 2
    if op.startswith("%"):
        backwards = _reverse_pattern(pattern, escape)
        return _trim(value[::-1], backwards, "#" * len(op), escape)[::-1]
    match = _pattern_regex(pattern, escape, greedy=greedy, anchored=True).match(value)
    return value[match.end() :] if match else value
