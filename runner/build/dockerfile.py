"""The Dockerfile parser: text to a list of `Instruction`s, with file:line on every error.

What it understands (Docker's reference, "Dockerfile reference", and BuildKit's parser):
- parser directives at the very top: `# escape=` (`\\` or `` ` ``), `# syntax=` (accepted and
  ignored: kapal has one frontend; a note is recorded), `# check=` (ignored);
- comments (`#` at the start of a line, also inside continued instructions), blank lines;
- line continuations with the escape character at the end of a line, unless that escape character
  is itself escaped (`\\\\` at the end of a line is a literal backslash, as in BuildKit);
- heredocs on RUN, COPY and ADD (also under ONBUILD): `<<EOF`, `<< EOF`, `<<-EOF` (leading tabs
  stripped), quoted or partly quoted delimiters (`<<'EOF'`, `<<"one two"`, `<<EO"F"`: no
  expansion), `<<$EOF` (a literal `$EOF`), `3<<EOF`, several on one line, bodies read in order
  after the instruction line; a here-string `<<<word` is not a heredoc;
- exec (JSON array of strings) and shell forms; a JSON array holding anything but strings is an
  error, as in BuildKit, while text that is not JSON at all is shell form;
- instruction flags (`--from=`, `--chown=`, `--chmod=`, `--link`, `--platform=`, `--network=`,
  HEALTHCHECK's `--interval=`...), separated by any whitespace, quotes removed from their values,
  and `--` ending them;
- ENV and LABEL pairs: `KEY=VALUE ...`, or the legacy `KEY VALUE` form (a note asks for `=`);
  `ENV KEY` without a value is an error.

Decisions: `RUN --security` is rejected with a DockerfileError (steps run unprivileged); `RUN
--mount`, `COPY --parents`, `--exclude` and `ADD --checksum` are read here and carried out by the
builder (`runner.build.mounts`, `runner.build.copying`); `COPY --link` is accepted and means
nothing more than COPY (kapal's COPY layers never depend on the parent's content). Variable
expansion happens later, in the builder, because its values depend on the build state (see
`runner.build.expansion`).
"""

from __future__ import annotations

import json
import re
from dataclasses import field
from pathlib import Path

from pipeline.records import record
from runner.errors import DockerfileError

__all__ = [
    "Dockerfile",
    "Heredoc",
    "HeredocOpener",
    "Instruction",
    "heredoc_openers",
    "json_array",
    "parse_dockerfile",
    "parse_heredoc",
    "read_dockerfile",
    "split_flags",
]

_DIRECTIVE = re.compile(r"^#\s*([A-Za-z][A-Za-z0-9_-]*)\s*=\s*(.*?)\s*$")
# BuildKit's heredoc word: optional file descriptor, `<<`, optional `-`, spaces, the delimiter.
_HEREDOC = re.compile(r"(\d*)<<(-?)[ \t\n\f\r]*([^<]*)")
# BuildKit splits `KEY VALUE` (legacy ENV/LABEL) on this, not on every Unicode space.
_PAIR_SPLIT = re.compile(r"[\t\v\f\r ]+")
_SPACE = " \t\n\v\f\r\x85\xa0"

KNOWN = [
    "ADD",
    "ARG",
    "CMD",
    "COPY",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "FROM",
    "HEALTHCHECK",
    "LABEL",
    "MAINTAINER",
    "ONBUILD",
    "RUN",
    "SHELL",
    "STOPSIGNAL",
    "USER",
    "VOLUME",
    "WORKDIR",
]
# flag name -> takes a value
_FLAGS: dict[str, dict[str, bool]] = {
    "FROM": {"platform": True},
    "RUN": {"network": True, "mount": True},
    "COPY": {
        "from": True,
        "chown": True,
        "chmod": True,
        "link": False,
        "parents": False,
        "exclude": True,
    },
    "ADD": {
        "chown": True,
        "chmod": True,
        "link": False,
        "checksum": True,
        "exclude": True,
        "keep-git-dir": False,
    },
    "HEALTHCHECK": {
        "interval": True,
        "timeout": True,
        "start-period": True,
        "start-interval": True,
        "retries": True,
    },
}
_REJECTED = {
    ("RUN", "security"): "RUN --security is not supported; steps run unprivileged",
}
_HEREDOC_INSTRUCTIONS = {"RUN", "COPY", "ADD"}
_JSON_INSTRUCTIONS = {"RUN", "CMD", "ENTRYPOINT", "SHELL", "COPY", "ADD", "VOLUME"}


@record
class Heredoc:
    """One here-document: its delimiter name, body, and whether `$VAR` expands in it."""

    name: str
    content: str
    expand: bool
    fd: int | None = None


@record
class Instruction:
    """One Dockerfile instruction after continuation joining, flags split off.

    `args` is the text after the keyword and flags. `exec_form` is the parsed JSON array when the
    instruction was written in exec form. `heredocs` holds the bodies the line refers to.
    """

    keyword: str
    args: str
    line: int
    source: str
    flags: tuple[tuple[str, str | None], ...] = ()
    exec_form: tuple[str, ...] | None = None
    heredocs: tuple[Heredoc, ...] = ()
    end_line: int = 0

    def flag(self, name: str) -> str | None:
        """Value of the flag `--name` (the last one wins), None when absent."""
        value: str | None = None
        for key, val in self.flags:
            if key == name:
                value = val if val is not None else "true"
        return value

    def has_flag(self, name: str) -> bool:
        """Whether `--name` was given."""
        return any(key == name for key, _ in self.flags)

    def __str__(self) -> str:
        return self.source


@record
class Dockerfile:
    """A parsed Dockerfile: its instructions, escape character and notes about ignored input."""

    path: str
    instructions: tuple[Instruction, ...]
    escape: str = "\\"
    notes: tuple[str, ...] = field(default=())

    def error(self, inst: Instruction, message: str) -> DockerfileError:
        """A DockerfileError naming this file, the instruction's line and the instruction."""
        return DockerfileError(f"{self.path}:{inst.line}: {inst.keyword}: {message}")


def read_dockerfile(path: Path) -> Dockerfile:
    """Read and parse the Dockerfile at `path`."""
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise DockerfileError(
            f"{path}: no such Dockerfile; pass -f PATH or add a Dockerfile to the context"
        ) from None
    except UnicodeDecodeError as exc:
        raise DockerfileError(f"{path}: not UTF-8 text ({exc.reason}); save it as UTF-8") from None
    except OSError as exc:
        raise DockerfileError(f"{path}: cannot read the Dockerfile: {exc.strerror}") from None
    return parse_dockerfile(text, str(path))


def parse_dockerfile(text: str, path: str = "Dockerfile") -> Dockerfile:
    """Parse Dockerfile `text`; `path` is used in error messages only."""
    return _Parser(text, path).parse()


class _Parser:
    def __init__(self, text: str, path: str) -> None:
        if text.startswith("\ufeff"):
            text = text[1:]
        self.lines = text.replace("\r\n", "\n").split("\n")
        self.path = path
        self.escape = "\\"
        self.notes: list[str] = []

    def fail(self, line: int, message: str) -> DockerfileError:
        return DockerfileError(f"{self.path}:{line}: {message}")

    def parse(self) -> Dockerfile:
        index = self.directives()
        out: list[Instruction] = []
        while index < len(self.lines):
            raw = self.lines[index]
            stripped = raw.strip()
            if not stripped or stripped.startswith("#"):
                index += 1
                continue
            inst, index = self.instruction(index)
            if inst is not None:
                out.append(inst)
        if not out:
            raise self.fail(1, "the Dockerfile has no instructions; start it with FROM")
        return Dockerfile(self.path, tuple(out), self.escape, tuple(self.notes))

    def directives(self) -> int:
        seen: set[str] = set()
        index = 0
        for index, raw in enumerate(self.lines):
            match = _DIRECTIVE.match(raw.strip()) if raw.strip().startswith("#") else None
            if not match:
                return index
            name, value = match.group(1).lower(), match.group(2)
            if name in seen:
                raise self.fail(index + 1, f"the '{name}' directive is given twice; keep one")
            seen.add(name)
            if name == "escape":
                if value not in ("\\", "`"):
                    raise self.fail(
                        index + 1, f"invalid escape character {value!r}: use \\ or ` (a backtick)"
                    )
                self.escape = value
            elif name == "syntax":
                self.notes.append(
                    f"{self.path}:{index + 1}: '# syntax={value}' ignored: kapal has its own "
                    "Dockerfile frontend"
                )
            elif name != "check":
                return index  # an unknown directive is a comment, and ends the directives
        return len(self.lines)

    def continued(self, raw: str) -> tuple[str, bool]:
        """Strip a trailing escape character (continuation); say whether there was one.

        As in BuildKit, the escape character continues the line only when it stands alone or
        follows another character: a doubled escape at the end is an escaped escape.
        """
        body = raw.rstrip(" \t")
        if body.endswith(self.escape) and (len(body) == 1 or body[-2] != self.escape):
            return body[:-1], True
        return raw, False

    def instruction(self, index: int) -> tuple[Instruction | None, int]:
        start = index
        text, more = self.continued(self.lines[index].lstrip())
        index += 1
        while more:
            if index >= len(self.lines):
                break  # Docker accepts a continuation on the last line
            raw = self.lines[index]
            index += 1
            if not raw.strip():
                continue
            if raw.lstrip().startswith("#"):
                continue
            piece, more = self.continued(raw)
            text += piece
        text = text.strip()
        parts = text.split(None, 1)
        if not parts:
            return None, index  # only continuations: nothing to do, as in Docker
        keyword = parts[0].upper()
        after = parts[1] if len(parts) > 1 else ""
        line = start + 1
        if keyword not in KNOWN:
            raise self.fail(
                line,
                f"unknown instruction '{parts[0]}'; the instructions are {', '.join(KNOWN)}",
            )
        words, rest = split_flags(after)
        flags = self.flags(keyword, words, line)
        exec_form = self.exec_form(keyword, rest, line)
        heredocs: list[Heredoc] = []
        if self.may_hold_heredocs(keyword, rest, exec_form):
            heredocs, index = self.heredocs(after, index, line)
        source = f"{keyword} {after}".strip()
        inst = Instruction(
            keyword,
            rest,
            line,
            source,
            tuple(flags),
            exec_form,
            tuple(heredocs),
            index,
        )
        self.check(inst)
        return inst, index

    def may_hold_heredocs(self, keyword: str, rest: str, exec_form: tuple[str, ...] | None) -> bool:
        """Whether BuildKit reads heredocs here: shell-form RUN, COPY, ADD, also under ONBUILD."""
        if "<<" not in rest:
            return False
        if keyword != "ONBUILD":
            return keyword in _HEREDOC_INSTRUCTIONS and exec_form is None
        inner = rest.split(None, 1)
        if inner[0].upper() not in _HEREDOC_INSTRUCTIONS:
            return False
        _, inner_args = split_flags(inner[1] if len(inner) > 1 else "")
        try:
            return _json_form(inner_args) is None
        except _NotStrings:
            return False  # check_trigger reports it

    def flags(self, keyword: str, words: list[str], line: int) -> list[tuple[str, str | None]]:
        flags: list[tuple[str, str | None]] = []
        allowed = _FLAGS.get(keyword, {})
        for word in words:
            name, eq, value = word[2:].partition("=")
            name = name.lower()
            if (keyword, name) in _REJECTED:
                raise self.fail(line, _REJECTED[(keyword, name)])
            if name not in allowed:
                known = ", ".join(f"--{f}" for f in allowed) or "none"
                raise self.fail(
                    line, f"unknown flag --{name} for {keyword} (flags {keyword} takes: {known})"
                )
            if allowed[name] and not eq:
                raise self.fail(line, f"flag --{name} needs a value: --{name}=VALUE")
            if not allowed[name] and eq and value.lower() not in ("true", "false"):
                raise self.fail(line, f"flag --{name} takes no value (or =true, =false)")
            flags.append((name, value if eq else None))
        return flags

    def exec_form(self, keyword: str, rest: str, line: int) -> tuple[str, ...] | None:
        """The exec form of `rest` for instructions that have one; errors for bad arrays."""
        if keyword not in _JSON_INSTRUCTIONS:
            return None
        try:
            form = _json_form(rest)
        except _NotStrings as exc:
            raise self.fail(
                line,
                f"{keyword}: in exec form every element must be a JSON string, not {exc}; "
                'quote it (["echo", "1"]) or write the shell form without brackets',
            ) from None
        if form is None and keyword in ("COPY", "ADD"):
            bad = _leading_array_problem(rest)
            if bad:
                raise self.fail(
                    line,
                    f"{keyword}: in exec form every element must be a JSON string, not {bad}; "
                    f'write {keyword} ["source", ..., "destination"]',
                )
        if form is None and keyword == "SHELL":
            raise self.fail(
                line, 'SHELL needs a JSON array of strings, e.g. SHELL ["/bin/bash", "-c"]'
            )
        return form

    def heredocs(self, text: str, index: int, line: int) -> tuple[list[Heredoc], int]:
        out: list[Heredoc] = []
        for opener in heredoc_openers(text):
            body: list[str] = []
            while True:
                if index >= len(self.lines):
                    raise self.fail(
                        line,
                        f"heredoc <<{opener.name} is not terminated: add a line "
                        f"'{opener.name}' after its body",
                    )
                raw = self.lines[index]
                index += 1
                check = raw.lstrip("\t") if opener.strip_tabs else raw
                if check == opener.name:
                    break
                body.append(check)
            content = "\n".join(body) + "\n" if body else ""
            out.append(Heredoc(opener.name, content, opener.expand, opener.fd))
        return out, index

    def check(self, inst: Instruction) -> None:
        kw, args = inst.keyword, inst.args.strip()
        needs_args = ("FROM", "WORKDIR", "USER", "STOPSIGNAL", "ENV", "LABEL", "ARG", "EXPOSE")
        if kw in needs_args and not args:
            raise self.fail(inst.line, f"{kw} needs an argument")
        if kw in ("RUN", "CMD", "ENTRYPOINT", "VOLUME", "ONBUILD", "HEALTHCHECK") and not args:
            raise self.fail(inst.line, f"{kw} needs an argument")
        if kw in ("COPY", "ADD") and not inst.heredocs:
            words = list(inst.exec_form) if inst.exec_form is not None else args.split()
            if len(words) < 2:
                raise self.fail(inst.line, f"{kw} needs at least a source and a destination")
        if kw in ("ENV", "LABEL"):
            self.pairs(kw, args, inst.line, note=True)
        if kw == "FROM":
            words = args.split()
            if len(words) not in (1, 3) or (len(words) == 3 and words[1].lower() != "as"):
                raise self.fail(inst.line, "FROM takes 'IMAGE' or 'IMAGE AS NAME'")
        if kw == "ONBUILD":
            self.check_trigger(args, inst.line)
        if kw == "HEALTHCHECK":
            head = args.split(None, 1)[0]
            if head.upper() not in ("NONE", "CMD"):
                raise self.fail(inst.line, "HEALTHCHECK takes 'NONE' or 'CMD command'")
            if head.upper() == "CMD":
                self.exec_form("CMD", args[len(head) :].strip(), inst.line)

    def check_trigger(self, text: str, line: int) -> None:
        """Check an ONBUILD trigger as BuildKit's parser does: its keyword, JSON and pairs."""
        parts = text.split(None, 1)
        inner = parts[0].upper()
        if inner in ("ONBUILD", "FROM", "MAINTAINER"):
            raise self.fail(line, f"ONBUILD {inner} is not allowed")
        if inner not in KNOWN:
            raise self.fail(line, f"ONBUILD: unknown instruction '{inner}'")
        _, rest = split_flags(parts[1] if len(parts) > 1 else "")
        self.exec_form(inner, rest, line)
        if inner in ("ENV", "LABEL") and rest:
            self.pairs(inner, rest, line, note=False)

    def pairs(self, keyword: str, args: str, line: int, *, note: bool) -> None:
        """Check ENV/LABEL pairs as BuildKit's parser does; note the legacy `KEY VALUE` form."""
        words = _parse_words(args, self.escape)
        if not words:
            return
        if "=" not in words[0]:
            parts = _PAIR_SPLIT.split(args.strip(), maxsplit=1)
            if len(parts) < 2:
                raise self.fail(
                    line, f"{keyword} {parts[0]} has no value: write {keyword} {parts[0]}=VALUE"
                )
            if note:
                self.notes.append(
                    f"{self.path}:{line}: {keyword} {parts[0]} {parts[1]}: the legacy form "
                    f"without '=' is deprecated; write {keyword} {parts[0]}=VALUE"
                )
            return
        for word in words:
            if "=" not in word:
                raise self.fail(
                    line,
                    f"{keyword}: '{word}' is not KEY=VALUE; quote values that contain spaces",
                )


class _NotStrings(ValueError):
    """A JSON array holds something other than strings (the message shows the element)."""


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")  # Go's encoding/json refuses NaN and Infinity


def _go_string(text: str) -> str:
    # Go's decoder turns lone surrogates into U+FFFD; Python would keep them, unencodable
    return "".join("\ufffd" if "\ud800" <= ch <= "\udfff" else ch for ch in text)


def _json_form(text: str) -> tuple[str, ...] | None:
    """The JSON array of strings `text` holds, None when it is not JSON (then: shell form).

    Raises `_NotStrings` when `text` is a JSON array with another element (BuildKit's error).
    """
    text = text.lstrip(_SPACE)
    if not text.startswith("["):
        return None
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        return None
    if not isinstance(value, list):
        return None
    for item in value:
        if not isinstance(item, str):
            raise _NotStrings(_shown(item))
    return tuple(_go_string(item) for item in value)


def _leading_array_problem(text: str) -> str:
    """For `["a", 1] /x`: the non-string element of a JSON array followed by more words."""
    text = text.lstrip(_SPACE)
    if not text.startswith("["):
        return ""
    try:
        value, _ = json.JSONDecoder(parse_constant=_reject_constant).raw_decode(text)
    except (ValueError, RecursionError):
        return ""
    if isinstance(value, list):
        for item in value:
            if not isinstance(item, str):
                return _shown(item)
    return ""


def _shown(item: object) -> str:
    try:
        shown = json.dumps(item)
    except (ValueError, RecursionError):  # pragma: no cover - parsed JSON always dumps
        shown = type(item).__name__
    return shown if len(shown) <= 40 else shown[:39] + "…"


def json_array(text: str) -> list[str] | None:
    """The JSON array of strings in `text`, or None when it is not one (then: shell form)."""
    try:
        form = _json_form(text)
    except _NotStrings:
        return None
    return list(form) if form is not None else None


def _is_space(ch: str) -> bool:
    return ch in _SPACE or (ch > "\xff" and ch.isspace())


def split_flags(text: str) -> tuple[list[str], str]:
    """Split leading `--flag[=value]` words off `text`, as BuildKit does.

    Flags end at the first word not starting with `--`, or after a lone `--`. Any whitespace
    separates words; quotes group and are removed; a backslash makes the next character literal.
    """
    words: list[str] = []
    i, n = 0, len(text)
    while True:
        while i < n and _is_space(text[i]):
            i += 1
        if i >= n:
            return words, ""
        if not text.startswith("--", i):
            return words, text[i:].strip()
        word: list[str] = []
        quote, quoted = "", False
        while i < n:
            ch = text[i]
            i += 1
            if quote:
                if ch == quote:
                    quote = ""
                    continue
            elif _is_space(ch):
                break
            elif ch in "'\"":
                quote, quoted = ch, True
                continue
            if ch == "\\":
                if i >= n:
                    break  # a backslash at the very end is dropped
                ch = text[i]
                i += 1
            word.append(ch)
        else:
            joined = "".join(word)
            if joined != "--" and (quoted or joined):
                words.append(joined)
            return words, ""
        joined = "".join(word)
        if joined == "--":
            return words, text[i:].strip()
        if quoted or joined:
            words.append(joined)


def _parse_words(text: str, escape: str) -> list[str]:
    """Split on unquoted whitespace keeping quotes and escapes (BuildKit's parseWords)."""
    words: list[str] = []
    cur: list[str] = []
    quote, quoted = "", False
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        i += 1
        if quote:
            if ch == quote:
                quote = ""
            elif ch == escape and quote != "'":
                if i >= n:
                    continue
                cur.append(ch)
                ch = text[i]
                i += 1
            cur.append(ch)
            continue
        if _is_space(ch):
            if cur or quoted:
                words.append("".join(cur))
            cur, quoted = [], False
            continue
        if ch in "'\"":
            quote, quoted = ch, True
        elif ch == escape:
            if i >= n:
                continue
            cur.append(ch)
            ch = text[i]
            i += 1
        cur.append(ch)
    if cur or quoted:
        words.append("".join(cur))
    return words


@record
class HeredocOpener:
    """A heredoc opener on an instruction line: `<<[-]NAME`, with its fd and expansion rule."""

    name: str
    strip_tabs: bool
    expand: bool
    fd: int | None


class _Unterminated(ValueError):
    """A quote is left open in a word being lexed."""


def _shell_words(text: str, *, raw_quotes: bool, raw_escapes: bool) -> list[str]:
    """Split `text` into words as BuildKit's shell lexer does with no variables set.

    Unset variables stay as written (`$EOF`); `<<` swallows the whitespace after it (and so does
    `<<-`) so that `<< EOF` is one word. Raises `_Unterminated` for an open quote.
    """
    words: list[str] = []
    cur: list[str] = []
    in_word = False
    i, n = 0, len(text)

    def flush() -> None:
        nonlocal cur, in_word
        if cur:
            words.append("".join(cur))
        cur, in_word = [], False

    while i < n:
        ch = text[i]
        if ch == "'":
            end = text.find("'", i + 1)
            if end < 0:
                raise _Unterminated("'")
            cur.append(text[i : end + 1] if raw_quotes else text[i + 1 : end])
            in_word = True
            i = end + 1
        elif ch == '"':
            i += 1
            piece: list[str] = ['"'] if raw_quotes else []
            while True:
                if i >= n:
                    raise _Unterminated('"')
                ch = text[i]
                i += 1
                if ch == '"':
                    break
                if ch == "\\" and i < n and (raw_escapes or text[i] in '"$\\'):
                    piece.append(ch + text[i] if raw_escapes else text[i])
                    i += 1
                    continue
                piece.append(ch)
            if raw_quotes:
                piece.append('"')
            cur.append("".join(piece))
            in_word = True
        elif ch == "$":
            j = i + 1
            if j < n and text[j] == "{":
                close = text.find("}", j)
                j = n if close < 0 else close + 1
            else:
                while j < n and (text[j].isalnum() or text[j] == "_"):
                    j += 1
            for part in text[i:j]:  # an unexpanded variable is re-split like a value
                if _is_space(part):
                    flush()
                else:
                    cur.append(part)
                    in_word = True
            i = j
        elif ch == "<" and text.startswith("<<", i):
            j = i + 2
            if j < n and text[j] == "-" and j + 1 < n and _is_space(text[j + 1]):
                j += 1
            while j < n and text[j] in " \t":
                j += 1
            cur.append(text[i:j])
            in_word = True
            i = j
        elif ch == "\\":
            i += 1
            if i >= n:
                break
            cur.append(ch + text[i] if raw_escapes else text[i])
            in_word = True
            i += 1
        elif _is_space(ch):
            if in_word:
                flush()
            i += 1
        else:
            cur.append(ch)
            in_word = True
            i += 1
    flush()
    return words


def parse_heredoc(word: str) -> HeredocOpener | None:
    """The heredoc opener `word` is (`<<EOF`, `<<-'EOF'`, `3<< EOF`), None when it is not one."""
    match = _HEREDOC.fullmatch(word)
    if not match or not match.group(3):
        return None
    rest = match.group(3)
    try:
        cooked = _shell_words(rest, raw_quotes=False, raw_escapes=False)
        raw = _shell_words(rest, raw_quotes=True, raw_escapes=False)
    except _Unterminated:
        return None
    if len(cooked) != 1 or len(raw) != 1:
        return None
    name = cooked[0]
    quotes = sum(name.count(q) for q in "'\"")
    raw_quotes = sum(raw[0].count(q) for q in "'\"")
    fd = int(match.group(1)) if match.group(1) else None
    return HeredocOpener(name, match.group(2) == "-", quotes == raw_quotes, fd)


def heredoc_openers(text: str) -> list[HeredocOpener]:
    """The heredoc openers among the words of an instruction line, in order (BuildKit's rule)."""
    try:
        words = _shell_words(text, raw_quotes=True, raw_escapes=True)
    except _Unterminated:
        return []  # BuildKit finds no heredoc on a line its lexer cannot split
    found = [parse_heredoc(word) for word in words]
    return [opener for opener in found if opener is not None]
