"""Variable expansion in Dockerfile words, as Docker's builder does it.

Docker expands `$VAR` and `${VAR}` (with the modifiers `:-`, `-`, `:+`, `+`, `:?`, `?`, `#`,
`##`, `%`, `%%`) in the arguments of ADD, COPY, ENV, EXPOSE, FROM, LABEL, STOPSIGNAL, USER, VOLUME,
WORKDIR and ONBUILD, never in RUN, CMD or ENTRYPOINT (the shell does that). Quotes group words
and are removed; single quotes stop expansion; the escape character makes the next character
literal.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["Expander", "ExpansionError", "expand_word", "expand_words"]

_NAME_START = re.compile(r"[A-Za-z_]")
_NAME_CHAR = re.compile(r"[A-Za-z0-9_]")
# Docker's special single-character parameters, expanded to nothing in a Dockerfile.
_SPECIAL = set("*#@?-$!0123456789")


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
            return self.braced()
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
        if op == ":":
            op += self.take()
            if op not in (":-", ":+", ":?"):
                raise ExpansionError(f"unsupported modifier '{op}' in ${{{name}...}}")
        elif op in ("#", "%"):
            if self.peek() == op:
                op += self.take()
        elif op not in ("-", "+", "?"):
            shown = op or "end of text"
            raise ExpansionError(f"bad substitution in ${{{name}...}}: unexpected {shown!r}")
        word = self.until_brace(name)
        empty = value is None or value == ""
        if op == ":-":
            return word if empty else (value or "")
        if op == "-":
            return word if value is None else value
        if op == ":+":
            return "" if empty else word
        if op == "+":
            return "" if value is None else word
        if op in (":?", "?"):
            if (op == ":?" and empty) or value is None:
                raise ExpansionError(f"{name}: {word or 'is not set'}")
            return value or ""
        return _trim(value or "", word, op)

    def until_brace(self, name: str) -> str:
        out: list[str] = []
        while True:
            if self.pos >= len(self.text):
                raise ExpansionError(f"missing '}}' to close ${{{name}")
            if self.peek() == "}":
                self.pos += 1
                return "".join(out)
            out.append(self.unquoted_piece(stop="}"))

    def rest(self) -> str:
        return self.text[self.pos : self.pos + 20]


def _trim(value: str, pattern: str, op: str) -> str:
    """Shell pattern removal: `#`/`##` from the front, `%`/`%%` from the back."""
    n = len(value)
    if op in ("#", "##"):
        cuts = range(0, n + 1) if op == "#" else range(n, -1, -1)
        for i in cuts:
            if fnmatch.fnmatchcase(value[:i], pattern):
                return value[i:]
        return value
    cuts = range(n, -1, -1) if op == "%" else range(0, n + 1)
    for i in cuts:
        if fnmatch.fnmatchcase(value[i:], pattern):
            return value[:i]
    return value
