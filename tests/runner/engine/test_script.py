"""Job scripts run in a real shell: echo, stop at the first failure, exit codes, quoting."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from runner.engine.script import echo_line, job_script

SHELLS = [s for s in ("bash", "busybox") if shutil.which(s)]


def run(tmp_path: Path, shell: str, commands: list[str]) -> subprocess.CompletedProcess[str]:
    """Run the job script with `sh` (re-executing bash) or with busybox's sh (no bash on PATH)."""
    script = tmp_path / "step_script"
    script.write_text(job_script(commands, project_dir=str(tmp_path)))
    if shell == "busybox":
        argv = [str(shutil.which("busybox")), "sh", str(script)]
        env = {"PATH": "/nonexistent"}
    else:
        argv = ["/bin/sh", str(script)]
        env = {"PATH": "/usr/bin:/bin"}
    return subprocess.run(argv, capture_output=True, text=True, env=env, cwd=tmp_path)


@pytest.mark.parametrize("shell", SHELLS)
def test_each_line_is_echoed_and_the_first_failure_stops(tmp_path: Path, shell: str) -> None:
    done = run(tmp_path, shell, ["echo one", 'echo "it\'s $((1 + 1))"', "exit 3", "echo never"])
    assert done.returncode == 3
    assert done.stdout.splitlines() == [
        "$ echo one",
        "one",
        '$ echo "it\'s $((1 + 1))"',
        "it's 2",
        "$ exit 3",
    ]


def test_pipefail_under_bash(tmp_path: Path) -> None:
    done = run(tmp_path, "bash", ["false | cat", "echo never"])
    assert done.returncode == 1 and "never" not in done.stdout


def test_a_multi_line_command_runs_whole(tmp_path: Path) -> None:
    done = run(tmp_path, "bash", ["for i in 1 2; do\n  echo n$i\ndone"])
    assert done.returncode == 0
    assert done.stdout.splitlines() == [
        "$ for i in 1 2; do # collapsed multi-line command",
        "n1",
        "n2",
    ]


def test_scripts_start_in_the_project_dir(tmp_path: Path) -> None:
    assert run(tmp_path, "bash", ["pwd"]).stdout.splitlines()[-1] == str(tmp_path)


def test_echo_line() -> None:
    assert echo_line("make test") == "$ make test"
