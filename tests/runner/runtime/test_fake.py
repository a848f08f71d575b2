"""FakeBackend: scripted behaviours, recording, and the same lifecycle rules as a real backend."""

from __future__ import annotations

import threading

import pytest

from runner.errors import ContainerRuntimeError, ContainerStartError
from runner.runtime.backend import ContainerSpec, SandboxSpec
from runner.runtime.fake import FakeBackend, FakeBehaviour
from runner.runtime.oneshot import run_container


def spec(*command: str, **fields: object) -> ContainerSpec:
    """A spec running `command` (no image needed by the fake)."""
    return ContainerSpec(command=command, **fields)  # type: ignore[arg-type]


def test_scripted_output_and_exit() -> None:
    backend = FakeBackend()
    backend.script("pytest", FakeBehaviour(exit_code=1, stdout="a\nb\n", stderr="oops\n"))
    lines = []
    status = run_container(backend, spec("pytest", "-q"), on_line=lines.append)
    assert status.exit_code == 1
    assert [(line.stream, line.text) for line in lines] == [
        ("stdout", "a"),
        ("stdout", "b"),
        ("stderr", "oops"),
    ]
    assert run_container(backend, spec("echo")).ok  # unscripted: exit 0
    assert [s.argv() for s in backend.started] == [["pytest", "-q"], ["echo"]]
    assert backend.calls[:2] == [("setup", "container"), ("start", "container")]
    assert backend.calls.count(("teardown", "container")) == 2


def test_latest_script_wins_and_callables() -> None:
    backend = FakeBackend()
    backend.script("make", FakeBehaviour(exit_code=2))
    backend.script(lambda s: s.name == "special", lambda s: FakeBehaviour(stdout=s.name))
    assert run_container(backend, spec("make")).exit_code == 2
    lines = []
    run_container(backend, spec("make", name="special"), on_line=lines.append)
    assert [line.text for line in lines] == ["special"]


def test_timeout_stop_oom_and_start_error() -> None:
    backend = FakeBackend()
    backend.script("slow", FakeBehaviour(delay=60))
    backend.script("hog", FakeBehaviour(oom_killed=True))
    backend.script("broken", FakeBehaviour(start_error="no such image"))
    assert run_container(backend, spec("slow", timeout=0.05)).describe() == "timed out after 0.05s"
    assert run_container(backend, spec("hog")).oom_killed
    with pytest.raises(ContainerStartError, match="no such image"):
        run_container(backend, spec("broken"))
    cancel = threading.Event()
    cancel.set()
    assert run_container(backend, spec("slow"), cancel=cancel).canceled


def test_teardown_stops_services_and_checks_lifecycle() -> None:
    backend = FakeBackend()
    backend.script("postgres", FakeBehaviour(delay=3600))
    sandbox = backend.setup(SandboxSpec(name="job", aliases=("db",)))
    service = backend.start(sandbox, spec("postgres", name="db"))
    assert backend.running() == [service]
    backend.teardown(sandbox)
    assert backend.running() == []
    assert backend.wait(service).canceled
    assert backend.torn_down == [sandbox.id]
    with pytest.raises(ContainerRuntimeError, match="torn down"):
        backend.start(sandbox, spec("true"))


def test_stop_after_natural_end_is_not_a_cancel() -> None:
    backend = FakeBackend()
    sandbox = backend.setup(SandboxSpec())
    container = backend.start(sandbox, spec("true"))
    backend.stop(container)
    assert backend.wait(container).ok
    backend.teardown(sandbox)
