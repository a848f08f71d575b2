"""Limits, timeouts and cancellation on real runc and cgroups, each followed by a cleanup check."""

from __future__ import annotations

import threading

import pytest

from runner.runtime.backend import Limits, SandboxSpec
from runner.runtime.cgroups import LEAF, current_hierarchies
from runner.runtime.oneshot import run_container
from tests.runner.runtime.conftest import BusyboxImage, RecordingBackend

# A hung container must fail the test, not the CI run.
pytestmark = pytest.mark.timeout(180)


def test_memory_limit_reports_oom(backend: RecordingBackend, busybox: BusyboxImage) -> None:
    spec = busybox.spec(
        "sh",
        "-c",
        "echo start; head -c 200000000 /dev/zero | tail",
        limits=Limits(memory_bytes=32 * 1024 * 1024),
    )
    lines: list[str] = []
    status = run_container(backend, spec, on_line=lambda line: lines.append(line.text))
    assert status.oom_killed
    assert status.exit_code == 137  # tail, the last command, was killed
    assert status.describe() == "killed: out of memory (limit 32 MiB)"
    assert lines[0] == "start"


def test_memory_under_the_limit_is_fine(backend: RecordingBackend, busybox: BusyboxImage) -> None:
    spec = busybox.spec(
        "sh", "-c", "head -c 1000000 /dev/zero | tail | wc -c", limits=Limits(memory_bytes=64 << 20)
    )
    status = run_container(backend, spec)
    assert status.ok
    assert not status.oom_killed


def test_pids_limit(backend: RecordingBackend, busybox: BusyboxImage) -> None:
    script = "for i in $(seq 20); do sleep 5 & done 2>&1; echo started"
    lines: list[str] = []
    run_container(
        backend,
        busybox.spec("sh", "-c", script, limits=Limits(pids=5)),
        on_line=lambda line: lines.append(line.text),
    )
    assert any("can't fork" in line for line in lines), lines
    # Without the limit the same script forks all twenty.
    lines.clear()
    run_container(
        backend,
        busybox.spec("sh", "-c", script),
        on_line=lambda line: lines.append(line.text),
    )
    assert lines == ["started"]


def test_cpu_limit_is_applied(backend: RecordingBackend, busybox: BusyboxImage) -> None:
    sandbox = backend.setup(SandboxSpec())
    try:
        container = backend.start(
            sandbox, busybox.spec("sh", "-c", "echo ready; sleep 600", limits=Limits(cpus=1.5))
        )
        assert next(iter(backend.logs(container))).text == "ready"
        cpu = next(h for h in current_hierarchies() if "cpu" in h.controllers)
        # The default memory limit puts runc's group below kapal's parent group.
        group = cpu.own_dir / f"kapal-{container.id}" / LEAF
        assert (group / "cpu.cfs_quota_us").read_text().strip() == "150000"
        assert (group / "cpu.cfs_period_us").read_text().strip() == "100000"
    finally:
        backend.teardown(sandbox)


def test_memory_limit_uses_a_parent_group(backend: RecordingBackend, busybox: BusyboxImage) -> None:
    sandbox = backend.setup(SandboxSpec())
    try:
        limits = Limits(memory_bytes=48 << 20, pids=20)
        container = backend.start(
            sandbox, busybox.spec("sh", "-c", "echo ready; sleep 600", limits=limits)
        )
        assert next(iter(backend.logs(container))).text == "ready"
        by_controller = {name: h for h in current_hierarchies() for name in h.controllers}
        parent = by_controller["memory"].own_dir / f"kapal-{container.id}"
        assert (parent / "memory.limit_in_bytes").read_text().strip() == str(48 << 20)
        leaf = by_controller["pids"].own_dir / f"kapal-{container.id}" / LEAF
        assert (leaf / "pids.max").read_text().strip() == "20"
    finally:
        backend.teardown(sandbox)


def test_timeout_kills_and_says_so(backend: RecordingBackend, busybox: BusyboxImage) -> None:
    status = run_container(backend, busybox.spec("sleep", "600", timeout=1.0))
    assert status.timed_out
    assert not status.canceled
    assert status.describe() == "timed out after 1s"


def test_stop_sends_term_first(backend: RecordingBackend, busybox: BusyboxImage) -> None:
    script = "trap 'echo got TERM; exit 7' TERM; echo ready; sleep 600 & wait"
    sandbox = backend.setup(SandboxSpec())
    try:
        container = backend.start(sandbox, busybox.spec("sh", "-c", script))
        lines = []
        for line in backend.logs(container):
            lines.append(line.text)
            if line.text == "ready":
                backend.stop(container, grace=5.0)
        status = backend.wait(container)
        assert lines == ["ready", "got TERM"]
        assert status.canceled
        assert status.exit_code == 7
        assert status.describe() == "canceled"
    finally:
        backend.teardown(sandbox)


def test_stop_kills_after_grace(backend: RecordingBackend, busybox: BusyboxImage) -> None:
    # A shell as pid 1 ignores SIGTERM: only the SIGKILL after the grace period ends it.
    sandbox = backend.setup(SandboxSpec())
    try:
        container = backend.start(sandbox, busybox.spec("sh", "-c", "echo ready; sleep 600"))
        for line in backend.logs(container):
            if line.text == "ready":
                threading.Thread(target=backend.stop, args=(container, 0.5)).start()
        status = backend.wait(container)
        assert status.canceled
        assert status.exit_code == 137
        backend.stop(container)  # stopping an ended container is a no-op
    finally:
        backend.teardown(sandbox)


def test_cancel_event_of_run_container(backend: RecordingBackend, busybox: BusyboxImage) -> None:
    cancel = threading.Event()

    def on_line(line: object) -> None:
        cancel.set()

    status = run_container(
        backend, busybox.spec("sh", "-c", "echo ready; sleep 600"), on_line=on_line, cancel=cancel
    )
    assert status.canceled
    assert not status.ok


def test_container_sees_its_own_limits(backend: RecordingBackend, busybox: BusyboxImage) -> None:
    lines: list[str] = []
    limit = "/sys/fs/cgroup/pids/pids.max"
    script = f"cat {limit}; (echo 99 > {limit}) 2>/dev/null || echo ro"
    run_container(
        backend,
        busybox.spec("sh", "-c", script, limits=Limits(pids=33)),
        on_line=lambda line: lines.append(line.text),
    )
    assert lines == ["33", "ro"]
