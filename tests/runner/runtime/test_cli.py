"""`kapal exec` and its bad-input errors, run as a user would (a subprocess)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

KAPAL = str(Path(sys.executable).parent / "kapal")


def kapal(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """Run `kapal ARGS` with the session's data dir."""
    return subprocess.run(
        [KAPAL, *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_exit_code_and_output(kapal_env: dict[str, str], busybox_image: str) -> None:
    done = kapal(
        kapal_env, "exec", busybox_image, "--", "sh", "-c", "echo out; echo err >&2; exit 5"
    )
    assert done.returncode == 5
    assert done.stdout == "out\n"
    assert done.stderr == "err\n"


def test_options(kapal_env: dict[str, str], busybox_image: str, tmp_path: Path) -> None:
    (tmp_path / "in.txt").write_text("mounted\n")
    done = kapal(
        kapal_env,
        "exec",
        "-e",
        "A=1",
        "--env",
        "B=two words",
        "-w",
        "/work",
        "-v",
        f"{tmp_path}:/data:ro",
        "--memory",
        "64m",
        "--cpus",
        "0.5",
        "--pids",
        "50",
        busybox_image,
        "--",
        "sh",
        "-c",
        'echo "$A $B"; pwd; cat /data/in.txt; touch /data/x 2>/dev/null || echo read-only',
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["1 two words", "/work", "mounted", "read-only"]


def test_image_cmd_is_the_default(kapal_env: dict[str, str], busybox_image: str) -> None:
    # busybox's Cmd is `sh`; with stdin closed it exits 0 at once.
    done = kapal(kapal_env, "exec", busybox_image)
    assert done.returncode == 0, done.stderr


def test_timeout(kapal_env: dict[str, str], busybox_image: str) -> None:
    done = kapal(kapal_env, "exec", "--timeout", "1s", busybox_image, "--", "sleep", "600")
    assert done.returncode == 137
    assert "kapal exec: timed out after 1s" in done.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["no-such-image:1.0", "--", "true"], "image 'no-such-image:1.0' is not in the local"),
        (["--memory", "lots", "IMAGE", "--", "true"], "--memory 'lots' is not a size"),
        (["-v", "/no/such/dir:/x", "IMAGE", "--", "true"], "the host path /no/such/dir does not"),
        (["-v", "justone", "IMAGE", "--", "true"], "write it as HOST:CONTAINER"),
        (["-v", "/tmp:relative", "IMAGE", "--", "true"], "container path 'relative' must be"),
        (["--timeout", "soon", "IMAGE", "--", "true"], "cannot read duration 'soon'"),
        (["--network", "bridge", "IMAGE", "--", "true"], "--network 'bridge': use none or host"),
        (["--cpus", "0", "IMAGE", "--", "true"], "--cpus 0.0: must be more than zero"),
        (["-w", "rel", "IMAGE", "--", "true"], "the working directory must be absolute"),
        (["-u", "ghost", "IMAGE", "--", "true"], "user 'ghost' is not in the image's /etc/passwd"),
    ],
)
def test_bad_input(
    kapal_env: dict[str, str], busybox_image: str, args: list[str], message: str
) -> None:
    args = [busybox_image if a == "IMAGE" else a for a in args]
    done = kapal(kapal_env, "exec", *args)
    assert done.returncode == 125
    assert done.stderr.startswith("kapal exec: error: ")
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def test_missing_runc(kapal_env: dict[str, str], busybox_image: str) -> None:
    env = dict(kapal_env, PATH="/nonexistent")
    done = kapal(env, "exec", busybox_image, "--", "true")
    assert done.returncode == 125
    assert "no OCI runtime found" in done.stderr
    assert "apt-get install runc" in done.stderr


def test_configured_runtime_missing(kapal_env: dict[str, str], busybox_image: str) -> None:
    env = dict(kapal_env, KAPAL_RUNTIME="/opt/nowhere/runc")
    done = kapal(env, "exec", busybox_image, "--", "true")
    assert done.returncode == 125
    assert "'/opt/nowhere/runc' (KAPAL_RUNTIME) was not found" in done.stderr
