"""GitLab's `/regex/flags` literals: RE2 syntax checked and translated to Python's `re`.

GitLab evaluates `=~`, `!~` and `only: refs: /regex/` with RE2. Python's `re` reads most of
RE2's syntax the same way; where the two differ this module translates (`$` is end of text,
`\\z`, `\\Q...\\E`, `\\x{...}`, `[[:alpha:]]`, `(?<name>...)`, a literal `{`, mid-pattern `(?i)`,
the `U` flag, repeated assertions like `^*`, `\\B` in empty text) or refuses with a message naming
the construct (backreferences, lookaround: RE2 has none; `\\pL`, `[[:^alpha:]]`, `\\C`: kapal has
none yet), so a pattern never silently means something else. `\\w`, `\\d`, `\\s`, `\\b` are
ASCII as in RE2; case folding under `i` is ASCII only (RE2 folds Unicode).
Matching itself runs on RE2 (google-re2): the translation validates and explains, RE2 searches.
A commit message or branch name is attacker-controlled on a server, and a backtracking engine
would let `/^(a+)+$/` stall a worker; RE2 matches in linear time.
tests/pipeline/test_regex.py compares the answers with RE2 itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from pipeline.errors import ExpressionError
from pipeline.records import record

__all__ = [
    "RE2_MAX_REPEAT",
    "Regex",
    "compile_regex",
    "split_ref_pattern",
    "split_regex_literal",
]

RE2_MAX_REPEAT = 1000
"""RE2 rejects a counted repetition above this (`a{1001}`)."""

# The shape GitLab's lexer accepts: at least two characters between the slashes, the last of
# them not a backslash, a slash inside written as `\/`, then flags from [ismU].
_LITERAL = re.compile(r"/((?:[^/]|\\/)+[^\\])/([ismU]*)")
# The shape an `only:`/`except:` ref is a regex in (GitLab's RubySyntax, not the `if:` lexer):
# anything between the first and the last slash, so `/a/` is a regex and `//` matches every ref.
_REF_PATTERN = re.compile(r"/(.*)/([ismU]*)")

_POSIX_CLASSES = {
    "alnum": "0-9A-Za-z",
    "alpha": "A-Za-z",
    "ascii": "\\x00-\\x7f",
    "blank": "\\t ",
    "cntrl": "\\x00-\\x1f\\x7f",
    "digit": "0-9",
    "graph": "!-~",
    "lower": "a-z",
    "print": " -~",
    "punct": "!-/:-@\\[-`{-~",
    "space": "\\t\\n\\v\\f\\r ",
    "upper": "A-Z",
    "word": "0-9A-Za-z_",
    "xdigit": "0-9A-Fa-f",
}
_SIMPLE_ESCAPES = {"a": "\a", "f": "\f", "t": "\t", "n": "\n", "r": "\r", "v": "\v"}
_CLASS_SHORTHANDS = {
    "d": "0-9",
    "w": "0-9A-Za-z_",
    "s": "\\t\\n\\f\\r ",
    "D": "\\D",
    "W": "\\W",
    "S": "\\S",
}
_RE2_FLAGS = set("imsU")


@record
class Regex:
    """A compiled GitLab regular expression: the text as written and its RE2 program."""

    body: str
    flags: str
    compiled: Any = field(compare=False, repr=False)  # re2's compiled pattern (untyped library)

    def search(self, text: str) -> bool:
        """True when the pattern matches anywhere in `text` (GitLab's `scan(...).present?`)."""
        return self.compiled.search(text) is not None

    def __str__(self) -> str:
        return f"/{self.body}/{self.flags}"


def split_regex_literal(text: str) -> tuple[str, str] | None:
    """Split `/body/flags` into (body with `\\/` unescaped, flags), or None if not that shape."""
    match = _LITERAL.fullmatch(text)
    if match is None:
        return None
    return match.group(1).replace("\\/", "/"), match.group(2)


def split_ref_pattern(ref: str) -> tuple[str, str] | None:
    """Split an `only`/`except` ref written `/body/flags` into (body, flags), else None.

    Unlike `if:` expressions, refs take any body, even one character; `\\/` stays in the body,
    where RE2 reads it as a slash.
    """
    match = _REF_PATTERN.fullmatch(ref)
    return None if match is None else (match.group(1), match.group(2))


def compile_regex(body: str, flags: str = "") -> Regex:
    """Compile an RE2 pattern body with GitLab flags (i, m, s, U) for Python.

    Raises `ExpressionError` whose `column` is the 1-based position in `body` of the problem,
    or 0 when only the pattern as a whole can be blamed.
    """
    unknown = sorted(set(flags) - _RE2_FLAGS)
    if unknown:
        raise ExpressionError(
            f"unknown regular expression flag {unknown[0]!r}: use i, m, s or U",
            expression=body,
            column=len(body) + 1,
        )
    translated = _Translator(body, flags).translate()
    py_flags = re.ASCII
    if "i" in flags:
        py_flags |= re.IGNORECASE
    if "m" in flags:
        py_flags |= re.MULTILINE
    if "s" in flags:
        py_flags |= re.DOTALL
    try:
        re.compile(translated, py_flags)  # validation: its errors describe the user's pattern
    except re.error as exc:
        # The translation keeps the structure, so `re`'s complaint (unbalanced parenthesis,
        # nothing to repeat, bad range...) describes the pattern as written.
        raise ExpressionError(
            f"invalid regular expression /{body}/: {exc.msg}",
            expression=body,
            column=0,
        ) from None
    except (OverflowError, RecursionError):
        raise ExpressionError(
            f"regular expression /{body}/ is too large or too deeply nested",
            expression=body,
            column=0,
        ) from None
    import re2  # on the first pattern: a file without one is checked without loading RE2

    options = re2.Options()
    options.log_errors = False
    try:
        program = re2.compile(f"(?{flags}){body}" if flags else body, options)
    except re2.error as exc:
        raise ExpressionError(
            f"invalid regular expression /{body}/: {_re2_message(exc)}",
            expression=body,
            column=0,
        ) from None
    return Regex(body=body, flags=flags, compiled=program)


def _re2_message(exc: Exception) -> str:
    """RE2's complaint as text (the library gives it as bytes)."""
    detail = exc.args[0] if exc.args else exc
    return detail.decode(errors="replace") if isinstance(detail, bytes) else str(detail)


@dataclass
class _Scope:
    """The flags in force inside one group, and the inline-flag groups kapal opened in it."""

    multiline: bool
    ungreedy: bool
    inline_openers: list[str] = field(default_factory=list)


_ASSERTIONS = frozenset({"^", "$", "\\Z", "\\A", "\\b"})


class _Translator:
    """One pass over an RE2 pattern, writing the equivalent Python pattern.

    RE2's `(?i)` changes the flags until the end of the enclosing group, across `|`; Python
    only has scoped groups `(?i:...)`, so each such change opens one, closed (and reopened
    after each `|`) where the RE2 group ends.
    """

    def __init__(self, body: str, flags: str) -> None:
        self.src = body
        self.pos = 0
        self.out: list[str] = []
        self.scopes = [_Scope(multiline="m" in flags, ungreedy="U" in flags)]
        # True right after `(?i)` was written, until the next item.
        self.just_opened_flags = False

    @property
    def scope(self) -> _Scope:
        return self.scopes[-1]

    def fail(self, message: str, at: int | None = None) -> ExpressionError:
        """An error naming the regular expression and the column of the problem."""
        column = (self.pos if at is None else at) + 1
        return ExpressionError(
            f"invalid regular expression /{self.src}/ at column {column} of the pattern: {message}",
            expression=self.src,
            column=column,
        )

    def translate(self) -> str:
        """The Python pattern, or ExpressionError for what RE2 or kapal does not accept."""
        src = self.src
        while self.pos < len(src):
            char = src[self.pos]
            opened_before = self.just_opened_flags
            if char == "\\":
                self.escape()
            elif char == "[":
                self.char_class()
            elif char == "(":
                self.group_open()
            elif char == ")":
                self.group_close()
            elif char == "|":
                openers = self.scope.inline_openers
                self.out.append(")" * len(openers) + "|" + "".join(openers))
                self.pos += 1
            elif char == "$":
                self.out.append("$" if self.scope.multiline else "\\Z")
                self.pos += 1
            elif char in "*+?":
                self.pos += 1
                self.quantifier_suffix(char)
            elif char == "{":
                self.brace()
            else:
                self.out.append(re.escape(char) if char in "#& ~\t\n\r\v\f" else char)
                self.pos += 1
            if opened_before:
                self.just_opened_flags = False
        self.out.append(")" * len(self.scope.inline_openers))
        return "".join(self.out)

    def group_close(self) -> None:
        """`)`: close the inline-flag groups of this group, then the group itself."""
        self.out.append(")" * len(self.scope.inline_openers) + ")")
        if len(self.scopes) > 1:
            self.scopes.pop()
        self.pos += 1

    def quantifier_suffix(self, quantifier: str) -> None:
        """Emit a quantifier, applying `U` (ungreedy) and rejecting possessive forms."""
        start = self.pos - len(quantifier)
        lazy = self.src.startswith("?", self.pos)
        if lazy:
            self.pos += 1
        elif self.src.startswith("+", self.pos):
            raise self.fail("possessive quantifiers (`*+`, `++`, `?+`) are not RE2 syntax")
        opener = None
        if self.out and self.out[-1] in self.scope.inline_openers and self.just_opened_flags:
            # RE2 lets a quantifier follow `(?i)`: it repeats the atom before the flags.
            opener = self.out.pop()
        if not self.out:
            raise self.fail("nothing to repeat before this quantifier", start)
        if self.out and self.out[-1] in _ASSERTIONS:
            # RE2 repeats an assertion (`^*`, `\\b+`); Python wants it in a group first.
            self.out[-1] = f"(?:{self.out[-1]})"
        greedy = lazy if self.scope.ungreedy else not lazy
        self.out.append(quantifier if greedy else quantifier + "?")
        if opener is not None:
            self.out.append(opener)

    def brace(self) -> None:
        """A counted repetition `{n}`, `{n,}`, `{n,m}`; any other `{` is a literal as in RE2."""
        match = re.compile(r"\{(\d+)(,(\d*))?\}").match(self.src, self.pos)
        if match is None:
            self.out.append("\\{")
            self.pos += 1
            return
        low = int(match.group(1))
        high = int(match.group(3)) if match.group(3) else low
        if max(low, high) > RE2_MAX_REPEAT:
            raise self.fail(f"a counted repetition above {RE2_MAX_REPEAT} is not allowed by RE2")
        if match.group(3) and high < low:
            raise self.fail(f"bad repetition {{{low},{high}}}: the maximum is below the minimum")
        self.pos = match.end()
        self.quantifier_suffix(match.group(0))

    def group_open(self) -> None:
        """`(`, `(?:`, `(?P<name>`, `(?<name>`, `(?flags)`, `(?flags:`; reject the rest."""
        src, start = self.src, self.pos
        outer = self.scope
        if not src.startswith("(?", start):
            self.scopes.append(_Scope(outer.multiline, outer.ungreedy))
            self.out.append("(")
            self.pos += 1
            return
        rest = src[start + 2 :]
        named = re.match(r"P?<([A-Za-z_][A-Za-z0-9_]*)>", rest)
        if named:
            self.scopes.append(_Scope(outer.multiline, outer.ungreedy))
            self.out.append(f"(?P<{named.group(1)}>")
            self.pos = start + 2 + named.end()
            return
        if rest.startswith(("=", "!", "<=", "<!")):
            raise self.fail("lookahead and lookbehind are not supported by RE2", start)
        if rest.startswith("P="):
            raise self.fail("backreferences are not supported by RE2", start)
        if rest.startswith(">"):
            raise self.fail("atomic groups are not supported by RE2", start)
        if rest.startswith("#"):
            raise self.fail("comments `(?#...)` are not supported by RE2", start)
        flag_group = re.match(r"([imsU]*)(?:-([imsU]*))?([:)])", rest)
        if flag_group is None:
            raise self.fail("unknown group syntax after `(?`: RE2 knows i, m, s and U", start)
        on, off, end = flag_group.group(1), flag_group.group(2) or "", flag_group.group(3)
        self.pos = start + 2 + flag_group.end()
        multiline = (outer.multiline or "m" in on) and "m" not in off
        ungreedy = (outer.ungreedy or "U" in on) and "U" not in off
        # U is applied by kapal itself (quantifiers swapped); Python gets the other flags.
        py_on, py_off = on.replace("U", ""), off.replace("U", "")
        opener = f"(?{py_on}-{py_off}:" if py_off else f"(?{py_on}:"
        if end == ":":
            self.scopes.append(_Scope(multiline, ungreedy))
            self.out.append(opener)
        else:
            outer.multiline, outer.ungreedy = multiline, ungreedy
            outer.inline_openers.append(opener)
            self.out.append(opener)
            self.just_opened_flags = True

    def escape(self) -> None:
        """A backslash escape outside a character class."""
        src, start = self.src, self.pos
        if start + 1 >= len(src):
            raise self.fail("trailing backslash", start)
        char = src[start + 1]
        self.pos = start + 2
        if char == "B":
            # Python's \B never matches in the empty string; RE2's does.
            self.out.append("(?:\\B|\\A\\Z)")
        elif char in "dDwWbA":
            self.out.append("\\" + char)
        elif char == "s":
            self.out.append("[\\t\\n\\f\\r ]")
        elif char == "S":
            self.out.append("[^\\t\\n\\f\\r ]")
        elif char == "z":
            self.out.append("\\Z")
        elif char == "Q":
            end = src.find("\\E", self.pos)
            literal = src[self.pos :] if end < 0 else src[self.pos : end]
            self.out.append(re.escape(literal))
            self.pos = len(src) if end < 0 else end + 2
        elif char == "E":
            raise self.fail("\\E without a \\Q before it", start)
        elif char == "C":
            raise self.fail("\\C (any byte) is not supported by kapal", start)
        else:
            self.out.append(re.escape(self.escaped_char(char, start)))

    def escaped_char(self, char: str, start: int) -> str:
        """The one character an escape stands for (`\\n`, `\\x41`, `\\101`, `\\.`...)."""
        if char in _SIMPLE_ESCAPES:
            return _SIMPLE_ESCAPES[char]
        if char == "x":
            return self.hex_escape(start)
        if char.isdigit():
            return self.octal_escape(char, start)
        if char in "pP":
            raise self.fail(
                "Unicode classes like \\pL or \\p{Greek} are not supported by kapal yet; "
                "use an explicit class such as [A-Za-z]",
                start,
            )
        if not char.isascii() or char.isalnum():
            raise self.fail(f"unknown escape \\{char}", start)
        return char

    def hex_escape(self, start: int) -> str:
        """The character of `\\xhh` or `\\x{h...}`."""
        src = self.src
        if src.startswith("{", self.pos):
            end = src.find("}", self.pos)
            digits = src[self.pos + 1 : end] if end > 0 else ""
            if not digits or not re.fullmatch(r"[0-9A-Fa-f]{1,6}", digits):
                raise self.fail("bad \\x{...} escape: write 1 to 6 hex digits in braces", start)
            self.pos = end + 1
        else:
            digits = src[self.pos : self.pos + 2]
            if not re.fullmatch(r"[0-9A-Fa-f]{2}", digits):
                raise self.fail("bad \\x escape: write two hex digits, like \\x40", start)
            self.pos += 2
        code = int(digits, 16)
        if code > 0x10FFFF:
            raise self.fail("\\x{...} escape beyond the last Unicode code point", start)
        return chr(code)

    def octal_escape(self, first: str, start: int) -> str:
        """`\\0`, `\\12`, `\\123` are octal; `\\1` to `\\9` alone would be backreferences."""
        digits = re.match(r"[0-7]{0,2}", self.src[self.pos :])
        tail = digits.group(0) if digits else ""
        if first == "0" or (first in "1234567" and tail):
            self.pos += len(tail)
            return chr(int(first + tail, 8))
        raise self.fail("backreferences like \\1 are not supported by RE2", start)

    def char_class(self) -> None:
        """A bracket expression, rebuilt item by item so Python reads it exactly as RE2 does."""
        src, start = self.src, self.pos
        self.pos += 1
        parts = ["["]
        if src.startswith("^", self.pos):
            parts.append("^")
            self.pos += 1
        first = True
        while True:
            if self.pos >= len(src):
                raise self.fail("missing ] to close the character class", start)
            if src[self.pos] == "]" and not first:
                self.pos += 1
                break
            first = False
            if src.startswith("[:", self.pos):
                posix = self.posix_class()
                if posix is not None:
                    parts.append(posix)
                    continue
            low = self.class_atom()
            if isinstance(low, str):
                parts.append(low)
                continue
            if (
                src.startswith("-", self.pos)
                and self.pos + 1 < len(src)
                and src[self.pos + 1] != "]"
            ):
                range_at = self.pos
                self.pos += 1
                high = self.class_atom()
                if isinstance(high, str):
                    raise self.fail("a range cannot end with a class like \\d", range_at)
                if high < low:
                    raise self.fail("bad character range: its end is before its start", range_at)
                parts.append(f"{_class_char(low)}-{_class_char(high)}")
            else:
                parts.append(_class_char(low))
        parts.append("]")
        self.out.append("".join(parts))

    def posix_class(self) -> str | None:
        """`[:alpha:]` inside a class as explicit ranges; None when `[:` starts no such class."""
        src = self.src
        end = src.find(":]", self.pos + 2)
        if end < 0:
            return None
        name = src[self.pos + 2 : end]
        if name.startswith("^") and name[1:] in _POSIX_CLASSES:
            raise self.fail("negated POSIX classes like [:^alpha:] are not supported by kapal")
        if name not in _POSIX_CLASSES:
            # RE2 reads any `[:...:]` in a class as a POSIX class name.
            raise self.fail(f"unknown POSIX class [:{name}:]")
        self.pos = end + 2
        return _POSIX_CLASSES[name]

    def class_atom(self) -> int | str:
        """One item of a class: a code point, or the text of a shorthand like `\\d`."""
        src, start = self.src, self.pos
        char = src[start]
        if char != "\\":
            self.pos += 1
            return ord(char)
        if start + 1 >= len(src):
            raise self.fail("trailing backslash", start)
        escaped = src[start + 1]
        self.pos = start + 2
        if escaped in _CLASS_SHORTHANDS:
            return _CLASS_SHORTHANDS[escaped]
        if escaped in "bzAQE":
            raise self.fail(f"\\{escaped} is not allowed inside a character class", start)
        return ord(self.escaped_char(escaped, start))


def _class_char(code: int) -> str:
    """One character written safely inside a Python character class."""
    char = chr(code)
    if char.isascii() and char.isalnum():
        return char
    if char.isascii() and char.isprintable():
        return "\\" + char
    return f"\\U{code:08x}"
