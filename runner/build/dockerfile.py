"""The Dockerfile parser: text to a list of `Instruction`s, with file:line on every error.

What it understands (Docker's reference, "Dockerfile reference"):
- parser directives at the very top: `# escape=` (`\\` or `` ` ``), `# syntax=` (accepted and
  ignored: kapal has one frontend; a note is recorded), `# check=` (ignored);
- comments (`#` at the start of a line, also inside continued instructions), blank lines;
- line continuations with the escape character at the end of a line;
- heredocs on RUN, COPY and ADD: `<<EOF`, `<<-EOF` (leading tabs stripped), `<<"EOF"`/`<<'EOF'`
  (no expansion), several on one line, bodies read in order after the instruction line;
- exec (JSON array) and shell forms; instruction flags (`--from=`, `--chown=`, `--chmod=`, `--link`,
  `--platform=`, `--network=`, HEALTHCHECK's `--interval=`...).

Decisions: `RUN --mount` and `RUN --security` are rejected with a DockerfileError (kapal runs no
BuildKit mount machinery); `COPY --link` is accepted and means nothing more than COPY (kapal's COPY
layers never depend on the parent's content); `ADD --checksum`, `--keep-git-dir`, `COPY --parents`
and `--exclude` are rejected. Variable expansion happens later, in the builder, because its values
depend on the build state (see `runner.build.expansion`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from runner.errors import DockerfileError

__all__ = [
    "Dockerfile",
    "Heredoc",
    "Instruction",
    "heredoc_markers",
    "json_array",
    "parse_dockerfile",
    "read_dockerfile",
]

_DIRECTIVE = re.compile(r"^#\s*([A-Za-z][A-Za-z0-9_-]*)\s*=\s*(.*?)\s*$")
_HEREDOC = re.compile(r"(\d*)<<(-?)(?:(['\"])([^'\"\s]+)\3|([A-Za-z0-9_.\-]+))")

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
    "RUN": {"network": True},
    "COPY": {"from": True, "chown": True, "chmod": True, "link": False},
    "ADD": {"chown": True, "chmod": True, "link": False},
    "HEALTHCHECK": {
        "interval": True,
        "timeout": True,
        "start-period": True,
        "start-interval": True,
        "retries": True,
    },
}
_REJECTED = {
    ("RUN", "mount"): "RUN --mount is not supported by kapal; copy what the step needs with COPY",
    ("RUN", "security"): "RUN --security is not supported; steps run unprivileged",
    ("ADD", "checksum"): "ADD --checksum is not supported; verify the download in a RUN step",
    ("ADD", "keep-git-dir"): "ADD of git repositories is not supported; clone in a RUN step",
    ("COPY", "parents"): "COPY --parents is not supported; copy each directory explicitly",
    ("COPY", "exclude"): "COPY --exclude is not supported; use .dockerignore",
    ("ADD", "exclude"): "ADD --exclude is not supported; use .dockerignore",
}
_HEREDOC_INSTRUCTIONS = {"RUN", "COPY", "ADD"}
_JSON_INSTRUCTIONS = {"RUN", "CMD", "ENTRYPOINT", "SHELL", "COPY", "ADD", "VOLUME"}


@dataclass(frozen=True)
class Heredoc:
    """One here-document: its delimiter name, body, and whether `$VAR` expands in it."""

    name: str
    content: str
    expand: bool
    fd: int | None = None


@dataclass(frozen=True)
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


@dataclass(frozen=True)
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
        """Strip a trailing escape character (continuation); say whether there was one."""
        body = raw.rstrip(" \t")
        if body.endswith(self.escape):
            return body[: -len(self.escape)], True
        return raw, False

    def instruction(self, index: int) -> tuple[Instruction | None, int]:
        start = index
        text, more = self.continued(self.lines[index])
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
        rest = parts[1] if len(parts) > 1 else ""
        line = start + 1
        if keyword not in KNOWN:
            raise self.fail(
                line,
                f"unknown instruction '{parts[0]}'; the instructions are {', '.join(KNOWN)}",
            )
        flags, rest = self.flags(keyword, rest, line)
        heredocs: list[Heredoc] = []
        if keyword in _HEREDOC_INSTRUCTIONS and "<<" in rest and not rest.lstrip().startswith("["):
            heredocs, index = self.heredocs(rest, index, line)
        exec_form = None
        if keyword in _JSON_INSTRUCTIONS and rest.startswith("["):
            exec_form = json_array(rest)
            if exec_form is None and keyword == "SHELL":
                raise self.fail(
                    line, 'SHELL needs a JSON array of strings, e.g. SHELL ["/bin/bash", "-c"]'
                )
        elif keyword == "SHELL":
            raise self.fail(
                line, 'SHELL needs a JSON array of strings, e.g. SHELL ["/bin/bash", "-c"]'
            )
        source = f"{keyword} {text.split(None, 1)[1] if len(parts) > 1 else ''}".strip()
        inst = Instruction(
            keyword,
            rest,
            line,
            source,
            tuple(flags),
            tuple(exec_form) if exec_form is not None else None,
            tuple(heredocs),
            index,
        )
        self.check(inst)
        return inst, index

    def flags(self, keyword: str, rest: str, line: int) -> tuple[list[tuple[str, str | None]], str]:
        flags: list[tuple[str, str | None]] = []
        allowed = _FLAGS.get(keyword, {})
        while rest.startswith("--"):
            word, _, after = rest.partition(" ")
            word = word.rstrip("\t")
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
                raise self.fail(line, f"flag --{name} takes no value")
            flags.append((name, value if eq else None))
            rest = after.lstrip()
        return flags, rest

    def heredocs(self, rest: str, index: int, line: int) -> tuple[list[Heredoc], int]:
        out: list[Heredoc] = []
        for match in heredoc_markers(rest):
            fd_text, dash, quote, quoted, bare = match
            name = quoted or bare
            body: list[str] = []
            while True:
                if index >= len(self.lines):
                    raise self.fail(
                        line,
                        f"heredoc <<{name} is not terminated: add a line '{name}' after its body",
                    )
                raw = self.lines[index]
                index += 1
                check = raw.lstrip("\t") if dash else raw
                if check == name:
                    break
                body.append(check)
            content = "\n".join(body) + "\n" if body else ""
            out.append(
                Heredoc(name, content, expand=not quote, fd=int(fd_text) if fd_text else None)
            )
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
        if kw == "FROM":
            words = args.split()
            if len(words) not in (1, 3) or (len(words) == 3 and words[1].lower() != "as"):
                raise self.fail(inst.line, "FROM takes 'IMAGE' or 'IMAGE AS NAME'")
        if kw == "ONBUILD":
            inner = args.split(None, 1)[0].upper()
            if inner in ("ONBUILD", "FROM", "MAINTAINER"):
                raise self.fail(inst.line, f"ONBUILD {inner} is not allowed")
            if inner not in KNOWN:
                raise self.fail(inst.line, f"ONBUILD: unknown instruction '{inner}'")
        if kw == "HEALTHCHECK":
            head = args.split(None, 1)[0].upper()
            if head not in ("NONE", "CMD"):
                raise self.fail(inst.line, "HEALTHCHECK takes 'NONE' or 'CMD command'")


def json_array(text: str) -> list[str] | None:
    """The JSON array of strings in `text`, or None when it is not one (then: shell form)."""
    try:
        value = json.loads(text)
    except ValueError:
        return None
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    return None


def heredoc_markers(text: str) -> list[tuple[str, str, str, str, str]]:
    """Heredoc markers in `text` outside quotes: (fd, dash, quote, quoted-name, bare-name)."""
    found: list[tuple[str, str, str, str, str]] = []
    i, quote = 0, ""
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == quote:
                quote = ""
            i += 1
            continue
        if ch in "'\"":
            quote = ch
            i += 1
            continue
        if text.startswith("<<", i) and not text.startswith("<<<", i):
            j = i
            while j > 0 and text[j - 1].isdigit():
                j -= 1
            match = _HEREDOC.match(text, j)
            if match and match.start() == j:
                found.append(
                    (
                        match.group(1),
                        match.group(2),
                        match.group(3) or "",
                        match.group(4) or "",
                        match.group(5) or "",
                    )
                )
                i = match.end()
                continue
        i += 1
    return found
