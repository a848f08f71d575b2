"""`kapal image ...` as a user runs it: a subprocess with KAPAL_DATA_DIR, exit codes, output."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from runner.images import ImageStore, bootstrap_busybox
from web.cli import build_app

KAPAL = [sys.executable, "-m", "web.cli"]


def kapal(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """Run `kapal ARGS` in a subprocess (no TTY: plain progress lines)."""
    return subprocess.run(
        [*KAPAL, *args], capture_output=True, text=True, env=env, check=False, timeout=300
    )


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """A kapal environment with its own data dir holding the busybox image."""
    data = tmp_path / "data"
    bootstrap_busybox(ImageStore(data / "images"))
    return dict(os.environ, KAPAL_DATA_DIR=str(data))


def ok(result: subprocess.CompletedProcess[str]) -> str:
    """The stdout of a command that must have succeeded."""
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_ls_tag_inspect_rm_gc(env: dict[str, str]) -> None:
    assert "busybox:latest" in ok(kapal(env, "image", "ls"))
    ok(kapal(env, "image", "tag", "busybox", "127.0.0.1:5000/team/bb:2"))
    assert ok(kapal(env, "image", "ls", "-q")).split() == [
        "127.0.0.1:5000/team/bb:2",
        "busybox:latest",
    ]
    info = json.loads(ok(kapal(env, "image", "inspect", "127.0.0.1:5000/team/bb:2")))
    assert info["RepoTags"] == ["127.0.0.1:5000/team/bb:2", "busybox:latest"]
    assert info["Config"]["Cmd"] == ["sh"]
    assert ok(kapal(env, "image", "rm", "busybox")) == "untagged busybox:latest\n"
    ok(kapal(env, "image", "rm", "127.0.0.1:5000/team/bb:2"))
    assert ok(kapal(env, "image", "ls", "-q")) == ""
    collected = ok(kapal(env, "image", "gc"))
    assert "removed 0 blobs" in collected  # rm already collected them
    assert "build cache: removed 0 step layers and 0 cache mounts" in collected


def test_export_import_round_trip(env: dict[str, str], tmp_path: Path) -> None:
    for fmt in ("docker", "oci"):
        out = tmp_path / f"bb-{fmt}.tar"
        ok(kapal(env, "image", "export", "busybox", "-o", str(out), "--format", fmt))
        other = dict(env, KAPAL_DATA_DIR=str(tmp_path / f"other-{fmt}"))
        assert ok(kapal(other, "image", "import", str(out))).startswith("busybox:latest sha256:")
        assert ok(kapal(other, "image", "ls", "-q")) == "busybox:latest\n"


def test_push_and_pull_with_plain_progress_lines(
    env: dict[str, str], registry: str, tmp_path: Path
) -> None:
    target = f"{registry}/cli/busybox:1"
    pushed = kapal(env, "image", "push", "busybox", target)
    assert pushed.returncode == 0, pushed.stderr
    assert pushed.stdout.startswith(f"{target} sha256:")
    assert "pushed " in pushed.stderr and " MB" in pushed.stderr
    other = dict(env, KAPAL_DATA_DIR=str(tmp_path / "other"))
    pulled = kapal(other, "image", "pull", target)
    assert pulled.returncode == 0, pulled.stderr
    assert pulled.stdout.split()[1] == pushed.stdout.split()[1]
    assert pulled.stderr.count("pulled ") == 2  # config and the one layer


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["image", "inspect", "nosuch:1"], "is not in the local image store"),
        (["image", "pull", "Not A Ref"], "invalid image reference"),
        (["image", "pull", "127.0.0.1:1/x:1"], "cannot reach registry 127.0.0.1:1"),
        (["image", "import", "/nonexistent.tar"], "no such file"),
        (["image", "export", "busybox", "-o", "/tmp/x", "--format", "zip"], "unknown export"),
        (["image", "bootstrap", "ubuntu:jammy"], "kapal bootstraps `busybox`"),
        (["image", "rm", "nosuch:1"], "is not in the local image store"),
        (["image", "export", "busybox", "-o", "/"], "/ is a directory"),
        (["image", "export", "busybox", "-o", "/proc/nope/x.tar"], "No such file or directory"),
    ],
)
def test_errors_are_one_line_exit_1_no_traceback(
    env: dict[str, str], args: list[str], message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # In-process (CliRunner) to keep the suite fast; an escaping exception would show up as
    # `result.exception` being something other than the SystemExit of `typer.Exit(1)`.
    monkeypatch.setenv("KAPAL_DATA_DIR", env["KAPAL_DATA_DIR"])
    result = CliRunner().invoke(build_app(), args)
    assert result.exit_code == 1
    assert isinstance(result.exception, SystemExit), result.exception
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert message in lines[0]


def test_bootstrap_without_mmdebstrap(env: dict[str, str], tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("git", "tar"):  # what kapal needs to start, but no mmdebstrap
        found = shutil.which(tool)
        assert found is not None
        os.symlink(found, bin_dir / tool)
    result = kapal(dict(env, PATH=str(bin_dir)), "image", "bootstrap", "debian:bookworm")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "mmdebstrap is not installed" in result.stderr


def test_bootstrap_busybox_command(env: dict[str, str]) -> None:
    out = ok(kapal(env, "image", "bootstrap", "busybox", "--tag", "tiny:1"))
    assert out.startswith("tiny:1 sha256:")
    assert "tiny:1" in ok(kapal(env, "image", "ls", "-q")).split()
