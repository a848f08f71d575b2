"""`kapal exec` reads its plain argv itself, and exactly as its argparse parser reads it."""

from __future__ import annotations

import contextlib
import io

from hypothesis import given, settings
from hypothesis import strategies as st

from runner.runtime.cli import exec_parser, plain_exec_args

EXEC_WORDS = [
    "--memory",
    "--cpus",
    "--pids",
    "--timeout",
    "--network",
    "--disk",
    "-e",
    "--env",
    "-w",
    "--workdir",
    "-v",
    "--volume",
    "-u",
    "--user",
    "--entrypoint",
    "256m",
    "1.5",
    "nan",
    " 2 ",
    "1_0",
    "-1",
    "-",
    "",
    "A=1",
    "/tmp:/x:ro",
    "nat",
    "busybox:latest",
    "./rootfs/",
    "true",
    "echo",
    "--",
    "-h",
    "--help",
    "--mem",
    "--memory=1g",
    "-eA=1",
    "-x",
    "- x",
    "-1 2",
]


def argparse_reading(argv: list[str]) -> dict[str, str] | None:
    """What `exec_parser()` makes of ARGV, or None when it refuses it (or prints help)."""
    try:
        with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
            return shown(exec_parser().parse_args(argv))
    except SystemExit:
        return None


def shown(args: object) -> dict[str, str]:
    """The attributes of parsed ARGS, each as its repr (so that `--cpus nan` equals itself)."""
    return {name: repr(value) for name, value in vars(args).items()}


@settings(max_examples=600, deadline=None)
@given(st.lists(st.sampled_from(EXEC_WORDS), max_size=7))
def test_exec_reads_plain_argv_as_argparse_does(argv: list[str]) -> None:
    plain = plain_exec_args(argv)
    parsed = argparse_reading(argv)
    if parsed is None:
        assert plain is None, f"{argv}: argparse refuses it, the plain reader took it"
    elif plain is not None:
        assert shown(plain) == parsed, argv


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["--memory", "--cpus", "--pids", "-e", "-v", "-w", "-u", "--network"]),
            st.text(st.characters(codec="utf-8"), max_size=4),
        ),
        max_size=4,
    ),
    st.text(max_size=5),
    st.lists(st.text(max_size=4), max_size=3),
)
def test_exec_reads_any_values_as_argparse_does(
    options: list[tuple[str, str]], image: str, command: list[str]
) -> None:
    argv = [word for pair in options for word in pair] + [image, *command]
    plain = plain_exec_args(argv)
    parsed = argparse_reading(argv)
    if parsed is None:
        assert plain is None, f"{argv}: argparse refuses it, the plain reader took it"
    elif plain is not None:
        assert shown(plain) == parsed, argv


def test_the_common_forms_need_no_argparse() -> None:
    argv = ["--memory", "256m", "-e", "A=1", "-e", "B", "--cpus", "1.5", "busybox", "--", "true"]
    plain = plain_exec_args(argv)
    assert plain is not None
    assert (plain.image, plain.command, plain.memory, plain.cpus, plain.env) == (
        "busybox",
        ["true"],
        "256m",
        1.5,
        ["A=1", "B"],
    )
    assert plain_exec_args(["busybox:latest"]) is not None
    for unusual in (["--help"], [], ["--memory=1g", "busybox"], ["--mem", "1g", "busybox"]):
        assert plain_exec_args(unusual) is None, unusual
