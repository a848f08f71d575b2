"""The Dockerfile parser: forms, continuations, directives, heredocs, flags, errors (file:line)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runner.build.dockerfile import parse_dockerfile, parse_heredoc, read_dockerfile, split_flags
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
            "FROM busybox\nRUN --security=insecure true\n",
            r":2: RUN --security is not supported",
        ),
        ("FROM busybox\nRUN --mount true\n", r":2: flag --mount needs a value"),
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


# -- BuildKit parity: the parser cases of issue 12 ---------------------------------------------


@pytest.mark.parametrize(
    ("text", "value", "next_line"),
    [
        (
            "FROM b\nENV C trailing\\\\backslash\\\\\nRUN echo next\n",
            "C trailing\\\\backslash\\\\",
            3,
        ),
        ("# escape=`\nFROM b\nENV C path``\nRUN echo next\n", "C path``", 4),
        ("FROM b\nENV C a\\\\ \t\nRUN echo next\n", "C a\\\\", 3),
    ],
)
def test_doubled_escape_at_end_of_line_is_not_a_continuation(
    text: str, value: str, next_line: int
) -> None:
    df = parse_dockerfile(text)
    env, run = df.instructions[1:]
    assert env.args == value
    assert (run.keyword, run.args, run.line) == ("RUN", "echo next", next_line)


def test_single_escape_after_a_character_still_continues() -> None:
    df = parse_dockerfile("FROM b\nRUN echo a\\\\b \\\n  c\n\\\nUSER 1\n")
    run, user = df.instructions[1:]
    assert run.args == "echo a\\\\b   c"
    assert (user.args, user.line) == ("1", 4)  # a line holding only the escape continues too


@pytest.mark.parametrize(
    ("line", "shown"),
    [
        ('CMD [ "echo", [ "nested json" ] ]', '["nested json"]'),
        ('RUN ["echo", 1]', "1"),
        ('ENTRYPOINT ["sh", null]', "null"),
        ('SHELL ["/bin/sh", true]', "true"),
        ('VOLUME ["/data", {"a": 1}]', '{"a": 1}'),
        ('COPY ["a", 1, "/x"]', "1"),
        ('COPY ["a", 1] /x', "1"),
        ("ADD [2] /x", "2"),
        ('HEALTHCHECK --interval=5s CMD ["true", 0]', "0"),
        ('ONBUILD RUN ["echo", ["x"]]', '["x"]'),
    ],
)
def test_exec_form_must_hold_only_strings(line: str, shown: str) -> None:
    with pytest.raises(DockerfileError) as info:
        parse_dockerfile(f"FROM b\n{line}\n", "app/Dockerfile")
    message = str(info.value)
    assert message.startswith("app/Dockerfile:2: ")
    assert f"every element must be a JSON string, not {shown}" in message


@pytest.mark.parametrize(
    "line",
    [
        "RUN [ -f /etc/passwd ] && echo yes",
        "RUN [ 1 ] && true",  # the shell's test command, not JSON with a number
        'RUN ["echo", "a"] extra',
        "CMD [NaN]",  # not JSON for Go's decoder either
        "CMD {}",
    ],
)
def test_text_that_is_not_a_json_array_is_shell_form(line: str) -> None:
    inst = parse_dockerfile(f"FROM b\n{line}\n").instructions[1]
    assert inst.exec_form is None
    assert inst.args == line.split(None, 1)[1]


def test_exec_form_lone_surrogate_becomes_replacement_character() -> None:
    inst = parse_dockerfile('FROM b\nCMD ["\\ud800x"]\n').instructions[1]
    assert inst.exec_form == ("\ufffdx",)


@pytest.mark.parametrize(
    ("line", "flags", "args"),
    [
        ("COPY -- foo /tmp/", (), "foo /tmp/"),
        ("COPY --link -- --not-a-flag /tmp/", (("link", None),), "--not-a-flag /tmp/"),
        ("COPY --from=x\tfoo /tmp/", (("from", "x"),), "foo /tmp/"),
        ("COPY\t--from=x\t\t--link\tfoo\t/tmp/", (("from", "x"), ("link", None)), "foo\t/tmp/"),
        ('COPY --chmod="755" foo /tmp/', (("chmod", "755"),), "foo /tmp/"),
        ("COPY --chown='1:2' foo /tmp/", (("chown", "1:2"),), "foo /tmp/"),
        ('COPY --chown="a b":c foo /x', (("chown", "a b:c"),), "foo /x"),
        ("COPY --from=st\\ age foo /x", (("from", "st age"),), "foo /x"),
        ("COPY --link=false foo /x", (("link", "false"),), "foo /x"),
    ],
)
def test_flags_as_buildkit_splits_them(
    line: str, flags: tuple[tuple[str, str | None], ...], args: str
) -> None:
    inst = parse_dockerfile(f"FROM b\n{line}\n").instructions[1]
    assert (inst.flags, inst.args) == (flags, args)


def test_dash_dash_alone_leaves_no_arguments() -> None:
    with pytest.raises(DockerfileError, match=r":2: COPY needs at least a source"):
        parse_dockerfile("FROM b\nCOPY --\n")


@pytest.mark.parametrize("keyword", ["LABEL", "ENV"])
def test_legacy_key_value_form_is_accepted_with_a_note(keyword: str) -> None:
    df = parse_dockerfile(f"FROM b\n{keyword} org.example.key a value with  spaces\n", "x/Df")
    assert df.instructions[1].args == "org.example.key a value with  spaces"
    assert len(df.notes) == 1
    assert df.notes[0].startswith(f"x/Df:2: {keyword} org.example.key")
    assert f"write {keyword} org.example.key=VALUE" in df.notes[0]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("FROM b\nENV NAME\n", r":2: ENV NAME has no value: write ENV NAME=VALUE"),
        ("FROM b\nENV NAME   \\\n\n", r":2: ENV NAME has no value"),
        ("FROM b\nLABEL alone\n", r":2: LABEL alone has no value"),
        ("FROM b\nENV A=1 B\n", r":2: ENV: 'B' is not KEY=VALUE"),
        ('FROM b\nLABEL a=1 "b c"\n', r":2: LABEL: '\"b c\"' is not KEY=VALUE"),
        ("FROM b\nONBUILD ENV NAME\n", r":2: ENV NAME has no value"),
        ("FROM b\nRUN true\nENV PATH\nRUN never\n", r":3: ENV PATH has no value"),
    ],
)
def test_env_and_label_without_values_fail_at_parse_time(text: str, message: str) -> None:
    with pytest.raises(DockerfileError, match="^Dockerfile" + message):
        parse_dockerfile(text)


def test_env_pairs_with_quotes_and_escapes_parse() -> None:
    df = parse_dockerfile("FROM b\nENV A=\"x y\" B='1 2' C=a\\ b D=\n")
    assert df.notes == ()
    assert df.instructions[1].args == "A=\"x y\" B='1 2' C=a\\ b D="


@pytest.mark.parametrize(
    ("line", "name", "expand", "strip_tabs"),
    [
        ("RUN <<EOF", "EOF", True, False),
        ("RUN << EOF", "EOF", True, False),
        ("RUN <<  \tEOF", "EOF", True, False),
        ("RUN <<-EOF", "EOF", True, True),
        ("RUN <<- EOF", "EOF", True, True),
        ("RUN <<$EOF", "$EOF", True, False),
        ("RUN <<'EOF'", "EOF", False, False),
        ('RUN <<"EOF"', "EOF", False, False),
        ("RUN <<'one two'", "one two", False, False),
        ('RUN <<EO"F"', "EOF", False, False),
        ("RUN <<eo\\'f", "eo'f", True, False),  # an escaped quote does not stop expansion
        ("RUN 3<<EOF cat /dev/fd/3", "EOF", True, False),
        ("COPY <<EOF /x", "EOF", True, False),
        ("ADD --chown=1:1 <<EOF /x", "EOF", True, False),
        ("ONBUILD RUN <<EOF", "EOF", True, False),
    ],
)
def test_heredoc_openers_buildkit_accepts(
    line: str, name: str, expand: bool, strip_tabs: bool
) -> None:
    body = "\tline $X\n"
    terminator = f"\t{name}" if strip_tabs else name
    df = parse_dockerfile(f"FROM b\n{line}\n{body}{terminator}\nUSER 1\n")
    inst, user = df.instructions[1:]
    assert [(doc.name, doc.expand) for doc in inst.heredocs] == [(name, expand)]
    assert inst.heredocs[0].content == ("line $X\n" if strip_tabs else body)
    assert user.line == 5


@pytest.mark.parametrize(
    "line",
    [
        "RUN cat <<<word",  # a bash here-string
        "RUN cat<<EOF",  # `<<` inside a word, as BuildKit's lexer sees it
        "RUN echo '<<EOF'",
        'RUN echo "<<EOF"',
        "RUN echo \\<<EOF",
        'RUN ["sh", "-c", "cat <<EOF"]',
        "RUN cat <<one two",  # `<<one` is an opener...
        "CMD cat <<EOF",  # only RUN, COPY and ADD have heredocs
        "RUN <<'EOF",  # an open quote: BuildKit finds no heredoc on the line
    ],
)
def test_not_heredocs(line: str) -> None:
    text = f"FROM b\n{line}\nUSER 1\n"
    if line == "RUN cat <<one two":
        inst = parse_dockerfile(text + "one\n").instructions[1]
        assert [doc.name for doc in inst.heredocs] == ["one"]
        return
    df = parse_dockerfile(text)
    assert df.instructions[1].heredocs == ()
    assert df.instructions[2].keyword == "USER"


def test_parse_heredoc_is_buildkits_single_word_rule() -> None:
    opener = parse_heredoc("<< EOF")
    assert opener is not None and (opener.name, opener.expand) == ("EOF", True)
    fd = parse_heredoc("10<<-'X'")
    assert fd is not None and (fd.fd, fd.strip_tabs, fd.expand) == (10, True, False)
    for word in ("", "EOF", "<<", "<<-", "<EOF", "<<<EOF", "<<EOF && echo", "<<'EOF"):
        assert parse_heredoc(word) is None, word


def test_heredoc_bodies_read_in_order_with_crossed_names() -> None:
    df = parse_dockerfile("FROM b\nCOPY <<X <<Y /dest/\nY\nX\nX\nY\nUSER 1\n")
    copy = df.instructions[1]
    assert [(d.name, d.content) for d in copy.heredocs] == [("X", "Y\n"), ("Y", "X\n")]
    assert df.instructions[2].line == 7


def test_unterminated_dollar_heredoc_names_its_delimiter() -> None:
    with pytest.raises(DockerfileError, match=r":2: heredoc <<\$EOF is not terminated"):
        parse_dockerfile("FROM b\nRUN <<$EOF\necho\nEOF\n")


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
        '["a", 1]',
        "[[",
        "<< ",
        "<<-",
        "<<<",
        "<<$E",
        "<<'E F'",
        'E"O"F',
        "3<<",
        "ENV ",
        "LABEL ",
        "ONBUILD ",
        "HEALTHCHECK CMD ",
        "--",
        '--chmod="7" ',
        "\\\\\n",
        "``\n",
        "\ud800",
        "\u00a0",
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


# a leading `-` would be read as `<<-` (BuildKit's reading too), so names start with a letter
_NAMES = st.builds(
    "".join,
    st.tuples(st.sampled_from("EOFxz"), st.text(st.sampled_from("AEFOXaz019_.-"), max_size=7)),
)
_BODY = st.lists(st.text(alphabet=st.sampled_from("ab $'\"\\<-\t#"), max_size=12), max_size=4)


@settings(max_examples=200, deadline=None)
@given(_NAMES, _BODY, st.sampled_from(["<<{}", "<< {}", "<<'{}'", '<<"{}"', "<<-{}", "2<<{}"]))
def test_fuzz_heredoc_bodies_round_trip(name: str, body: list[str], opener: str) -> None:
    lines = [line for line in body if line.lstrip("\t") != name]
    text = "FROM b\nRUN " + opener.format(name) + "\n" + "".join(f"{x}\n" for x in lines)
    df = parse_dockerfile(text + name + "\nUSER 1\n")
    (doc,) = df.instructions[1].heredocs
    strip = opener.startswith("<<-")
    expected = [x.lstrip("\t") if strip else x for x in lines]
    assert (doc.name, doc.content) == (name, "".join(f"{x}\n" for x in expected))
    assert doc.expand is ("'" not in opener and '"' not in opener)
    assert df.instructions[2].line == len(lines) + 4


@settings(max_examples=200, deadline=None)
@given(
    st.text(alphabet=st.sampled_from("ab:/=.$- \t"), max_size=10),
    st.sampled_from([" ", "\t", "  \t "]),
)
def test_fuzz_quoted_flag_values_lose_their_quotes(value: str, gap: str) -> None:
    assert split_flags(f'--from="{value}"{gap}src dst') == ([f"--from={value}"], "src dst")
    assert split_flags(f"--from='{value}'{gap}--{gap}--src dst") == (
        [f"--from={value}"],
        "--src dst",
    )
