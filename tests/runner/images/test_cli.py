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


def test_ls_escapes_what_an_image_config_says(env: dict[str, str]) -> None:
    # `created` comes from the image's config, which whoever made the image wrote: a terminal
    # escape or a line break in it must not reach the terminal or fake a row of the listing.
    store = ImageStore(Path(env["KAPAL_DATA_DIR"]) / "images")
    busybox = store.resolve("busybox")
    hostile = "2024\x1b]0;pwned\x07\nfake:1  sha256:0000"
    store.commit({"created": hostile}, busybox.layers, tags=["hostile:1"])
    lines = ok(kapal(env, "image", "ls")).splitlines()
    assert "\x1b" not in "".join(lines) and "\x07" not in "".join(lines)
    assert [line.split()[0] for line in lines] == ["IMAGE", "busybox:latest", "hostile:1"]
    assert lines[2].endswith("  2024\\x1b]0;pwned\\x07\\nfake:1  sha256:0000")


@pytest.mark.parametrize(
    ("args", "prog", "message"),
    [
        (["image", "ls", "--bad"], "kapal image ls", "unrecognized arguments: --bad"),
        (["image", "tag", "busybox"], "kapal image tag", "required: TARGET"),
        (["image", "export", "busybox"], "kapal image export", "required: -o/--output"),
        (["image", "nosuch"], "kapal image", "invalid choice: 'nosuch'"),
    ],
)
def test_usage_errors_exit_2_with_the_usage(
    env: dict[str, str], args: list[str], prog: str, message: str
) -> None:
    done = kapal(env, *args)
    assert done.returncode == 2 and done.stdout == ""
    lines = done.stderr.splitlines()
    assert lines[0].startswith(f"usage: {prog} [-h]")
    assert lines[-1].startswith(f"{prog}: error: ")
    assert message in lines[-1]


def test_help_without_a_sub_command(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    monkeypatch.setenv("KAPAL_DATA_DIR", env["KAPAL_DATA_DIR"])
    bare = CliRunner().invoke(build_app(), ["image"])
    assert bare.exit_code == 2  # no sub-command: the help, as a usage error
    shown = CliRunner().invoke(build_app(), ["image", "--help"])
    assert shown.exit_code == 0 and shown.stdout == bare.stdout
    assert "Manage the local OCI image store." in shown.stdout
    for verb in ("ls", "pull", "push", "import", "export", "bootstrap", "rm", "inspect", "tag"):
        assert f"\n    {verb} " in shown.stdout or f"\n    {verb}\n" in shown.stdout
    pull = CliRunner().invoke(build_app(), ["image", "pull", "--help"])
    assert pull.exit_code == 0 and "--insecure" in pull.stdout


def test_export_takes_options_between_the_names(
    env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KAPAL_DATA_DIR", env["KAPAL_DATA_DIR"])
    app = build_app()
    assert CliRunner().invoke(app, ["image", "tag", "busybox", "second:2"]).exit_code == 0
    out = tmp_path / "both.tar"
    done = CliRunner().invoke(app, ["image", "export", "busybox", "-o", str(out), "second:2"])
    assert done.exit_code == 0, done.stderr
    monkeypatch.setenv("KAPAL_DATA_DIR", str(tmp_path / "other"))
    assert CliRunner().invoke(app, ["image", "import", str(out)]).exit_code == 0
    listed = CliRunner().invoke(app, ["image", "ls", "-q"])
    assert listed.stdout.split() == ["busybox:latest", "second:2"]


@pytest.mark.parametrize(
    ("args", "variable", "value"),
    [
        (["image", "gc"], "KAPAL_JOB_CPUS", "many"),
        (["image", "pull", "busybox"], "KAPAL_INSECURE_REGISTRIES", "localhost:5000"),
        (["image", "push", "busybox", "127.0.0.1:1/x:1"], "kapal_allow_host_network", "maybe"),
    ],
)
def test_a_malformed_setting_is_one_error_line(
    env: dict[str, str], args: list[str], variable: str, value: str
) -> None:
    done = kapal(dict(env, **{variable: value}), *args)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.startswith(f"error: {variable.upper()}={value!r}: "), done.stderr
    assert len(done.stderr.splitlines()) == 1


def test_local_sub_commands_read_only_the_data_dir(env: dict[str, str]) -> None:
    # ls, inspect, tag and rm need no setting but the data dir: a malformed other one is not
    # theirs to refuse (gc, pull and push read them all, above)
    bad = dict(env, KAPAL_JOB_CPUS="many")
    assert ok(kapal(bad, "image", "tag", "busybox", "other:1")) == "other:1\n"
    assert json.loads(ok(kapal(bad, "image", "inspect", "other:1")))["Config"]["Cmd"] == ["sh"]
    assert ok(kapal(bad, "image", "rm", "other:1")) == "untagged other:1\n"
    assert ok(kapal(bad, "image", "ls", "-q")) == "busybox:latest\n"
