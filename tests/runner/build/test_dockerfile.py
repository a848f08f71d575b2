"""The Dockerfile parser: forms, continuations, directives, heredocs, flags, errors (file:line)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runner.build.dockerfile import parse_dockerfile, read_dockerfile
from runner.errors import DockerfileError


def test_exec_and_shell_forms() -> None:
    df = parse_dockerfile('FROM busybox\nRUN ["echo", "a b"]\nCMD echo hi\nENTRYPOINT [ "sh" ]\n')
    run, cmd, entry = df.instructions[1:]
    assert run.exec_form == ("echo", "a b")
    assert cmd.exec_form is None and cmd.args == "echo hi"
    assert entry.exec_form == ("sh",)


def test_invalid_json_falls_back_to_shell_form() -> None:
    df = parse_dockerfile("FROM busybox\nRUN [not json\n")
    assert df.instructions[1].exec_form is None
    assert df.instructions[1].args == "[not json"


def test_continuations_comments_and_blank_lines_inside() -> None:
    text = "FROM busybox\nRUN echo a \\\n# a comment in the middle\n\n    && echo b\nUSER 1\n"
    df = parse_dockerfile(text)
    run = df.instructions[1]
    assert run.args == "echo a     && echo b"
    assert run.line == 2
    assert df.instructions[2].line == 6


def test_escape_directive_backtick() -> None:
    df = parse_dockerfile("# escape=`\nFROM busybox\nRUN echo a `\n  b\nCOPY a\\b c\\\n")
    assert df.escape == "`"
    assert df.instructions[1].args == "echo a   b"
    assert df.instructions[2].args == "a\\b c\\"


def test_syntax_directive_is_noted_and_ignored() -> None:
    df = parse_dockerfile("# syntax=docker/dockerfile:1.4\nFROM busybox\n")
    assert len(df.notes) == 1 and "syntax=docker/dockerfile:1.4" in df.notes[0]


def test_directive_after_a_comment_is_a_comment() -> None:
    df = parse_dockerfile("# hello\n# escape=`\nFROM busybox\nRUN a \\\n b\n")
    assert df.escape == "\\"
    assert df.instructions[1].args == "a  b"


def test_bad_escape_directive() -> None:
    with pytest.raises(DockerfileError, match=r"Dockerfile:1: invalid escape character"):
        parse_dockerfile("# escape=x\nFROM busybox\n")


def test_heredocs_run_copy_and_several_on_one_line() -> None:
    text = (
        "FROM busybox\n"
        "RUN <<EOF\necho one\necho two\nEOF\n"
        "COPY <<'A' <<B /dir/\n$NOT expanded\nA\n$EXPANDED\nB\n"
        "RUN <<-EOT cat > /x\n\tindented\n\tEOT\n"
        "USER 2\n"
    )
    df = parse_dockerfile(text)
    run, copy, run2, user = df.instructions[1:]
    assert run.heredocs[0].content == "echo one\necho two\n"
    assert [(h.name, h.expand) for h in copy.heredocs] == [("A", False), ("B", True)]
    assert copy.heredocs[0].content == "$NOT expanded\n"
    assert run2.heredocs[0].content == "indented\n"
    assert user.line == 14


def test_unterminated_heredoc_names_line_and_fix() -> None:
    with pytest.raises(DockerfileError, match=r"x/Dockerfile:2: heredoc <<EOF is not terminated"):
        parse_dockerfile("FROM busybox\nRUN <<EOF\necho\n", "x/Dockerfile")


def test_heredoc_inside_quotes_is_not_a_heredoc() -> None:
    df = parse_dockerfile("FROM busybox\nRUN echo '<<EOF'\n")
    assert df.instructions[1].heredocs == ()


def test_flags() -> None:
    df = parse_dockerfile(
        "FROM --platform=linux/amd64 busybox AS b\n"
        "COPY --from=b --chown=1:2 --chmod=0755 --link a /b\n"
        "HEALTHCHECK --interval=5s --retries=3 CMD true\n"
    )
    from_, copy, health = df.instructions
    assert from_.flag("platform") == "linux/amd64"
    assert copy.flag("from") == "b" and copy.flag("chown") == "1:2" and copy.has_flag("link")
    assert copy.args == "a /b"
    assert health.flag("interval") == "5s"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "FROM busybox\nRUN --mount=type=cache,target=/x true\n",
            r":2: RUN --mount is not supported",
        ),
        ("FROM busybox\nCOPY --nope a b\n", r":2: unknown flag --nope for COPY"),
        ("FROM busybox\nCOPY --chown a b\n", r":2: flag --chown needs a value"),
        ("FROM busybox\nFETCH x\n", r":2: unknown instruction 'FETCH'"),
        ("FROM busybox\nSHELL /bin/bash -c\n", r":2: SHELL needs a JSON array"),
        ("FROM busybox\nCOPY onlyone\n", r":2: COPY needs at least a source and a destination"),
        ("FROM busybox AS\n", r":1: FROM takes 'IMAGE' or 'IMAGE AS NAME'"),
        ("FROM busybox\nONBUILD FROM x\n", r":2: ONBUILD FROM is not allowed"),
        ("FROM busybox\nHEALTHCHECK sometimes\n", r":2: HEALTHCHECK takes 'NONE' or 'CMD"),
        ("# just a comment\n\n", r":1: the Dockerfile has no instructions"),
        ("FROM busybox\nWORKDIR\n", r":2: WORKDIR needs an argument"),
    ],
)
def test_errors_name_file_and_line(text: str, message: str) -> None:
    with pytest.raises(DockerfileError, match="^app/Dockerfile" + message):
        parse_dockerfile(text, "app/Dockerfile")


def test_read_dockerfile_missing_and_binary(tmp_path: Path) -> None:
    with pytest.raises(DockerfileError, match="no such Dockerfile; pass -f"):
        read_dockerfile(tmp_path / "Dockerfile")
    bad = tmp_path / "Bad"
    bad.write_bytes(b"FROM \xff\xfe\n")
    with pytest.raises(DockerfileError, match="not UTF-8"):
        read_dockerfile(bad)


def test_crlf_and_bom() -> None:
    df = parse_dockerfile("\ufeffFROM busybox\r\nRUN echo \\\r\n  hi\r\n")
    assert df.instructions[1].args == "echo   hi"


_ALPHABET = st.sampled_from(
    [
        *"FROMRUNCOPYADDENVARG <>-=\\`#'\"[]{}$:/\t\n",
        "FROM ",
        "RUN ",
        "COPY ",
        "<<EOF",
        "EOF\n",
        "--from=",
        "\\\n",
        "# escape=`\n",
        '["a"]',
    ]
)


@settings(max_examples=400, deadline=None)
@given(st.lists(_ALPHABET, max_size=60).map("".join))
def test_fuzz_any_text_parses_or_raises_dockerfile_error(text: str) -> None:
    try:
        df = parse_dockerfile(text)
    except DockerfileError as exc:
        assert str(exc).startswith("Dockerfile:")
    else:
        assert df.instructions


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_fuzz_unicode_text(text: str) -> None:
    try:
        parse_dockerfile(text)
    except DockerfileError as exc:
        assert str(exc).startswith("Dockerfile:")
