"""`kapal exec` and its bad-input errors, run as a user would (a subprocess)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from runner.runtime.paths import RuntimePaths
from runner.runtime.syscalls import mount_points
from runner.runtime.trash import trash_dir
from runner.settings import RunnerSettings
from web.cli import build_app

# A hung container must fail the test, not the CI run.
pytestmark = pytest.mark.timeout(180)


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


def test_a_finished_exec_leaves_nothing_and_loses_no_output(
    kapal_env: dict[str, str], kapal_settings: RunnerSettings, busybox_image: str
) -> None:
    # `kapal` ends `exec` without the interpreter's teardown (runner.argv_commands.exit_now):
    # every line still arrives, through a pipe, and the container's files are gone already.
    done = kapal(
        kapal_env,
        "exec",
        busybox_image,
        "--",
        "sh",
        "-c",
        "seq 1 20000; dd if=/dev/zero of=/written bs=1k count=64 2>/dev/null; echo end >&2",
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [str(n) for n in range(1, 20001)]
    assert done.stderr == "end\n"
    paths = RuntimePaths.for_settings(kapal_settings)
    for root in (paths.run_root, paths.disk_root):
        assert sorted(p.name for p in root.glob("[cs][tb]-*")) == []
        assert not [m for m in mount_points() if m.startswith(str(root))]
    assert list(trash_dir(paths.disk_root).glob("*")) == []


def test_command_not_found_is_one_clear_error(
    kapal_env: dict[str, str], busybox_image: str
) -> None:
    done = kapal(kapal_env, "exec", busybox_image, "--", "no-such-command")
    assert done.returncode == 127
    assert done.stdout == ""
    assert done.stderr.splitlines() == [
        'kapal exec: could not start: unable to start container process: exec: "no-such-command":'
        " executable file not found in $PATH"
    ]


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
        'echo "$A $B"; pwd; cat /data/in.txt; touch /data/x 2>/dev/null || echo read-only; '
        "cat /sys/fs/cgroup/pids/pids.max /sys/fs/cgroup/cpu/cpu.cfs_quota_us",
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "1 two words",
        "/work",
        "mounted",
        "read-only",
        "50",  # --pids
        "50000",  # --cpus 0.5: half of the 100 ms period
    ]


def test_memory_option_is_enforced(kapal_env: dict[str, str], busybox_image: str) -> None:
    command = ["sh", "-c", "head -c 200000000 /dev/zero | tail"]
    done = kapal(kapal_env, "exec", "--memory", "16m", busybox_image, "--", *command)
    assert done.returncode == 137  # tail, the last command, was killed
    assert done.stderr.splitlines()[-1] == "kapal exec: killed: out of memory (limit 16 MiB)"


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
        (
            ["--network", "bridge", "IMAGE", "--", "true"],
            "--network 'bridge': use none, nat or host",
        ),
        (["--cpus", "0", "IMAGE", "--", "true"], "--cpus 0.0: must be more than zero"),
        (["-w", "rel", "IMAGE", "--", "true"], "the working directory must be absolute"),
        (["-u", "ghost", "IMAGE", "--", "true"], "user 'ghost' is not in the image's /etc/passwd"),
    ],
)
def test_bad_input(
    kapal_data_dir: Path,
    busybox_image: str,
    args: list[str],
    message: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # In-process (the CLI's start-up dominates a subprocess); one subprocess case is below.
    monkeypatch.setenv("KAPAL_DATA_DIR", str(kapal_data_dir))
    args = [busybox_image if a == "IMAGE" else a for a in args]
    result = CliRunner().invoke(build_app(), ["exec", *args])
    assert result.exit_code == 125
    assert result.stderr.startswith("kapal exec: error: ")
    assert message in result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_bad_input_in_a_subprocess(kapal_env: dict[str, str]) -> None:
    done = kapal(kapal_env, "exec", "no-such-image:1.0", "--", "true")
    assert done.returncode == 125
    assert done.stderr.startswith("kapal exec: error: image 'no-such-image:1.0' is not in")
    assert "Traceback" not in done.stderr


def test_unusable_data_dir(kapal_env: dict[str, str], tmp_path: Path) -> None:
    not_a_dir = tmp_path / "a-file"
    not_a_dir.write_text("")
    done = kapal(dict(kapal_env, KAPAL_DATA_DIR=str(not_a_dir)), "exec", "busybox", "--", "true")
    assert done.returncode == 125
    assert done.stderr == (
        f"kapal exec: error: cannot create {not_a_dir}/containers for containers (Not a "
        f"directory): KAPAL_DATA_DIR ({not_a_dir}) must be a directory kapal can write to\n"
    )


def test_missing_runc(kapal_env: dict[str, str], busybox_image: str, tmp_path: Path) -> None:
    # A PATH with git (gitpython wants it) and nothing else: no runc, no crun.
    (tmp_path / "git").symlink_to(shutil.which("git") or "/usr/bin/git")
    env = dict(kapal_env, PATH=str(tmp_path))
    done = kapal(env, "exec", busybox_image, "--", "true")
    assert done.returncode == 125
    assert "no OCI runtime found" in done.stderr
    assert "apt-get install runc" in done.stderr


def test_crun_is_used_only_where_it_works(
    kapal_env: dict[str, str], busybox_image: str, tmp_path: Path
) -> None:
    crun = shutil.which("crun")
    if crun is None:
        pytest.skip("crun is not installed")
    (tmp_path / "git").symlink_to(shutil.which("git") or "/usr/bin/git")
    (tmp_path / "crun").symlink_to(crun)
    done = kapal(dict(kapal_env, PATH=str(tmp_path)), "exec", busybox_image, "--", "echo", "hi")
    hybrid = Path("/sys/fs/cgroup/unified").is_dir() and Path("/sys/fs/cgroup/memory").is_dir()
    if hybrid:  # crun 1.8 refuses hybrid cgroups: kapal must say so, not try and fail obscurely
        assert done.returncode == 125
        assert "crun is installed but does not support this machine's hybrid cgroups" in (
            done.stderr
        )
    else:
        assert (done.returncode, done.stdout) == (0, "hi\n"), done.stderr


def test_configured_runtime_missing(kapal_env: dict[str, str], busybox_image: str) -> None:
    env = dict(kapal_env, KAPAL_RUNTIME="/opt/nowhere/runc")
    done = kapal(env, "exec", busybox_image, "--", "true")
    assert done.returncode == 125
    assert "'/opt/nowhere/runc' (KAPAL_RUNTIME) was not found" in done.stderr


def test_sigterm_cancels_and_cleans_up(
    kapal_env: dict[str, str], kapal_settings: RunnerSettings, busybox_image: str
) -> None:
    process = subprocess.Popen(
        [KAPAL, "exec", busybox_image, "--", "sh", "-c", "echo ready; sleep 600"],
        env=kapal_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline() == "ready\n"
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == 130
    assert "kapal exec: canceled" in stderr
    paths = RuntimePaths.for_settings(kapal_settings)
    for root in (paths.run_root, paths.disk_root):
        assert sorted(p.name for p in root.glob("[cs][tb]-*")) == []
        assert not [m for m in mount_points() if m.startswith(str(root))]
    # The overlay dirs go through the trash; `kapal exec` empties it before it exits.
    assert list(trash_dir(paths.disk_root).glob("*")) == []


def _root_kib(env: dict[str, str], image: str, *options: str) -> int:
    done = kapal(env, "exec", *options, image, "--", "df", "-k", "/")
    assert done.returncode == 0, done.stderr
    return int(done.stdout.splitlines()[-1].split()[1])


def test_disk_cap_only_with_the_disk_option(
    kapal_env: dict[str, str], kapal_data_dir: Path, busybox_image: str
) -> None:
    # A one-shot `kapal exec` is the operator's: its writable layer lives in the data dir with
    # no cap (and no loop-mounted disk to make, ~60 ms). `--disk` gives it a job's cap.
    capped = _root_kib(kapal_env, busybox_image, "--disk", "64m")
    assert 32 * 1024 < capped <= 64 * 1024
    stats = os.statvfs(kapal_data_dir)
    assert _root_kib(kapal_env, busybox_image) == stats.f_blocks * stats.f_frsize // 1024


@pytest.mark.parametrize("name", ["KAPAL_JOB_ALLOWED_NETWORKS", "kapal_job_allowed_networks"])
def test_a_malformed_allow_list_is_one_clear_error_on_nat(
    kapal_env: dict[str, str], busybox_image: str, name: str
) -> None:
    # `--network nat` reads the operator's allow list (any case, as the settings do) with the
    # settings' own parser; the firewall of tests/security/test_network.py shows it applied.
    env = {**kapal_env, name: "10.0.0.0/8,intranet"}
    done = kapal(env, "exec", "--network", "nat", busybox_image, "--", "echo", "ran")
    assert done.returncode == 125
    assert done.stdout == ""
    assert done.stderr == (
        "kapal exec: error: KAPAL_JOB_ALLOWED_NETWORKS: 'intranet' is not an address or a "
        "network: write CIDRs separated by commas, e.g. 192.0.2.10/32,10.20.0.0/16\n"
    )


def test_the_allow_list_is_read_only_for_nat(kapal_env: dict[str, str], busybox_image: str) -> None:
    # Without a NAT sandbox there is no firewall to open: the setting is not even read.
    env = {**kapal_env, "KAPAL_JOB_ALLOWED_NETWORKS": "intranet"}
    done = kapal(env, "exec", busybox_image, "--", "echo", "ran")
    assert (done.returncode, done.stdout, done.stderr) == (0, "ran\n", "")
