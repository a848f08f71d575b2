"""A reader that goes away (`kapal ... | head`) ends a command quietly: no traceback, no error
line about the pipe, the status a shell gives a tool ended by SIGPIPE (141; rich's tables end
with 1, as rich itself decides)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ENTRY = "import sys; from web.cli import main; sys.exit(main())"
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "hello-app"


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["version"],
        ["lint", str(EXAMPLE)],
        ["plan", str(EXAMPLE / ".kapal.yml"), "--branch", "main", "--json"],
        ["plan", str(EXAMPLE / ".kapal.yml"), "--branch", "main"],
        ["image", "ls"],
        ["deployments"],
        ["services"],
    ],
    ids=" ".join,
)
def test_a_closed_pipe_ends_the_command_quietly(args: list[str], tmp_path: Path) -> None:
    env = {"KAPAL_DATA_DIR": str(tmp_path), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    proc = subprocess.Popen(
        [sys.executable, "-c", ENTRY, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # the reader is gone before the command writes a byte
    err = proc.stderr.read().decode()
    proc.stderr.close()
    code = proc.wait(timeout=60)
    assert err == "", err  # neither a traceback nor an error line about the pipe
    rich_table = args[0] == "plan" and "--json" not in args
    assert code in ((141, 1) if rich_table else (141,))
