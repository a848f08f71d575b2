"""The embedded backend on real runc and overlayfs: processes, output, image config, files."""

from __future__ import annotations

import json
import platform
import threading
from pathlib import Path

import pytest

from runner.errors import ContainerRuntimeError, ContainerStartError
from runner.images import ImageStore
from runner.runtime.backend import (
    ContainerSpec,
    ExitStatus,
    ImageDefaults,
    LogLine,
    Mount,
    SandboxSpec,
)
from runner.runtime.oneshot import run_container
from tests.runner.runtime.conftest import BusyboxImage, RecordingBackend

# A hung container must fail the test, not the CI run.
pytestmark = pytest.mark.timeout(180)


def run(backend: RecordingBackend, spec: ContainerSpec) -> tuple[list[LogLine], ExitStatus]:
    """Run `spec` in its own sandbox; return its lines and status."""
    lines: list[LogLine] = []
    status = run_container(backend, spec, on_line=lines.append)
    return lines, status


def texts(lines: list[LogLine], stream: str = "stdout") -> list[str]:
    """The texts of the lines of one stream."""
    return [line.text for line in lines if line.stream == stream]


def test_exit_code_and_streams(backend: RecordingBackend, busybox: BusyboxImage) -> None:
    lines, status = run(backend, busybox.spec("sh", "-c", "echo out; echo err >&2; exit 3"))
    assert status.exit_code == 3
    assert not status.ok
    assert status.describe() == "exited with code 3"
    assert texts(lines, "stdout") == ["out"]
    assert texts(lines, "stderr") == ["err"]
    assert all(line.timestamp > 0 for line in lines)


def test_success_and_partial_last_line(backend: RecordingBackend, busybox: BusyboxImage) -> None:
    lines, status = run(backend, busybox.spec("printf", "a\\nb\\nno-newline"))
    assert status.ok
    assert texts(lines) == ["a", "b", "no-newline"]


def test_env_cwd_user(backend: RecordingBackend, busybox: BusyboxImage) -> None:
    spec = busybox.spec(
        "sh",
        "-c",
        'echo "$GREETING $PATH"; pwd; id -u; id -g; echo "$HOME"',
        env={"GREETING": "hello"},
        cwd="/srv/work",
        user="nobody",
    )
    lines, status = run(backend, spec)
    assert status.ok, lines
    out = texts(lines)
    assert out[0].startswith("hello /")  # the image's PATH is kept
    assert out[1:] == ["/srv/work", "65534", "65534", "/nonexistent"]


def test_numeric_user_and_group(backend: RecordingBackend, busybox: BusyboxImage) -> None:
    lines, _ = run(backend, busybox.spec("sh", "-c", "id -u; id -g", user="1234:4321"))
    assert texts(lines) == ["1234", "4321"]


def test_unknown_user_is_a_clear_error(backend: RecordingBackend, busybox: BusyboxImage) -> None:
    with pytest.raises(ContainerStartError, match="user 'ghost' is not in the image's /etc/passwd"):
        run(backend, busybox.spec("true", user="ghost"))


def test_image_entrypoint_and_cmd(backend: RecordingBackend, busybox: BusyboxImage) -> None:
    image = ImageDefaults(
        env=busybox.defaults.env, entrypoint=("echo", "entry"), cmd=("default-cmd",)
    )
    lines, _ = run(backend, busybox.spec(image=image))
    assert texts(lines) == ["entry default-cmd"]
    lines, _ = run(backend, busybox.spec("given", image=image))
    assert texts(lines) == ["entry given"]
    # GitLab's `image: {entrypoint: [""]}`: no entrypoint, the command runs alone.
    lines, _ = run(backend, busybox.spec("echo", "alone", image=image, entrypoint=("",)))
    assert texts(lines) == ["alone"]
    # A new entrypoint drops the image's Cmd, as `docker run --entrypoint` does.
    lines, _ = run(backend, busybox.spec(image=image, entrypoint=("echo", "new")))
    assert texts(lines) == ["new"]


def test_image_env_working_dir_and_user(backend: RecordingBackend, busybox: BusyboxImage) -> None:
    image = ImageDefaults(
        env=(*busybox.defaults.env, "FROM_IMAGE=1", "OVERRIDDEN=image"),
        working_dir="/app",
        user="65534",
        cmd=("sh", "-c", 'echo "$FROM_IMAGE $OVERRIDDEN"; pwd; id -u'),
    )
    lines, _ = run(backend, busybox.spec(image=image, env={"OVERRIDDEN": "job"}))
    assert texts(lines) == ["1 job", "/app", "65534"]


def test_command_not_found(backend: RecordingBackend, busybox: BusyboxImage) -> None:
    lines, status = run(backend, busybox.spec("no-such-command"))
    assert lines == []  # runc's own "run failed" line is in the status, not in the output
    assert status.exit_code == 127
    assert "no-such-command" in status.describe()
    assert status.describe().startswith("could not start")


def test_container_output_like_a_runc_failure_is_kept(
    backend: RecordingBackend, busybox: BusyboxImage
) -> None:
    script = 'echo "runc run failed: a" >&2; echo b >&2; printf "runc run failed: c" >&2'
    lines, status = run(backend, busybox.spec("sh", "-c", script))
    assert status.exit_code == 0
    assert texts(lines, "stderr") == ["runc run failed: a", "b", "runc run failed: c"]


def test_no_command_is_a_clear_error(backend: RecordingBackend, busybox: BusyboxImage) -> None:
    with pytest.raises(ContainerStartError, match=r"no command for .*: the image has no"):
        run(backend, busybox.spec(image=ImageDefaults()))


def test_line_arrives_before_the_process_exits(
    backend: RecordingBackend, busybox: BusyboxImage, tmp_path: Path
) -> None:
    # The container waits for a file that the test only creates after reading "ready".
    spec = busybox.spec(
        "sh",
        "-c",
        "echo ready; while [ ! -e /shared/go ]; do sleep 0.05; done; echo done",
        mounts=(Mount(tmp_path, "/shared"),),
    )
    sandbox = backend.setup(SandboxSpec())
    try:
        container = backend.start(sandbox, spec)
        seen: list[str] = []
        for line in backend.logs(container):
            seen.append(line.text)
            if line.text == "ready":
                (tmp_path / "go").touch()
        assert seen == ["ready", "done"]
        assert backend.wait(container).ok
    finally:
        backend.teardown(sandbox)


def test_wait_without_logs_drains_output(backend: RecordingBackend, busybox: BusyboxImage) -> None:
    # 1 MiB of output: more than a pipe buffer, so the container blocks unless someone drains.
    sandbox = backend.setup(SandboxSpec())
    try:
        container = backend.start(sandbox, busybox.spec("head", "-c", "1048576", "/dev/zero"))
        status = backend.wait(container)
        assert status.ok
        assert backend.wait(container) == status  # waiting twice gives the same answer
    finally:
        backend.teardown(sandbox)


def test_bind_mounts_and_read_only(
    backend: RecordingBackend, busybox: BusyboxImage, tmp_path: Path
) -> None:
    (tmp_path / "rw").mkdir()
    (tmp_path / "ro").mkdir()
    (tmp_path / "ro" / "input.txt").write_text("from host\n")
    spec = busybox.spec(
        "sh",
        "-c",
        "cat /in/input.txt; echo written > /out/result.txt; echo x > /in/nope.txt || echo refused",
        mounts=(Mount(tmp_path / "ro", "/in", read_only=True), Mount(tmp_path / "rw", "/out")),
    )
    lines, status = run(backend, spec)
    assert status.ok
    assert texts(lines) == ["from host", "refused"]
    assert (tmp_path / "rw" / "result.txt").read_text() == "written\n"
    assert not (tmp_path / "ro" / "nope.txt").exists()


def test_missing_mount_source(
    backend: RecordingBackend, busybox: BusyboxImage, tmp_path: Path
) -> None:
    spec = busybox.spec("true", mounts=(Mount(tmp_path / "absent", "/x"),))
    with pytest.raises(ContainerStartError, match=r"absent into .*: it does not exist on the host"):
        run(backend, spec)


def test_writes_stay_in_the_container(backend: RecordingBackend, busybox: BusyboxImage) -> None:
    lines, status = run(backend, busybox.spec("sh", "-c", "rm /bin/ls && echo > /etc/passwd"))
    assert status.ok
    # The image's layers are untouched: the next container still has both.
    lines, status = run(backend, busybox.spec("sh", "-c", "ls /bin/ls && grep -c root /etc/passwd"))
    assert texts(lines) == ["/bin/ls", "1"]


def test_kept_upper_dir_holds_the_changes(
    backend: RecordingBackend, busybox: BusyboxImage, tmp_path: Path
) -> None:
    upper = tmp_path / "upper"
    spec = busybox.spec("sh", "-c", "echo new > /created.txt; rm /etc/hostname", upper_dir=upper)
    _, status = run(backend, spec)
    assert status.ok
    assert (upper / "created.txt").read_text() == "new\n"
    whiteout = upper / "etc" / "hostname"
    assert whiteout.is_char_device() and whiteout.stat().st_rdev == 0


def test_hostname_hosts_and_isolation(backend: RecordingBackend, busybox: BusyboxImage) -> None:
    spec = busybox.spec(
        "sh",
        "-c",
        'hostname; echo "$HOSTNAME"; grep -c db /etc/hosts; ps -o pid | wc -l',
        hostname="job-1",
    )
    lines: list[LogLine] = []
    sandbox = backend.setup(SandboxSpec(aliases=("db",)))
    try:
        container = backend.start(sandbox, spec)
        lines = list(backend.logs(container))
        backend.wait(container)
    finally:
        backend.teardown(sandbox)
    # Own hostname, the alias resolves, and the pid namespace shows only this shell + ps (+header).
    assert texts(lines)[:3] == ["job-1", "job-1", "1"]
    assert int(texts(lines)[3]) <= 4


def test_rootfs_directory(backend: RecordingBackend, busybox: BusyboxImage) -> None:
    lines, _ = run(backend, busybox.spec("echo", "hi", layers=(), rootfs=busybox.layers[0]))
    assert texts(lines) == ["hi"]


def test_endless_line_is_cut(backend: RecordingBackend, busybox: BusyboxImage) -> None:
    lines, status = run(backend, busybox.spec("sh", "-c", "head -c 2500000 /dev/zero | tr '\\0' x"))
    assert status.ok
    assert [len(line) for line in texts(lines)] == [1 << 20, 1 << 20, 2500000 - (2 << 20)]


def test_parallel_sandboxes(backend: RecordingBackend, busybox: BusyboxImage) -> None:
    # The engine runs jobs in threads: four sandboxes at once, each with its own port 8000.
    results: dict[int, list[str]] = {}

    def job(number: int) -> None:
        script = (
            f"mkdir /www && echo job-{number} > /www/index.html && httpd -p 8000 -h /www; "
            "for i in $(seq 400); do wget -q -O - http://127.0.0.1:8000/ && exit; sleep 0.05; done"
            "; exit 1"
        )
        lines, status = run(backend, busybox.spec("sh", "-c", script))
        results[number] = [*texts(lines), status.describe()]

    threads = [threading.Thread(target=job, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == {n: [f"job-{n}", "exited with code 0"] for n in range(4)}


def test_handles_after_teardown(backend: RecordingBackend, busybox: BusyboxImage) -> None:
    sandbox = backend.setup(SandboxSpec())
    container = backend.start(sandbox, busybox.spec("true"))
    backend.teardown(sandbox)
    backend.teardown(sandbox)  # harmless
    with pytest.raises(ContainerRuntimeError, match="torn down or never set up"):
        backend.start(sandbox, busybox.spec("true"))
    with pytest.raises(ContainerRuntimeError, match="unknown container"):
        backend.wait(container)


def test_debian_image_user_and_python(
    backend: RecordingBackend, image_store: ImageStore, debian_image: str
) -> None:
    image = image_store.resolve(debian_image)
    spec = ContainerSpec(
        layers=tuple(image_store.unpacked_layers(image)),
        image=ImageDefaults.from_image_config(image.config),
        command=("python3", "-c", "import os, pwd; print(pwd.getpwuid(os.getuid()).pw_name)"),
        user="nobody",
    )
    lines, status = run(backend, spec)
    assert status.ok, lines
    assert texts(lines) == ["nobody"]


# x86_64 numbers of system calls the default seccomp filter refuses, and the errno expected.
_REFUSED_X86_64 = {
    "keyctl": (250, "EPERM"),
    "add_key": (248, "EPERM"),
    "bpf": (321, "EPERM"),
    "perf_event_open": (298, "EPERM"),
    "userfaultfd": (323, "EPERM"),
    "unshare": (272, "EPERM"),
    "clone3": (435, "ENOSYS"),
}
_SECCOMP_PROBE = """
import ctypes, errno, json, os, subprocess, sys, threading
libc = ctypes.CDLL(None, use_errno=True)
result = {}
# clone(CLONE_NEWUSER | SIGCHLD) with no new stack: like fork when allowed.
pid = libc.syscall(56, ctypes.c_long(0x10000000 | 17), *[ctypes.c_long(0)] * 4)
if pid == 0:
    os._exit(0)
if pid > 0:
    os.waitpid(pid, 0)
result["clone_newuser"] = "ok" if pid > 0 else errno.errorcode[ctypes.get_errno()]
for name, number in json.loads(sys.argv[1]).items():
    # keyctl(KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING) is harmless when allowed; unshare
    # asks for a user namespace; every other call gets invalid arguments (EINVAL/EFAULT if allowed).
    args = {"keyctl": (0, -3, 0), "unshare": (0x10000000, 0, 0)}.get(name, (0, 0, 0))
    ret = libc.syscall(number, *[ctypes.c_long(a) for a in args])
    result[name] = "ok" if ret >= 0 else errno.errorcode[ctypes.get_errno()]
# Ordinary work still runs: threads (clone3 falls back to clone) and child processes.
box = []
thread = threading.Thread(target=lambda: box.append(1))
thread.start()
thread.join()
result["thread"] = box
result["child"] = subprocess.run(["echo", "child"], capture_output=True, text=True).stdout
print(json.dumps(result))
"""


@pytest.mark.skipif(platform.machine() != "x86_64", reason="syscall numbers are x86_64 ones")
def test_seccomp_refuses_kernel_interfaces(
    backend: RecordingBackend, image_store: ImageStore, debian_image: str
) -> None:
    image = image_store.resolve(debian_image)
    numbers = {name: number for name, (number, _) in _REFUSED_X86_64.items()}
    spec = ContainerSpec(
        layers=tuple(image_store.unpacked_layers(image)),
        image=ImageDefaults.from_image_config(image.config),
        command=("python3", "-c", _SECCOMP_PROBE, json.dumps(numbers)),
    )
    lines, status = run(backend, spec)
    assert status.ok, lines
    result = json.loads(texts(lines)[0])
    assert result == {
        **{name: code for name, (_, code) in _REFUSED_X86_64.items()},
        "clone_newuser": "EPERM",
        "thread": [1],
        "child": "child\n",
    }


def _stacked_layers(root: Path, busybox: BusyboxImage, count: int) -> tuple[Path, ...]:
    """busybox's layers plus `count` one-file layers, named like the store's (64 hex digits)."""
    extra = []
    for index in range(count):
        layer = root / f"{index:064x}"
        (layer / "layers").mkdir(parents=True)
        (layer / "layers" / str(index)).write_text("")
        (layer / "top").write_text(str(index))
        extra.append(layer)
    return (*busybox.layers, *extra)


def test_many_layers_mount_through_short_names(
    backend: RecordingBackend, busybox: BusyboxImage, tmp_path: Path
) -> None:
    layers = _stacked_layers(tmp_path / "store-like" / "layers" / "sha256", busybox, 120)
    # Spelled out in full, these paths do not fit in the one page overlayfs reads options from.
    assert len(":".join(str(p) for p in layers)) > 4096
    lines, status = run(
        backend, busybox.spec("sh", "-c", "ls /layers | wc -l; cat /top", layers=layers)
    )
    assert status.ok, status.describe()
    assert texts(lines) == ["120", "119"]


def test_too_many_layers_is_a_clear_error(
    backend: RecordingBackend, busybox: BusyboxImage, tmp_path: Path
) -> None:
    layers = _stacked_layers(tmp_path / "layers", busybox, 300)
    sandbox = backend.setup(SandboxSpec(name="deep"))
    try:
        with pytest.raises(ContainerStartError, match=r"too many layers \(301\).*squash"):
            backend.start(sandbox, busybox.spec("true", layers=layers))
    finally:
        backend.teardown(sandbox)
