"""Sandbox networking: a job and its services share one namespace; loopback only unless host."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.runtime.backend import LogLine, SandboxSpec
from tests.runner.runtime.conftest import BusyboxImage, RecordingBackend

# A hung container must fail the test, not the CI run.
pytestmark = pytest.mark.timeout(180)


def host_interfaces() -> set[str]:
    """Network interfaces of the host's namespace."""
    return {p.name for p in Path("/sys/class/net").iterdir()}


def serve(text: str, port: int) -> str:
    """Shell for a service answering `text` over HTTP on `port` (busybox httpd)."""
    return f"mkdir -p /www && echo {text} > /www/index.html && exec httpd -f -p {port} -h /www"


def fetch(host: str, port: int) -> str:
    """Shell fetching the service's page, retrying while it starts (as a job would)."""
    return (
        f"for i in $(seq 400); do wget -q -O - http://{host}:{port}/ && exit 0; sleep 0.05; done;"
        " exit 1"
    )


def output(
    backend: RecordingBackend, busybox: BusyboxImage, script: str, **sandbox: object
) -> list[str]:
    """Run `script` in a fresh sandbox; return its stdout lines."""
    box = backend.setup(SandboxSpec(**sandbox))  # type: ignore[arg-type]
    try:
        container = backend.start(box, busybox.spec("sh", "-c", script))
        lines: list[LogLine] = list(backend.logs(container))
        backend.wait(container)
    finally:
        backend.teardown(box)
    return [line.text for line in lines if line.stream == "stdout"]


def test_service_reached_by_alias(backend: RecordingBackend, busybox: BusyboxImage) -> None:
    sandbox = backend.setup(SandboxSpec(name="job", aliases=("db", "cache")))
    try:
        backend.start(
            sandbox,
            busybox.spec("sh", "-c", serve("hello-from-db", 5432), name="db"),
        )
        client = backend.start(
            sandbox,
            busybox.spec(
                "sh",
                "-c",
                # The server may not listen yet: retry, as a job waiting for its service would.
                fetch("db", 5432),
                name="job",
            ),
        )
        lines = [line.text for line in backend.logs(client) if line.stream == "stdout"]
        assert backend.wait(client).ok, lines
        assert lines == ["hello-from-db"]
    finally:
        backend.teardown(sandbox)


def test_teardown_stops_running_services(backend: RecordingBackend, busybox: BusyboxImage) -> None:
    sandbox = backend.setup(SandboxSpec(aliases=("svc",)))
    try:
        service = backend.start(sandbox, busybox.spec("sleep", "600", name="svc"))
    finally:
        backend.teardown(sandbox)
    # The backend fixture then checks that nothing of the service survived.
    assert service.id in backend.container_ids


def test_loopback_only_by_default(backend: RecordingBackend, busybox: BusyboxImage) -> None:
    lines = output(
        backend,
        busybox,
        "ls /sys/class/net; ip route | wc -l; nc -w 1 1.1.1.1 53 </dev/null || echo unreachable",
    )
    assert lines[0] == "lo"
    assert lines[1] == "0"
    assert lines[-1] == "unreachable"


def test_separate_sandboxes_do_not_share(backend: RecordingBackend, busybox: BusyboxImage) -> None:
    first = backend.setup(SandboxSpec())
    try:
        backend.start(first, busybox.spec("sh", "-c", serve("hi", 7000)))
        # Reachable from its own sandbox (once it listens)...
        probe = backend.start(first, busybox.spec("sh", "-c", fetch("127.0.0.1", 7000)))
        probe_lines = [line.text for line in backend.logs(probe) if line.stream == "stdout"]
        assert probe_lines == ["hi"]
        # ...and not from another one.
        lines = output(backend, busybox, "wget -q -O - http://127.0.0.1:7000/ || echo refused")
        assert lines == ["refused"]
    finally:
        backend.teardown(first)


def test_network_host_opt_in(backend: RecordingBackend, busybox: BusyboxImage) -> None:
    lines = output(
        backend, busybox, "ls /sys/class/net; echo ---; cat /etc/resolv.conf", network="host"
    )
    marker = lines.index("---")
    interfaces = host_interfaces()
    assert interfaces - {"lo"}, "the host has only loopback: nothing to compare"
    assert set(lines[:marker]) == interfaces
    assert lines[marker + 1 :] == Path("/etc/resolv.conf").read_text().splitlines()
