"""ContainerSpec rules, durations, sizes, users and status texts (no containers needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.errors import ContainerStartError, RunnerError
from runner.runtime.backend import ContainerSpec, ExitStatus, ImageDefaults
from runner.runtime.durations import format_duration, parse_duration
from runner.runtime.quantities import parse_size
from runner.runtime.seccomp import default_seccomp
from runner.runtime.users import resolve_user

IMAGE = ImageDefaults(
    env=("PATH=/bin", "LANG=C"), working_dir="/app", user="app", entrypoint=("ep",), cmd=("cmd",)
)


@pytest.mark.parametrize(
    ("command", "entrypoint", "argv"),
    [
        (None, None, ["ep", "cmd"]),
        (("x", "y"), None, ["ep", "x", "y"]),
        (None, ("new",), ["new"]),  # a new entrypoint drops the image's Cmd
        (("x",), ("new",), ["new", "x"]),
        (("x",), ("",), ["x"]),  # GitLab's entrypoint: [""]
        (("x",), (), ["x"]),
        (None, (), []),
    ],
)
def test_argv_rules(
    command: tuple[str, ...] | None, entrypoint: tuple[str, ...] | None, argv: list[str]
) -> None:
    assert ContainerSpec(image=IMAGE, command=command, entrypoint=entrypoint).argv() == argv


def test_environment_cwd_user_defaults_and_overrides() -> None:
    spec = ContainerSpec(image=IMAGE, env={"LANG": "C.UTF-8", "CI": "true"})
    assert spec.environment() == ["PATH=/bin", "LANG=C.UTF-8", "CI=true"]
    assert spec.working_dir() == "/app"
    assert spec.user_spec() == "app"
    other = ContainerSpec(cwd="/w", user="0")
    assert (other.working_dir(), other.user_spec()) == ("/w", "0")
    assert ContainerSpec().working_dir() == "/"
    assert "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" in (
        ContainerSpec().environment()
    )


def test_image_defaults_from_oci_config() -> None:
    config = {
        "architecture": "amd64",
        "config": {"Env": ["A=1"], "Entrypoint": ["/e"], "Cmd": None, "WorkingDir": "/w"},
    }
    assert ImageDefaults.from_image_config(config) == ImageDefaults(
        env=("A=1",), working_dir="/w", entrypoint=("/e",)
    )
    assert ImageDefaults.from_image_config({"Cmd": ["sh"]}).cmd == ("sh",)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(600, "10m"), (5400, "1h 30m"), (3661, "1h 1m 1s"), (30, "30s"), (0.5, "0.5s"), (0, "0s")],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("10m", 600), ("1h 30m", 5400), ("1h30m", 5400), ("2 hours", 7200), ("45", 45)],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "10x", "0s", "-5s", "1h soon"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(RunnerError, match="write it like 30s, 10m or 1h 30m"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("text", "size"),
    [("256m", 256 << 20), ("1g", 1 << 30), ("512k", 512 << 10), ("1024", 1024), ("2GiB", 2 << 30)],
)
def test_parse_size(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["lots", "12q", "", "-1m"])
def test_parse_size_rejects(text: str) -> None:
    with pytest.raises(RunnerError, match="is not a size"):
        parse_size(text)


def test_resolve_user(tmp_path: Path) -> None:
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "passwd").write_text("root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n")
    (etc / "group").write_text("root:x:0:\napp:x:1000:\nstaff:x:50:app\n")
    user = resolve_user(tmp_path, "app")
    assert (user.uid, user.gid, user.additional_gids, user.home) == (1000, 1000, (50,), "/home/app")
    assert resolve_user(tmp_path, "1000").gid == 1000  # numeric uid found in passwd
    assert (resolve_user(tmp_path, "4242").uid, resolve_user(tmp_path, "4242").gid) == (4242, 0)
    assert resolve_user(tmp_path, "app:staff").gid == 50
    assert resolve_user(tmp_path, "app:77").gid == 77
    with pytest.raises(ContainerStartError, match="group 'nogroup' is not in the image's"):
        resolve_user(tmp_path, "app:nogroup")
    with pytest.raises(ContainerStartError, match="user 'ghost' is not in the image's"):
        resolve_user(tmp_path, "ghost")


def test_status_texts() -> None:
    assert ExitStatus(0, 1.0).ok
    assert ExitStatus(2, 1.0).describe() == "exited with code 2"
    timed_out = ExitStatus(137, 600.2, timed_out=True, timeout=600)
    assert timed_out.describe() == "timed out after 10m"
    assert not timed_out.ok
    oom = ExitStatus(137, 1.0, oom_killed=True, memory_limit=256 << 20)
    assert oom.describe() == "killed: out of memory (limit 256 MiB)"
    assert ExitStatus(137, 1.0, canceled=True).describe() == "canceled"
    assert ExitStatus(127, 0.1, error="exec: x: not found").describe() == (
        "could not start: exec: x: not found"
    )


@pytest.mark.parametrize(
    ("machine", "architectures"),
    [
        ("x86_64", ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]),  # 32-bit calls too
        ("aarch64", ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]),
        ("riscv64", None),  # runc filters the native architecture
    ],
)
def test_default_seccomp_profile(machine: str, architectures: list[str] | None) -> None:
    profile = default_seccomp(machine)
    assert profile["defaultAction"] == "SCMP_ACT_ALLOW"
    assert profile.get("architectures") == architectures
    denied = {name for rule in profile["syscalls"] for name in rule["names"]}
    assert {"keyctl", "bpf", "mount", "unshare", "kexec_load", "clone", "clone3"} <= denied
    assert not {"ptrace", "read", "execve", "setuid", "chown"} & denied
    (clone,) = [rule for rule in profile["syscalls"] if rule["names"] == ["clone"]]
    # clone is refused only with CLONE_NEWUSER in its flags (argument 0).
    assert clone["args"] == [
        {"index": 0, "value": 0x10000000, "valueTwo": 0x10000000, "op": "SCMP_CMP_MASKED_EQ"}
    ]
