"""`FakeBackend`: an in-memory `Backend` whose containers run scripted behaviours.

Tests of the layers above the runtime (engine, web) use it instead of runc::

    backend = FakeBackend()
    backend.script("pytest", FakeBehaviour(exit_code=1, stdout="1 failed\\n"))
    backend.script(lambda spec: spec.name == "db", FakeBehaviour(delay=60))  # a service
    ...run the engine with `backend`...
    assert backend.started[0].argv() == [...]
    assert backend.calls[0] == ("setup", "job")

A behaviour prints its output (in order: `output`, then `stdout` lines, then `stderr` lines), then
"runs" for `delay` seconds (interrupted by `stop` or by the spec's timeout), then ends with
`exit_code` (or as OOM-killed / start failure when asked). The first matching script wins, most
recently added first; containers matching nothing exit 0 silently. It follows the same lifecycle
and thread rules as every backend (see `runner.runtime.backend`) and checks them: using a torn-down
sandbox or an unknown container raises `ContainerRuntimeError`, as a real backend would.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from runner.errors import ContainerRuntimeError, ContainerStartError
from runner.runtime.backend import (
    Container,
    ContainerSpec,
    ExitStatus,
    LogLine,
    Sandbox,
    SandboxSpec,
    Stream,
)

Matcher = str | Callable[[ContainerSpec], bool]


@dataclass(frozen=True)
class FakeBehaviour:
    """What a fake container does: its output, how long it runs, how it ends."""

    exit_code: int = 0
    stdout: str = ""
    stderr: str = ""
    output: Sequence[tuple[Stream, str]] = ()
    delay: float = 0.0
    oom_killed: bool = False
    start_error: str | None = None

    def lines(self) -> list[tuple[Stream, str]]:
        """All output lines in the order they are emitted."""
        lines: list[tuple[Stream, str]] = list(self.output)
        lines += [("stdout", text) for text in self.stdout.splitlines()]
        lines += [("stderr", text) for text in self.stderr.splitlines()]
        return lines


Behaviour = FakeBehaviour | Callable[[ContainerSpec], FakeBehaviour]


@dataclass
class _FakeRun:
    container: Container
    behaviour: FakeBehaviour
    started: float
    stopped: threading.Event = field(default_factory=threading.Event)
    status: ExitStatus | None = None


class FakeBackend:
    """An in-memory backend that records what it was asked and plays scripted behaviours."""

    def __init__(self) -> None:
        self._scripts: list[tuple[Matcher, Behaviour]] = []
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._sandboxes: dict[str, Sandbox] = {}
        self._runs: dict[str, _FakeRun] = {}
        self.calls: list[tuple[str, str]] = []
        self.started: list[ContainerSpec] = []
        self.torn_down: list[str] = []

    def script(self, match: Matcher, behaviour: Behaviour) -> None:
        """Make containers whose argv contains `match` (or for which it is true) behave so."""
        with self._lock:
            self._scripts.insert(0, (match, behaviour))

    def running(self) -> list[Container]:
        """Containers started and not yet ended (for assertions)."""
        with self._lock:
            runs = list(self._runs.values())
        return [run.container for run in runs if run.status is None and not self._ended(run)]

    def setup(self, spec: SandboxSpec) -> Sandbox:
        """Create a sandbox handle."""
        sandbox = Sandbox(id=f"fake-sandbox-{next(self._ids)}", spec=spec)
        with self._lock:
            self._sandboxes[sandbox.id] = sandbox
            self.calls.append(("setup", spec.name))
        return sandbox

    def start(self, sandbox: Sandbox, spec: ContainerSpec) -> Container:
        """Start a scripted container (or raise the scripted start error)."""
        with self._lock:
            if sandbox.id not in self._sandboxes:
                raise ContainerRuntimeError(f"sandbox {sandbox.id} was torn down or never set up")
            self.calls.append(("start", spec.name))
            self.started.append(spec)
            behaviour = self._behaviour_for(spec)
            if behaviour.start_error is not None:
                raise ContainerStartError(behaviour.start_error)
            container = Container(id=f"fake-{next(self._ids)}", sandbox_id=sandbox.id, spec=spec)
            self._runs[container.id] = _FakeRun(container, behaviour, time.monotonic())
        return container

    def logs(self, container: Container) -> Iterator[LogLine]:
        """Yield the scripted lines, then block until the container ends."""
        run = self._run(container)
        for stream, text in run.behaviour.lines():
            yield LogLine(stream=stream, timestamp=time.time(), text=text)
        self._finish(run)

    def wait(self, container: Container) -> ExitStatus:
        """Block until the scripted run ends (delay, stop or timeout) and return its status."""
        with self._lock:
            self.calls.append(("wait", container.spec.name))
        return self._finish(self._run(container))

    def stop(self, container: Container, grace: float = 1.0) -> None:
        """Cancel the scripted run."""
        with self._lock:
            self.calls.append(("stop", container.spec.name))
        run = self._run(container)
        if not self._ended(run):
            run.stopped.set()

    def teardown(self, sandbox: Sandbox) -> None:
        """Stop the sandbox's running containers and forget the sandbox."""
        with self._lock:
            self.calls.append(("teardown", sandbox.spec.name))
            self.torn_down.append(sandbox.id)
            self._sandboxes.pop(sandbox.id, None)
            runs = [r for r in self._runs.values() if r.container.sandbox_id == sandbox.id]
        for run in runs:
            if not self._ended(run):
                run.stopped.set()
            self._finish(run)

    def _behaviour_for(self, spec: ContainerSpec) -> FakeBehaviour:
        argv = " ".join(spec.argv())
        for match, behaviour in self._scripts:
            hit = match in argv if isinstance(match, str) else match(spec)
            if hit:
                return behaviour(spec) if callable(behaviour) else behaviour
        return FakeBehaviour()

    def _run(self, container: Container) -> _FakeRun:
        with self._lock:
            run = self._runs.get(container.id)
        if run is None:
            raise ContainerRuntimeError(f"unknown container {container.id}")
        return run

    @staticmethod
    def _ended(run: _FakeRun) -> bool:
        if run.status is not None or run.stopped.is_set():
            return True
        timeout = run.container.spec.timeout
        delay = run.behaviour.delay
        runs_for = delay if timeout is None else min(delay, timeout)
        return time.monotonic() - run.started >= runs_for

    def _finish(self, run: _FakeRun) -> ExitStatus:
        if run.status is not None:
            return run.status
        behaviour, spec = run.behaviour, run.container.spec
        timeout = spec.timeout
        runs_for = behaviour.delay if timeout is None else min(behaviour.delay, timeout)
        remaining = runs_for - (time.monotonic() - run.started)
        canceled = run.stopped.wait(max(remaining, 0.0)) if remaining > 0 else run.stopped.is_set()
        timed_out = not canceled and timeout is not None and behaviour.delay > timeout
        killed = canceled or timed_out or behaviour.oom_killed
        status = ExitStatus(
            exit_code=137 if killed else behaviour.exit_code,
            duration=time.monotonic() - run.started,
            oom_killed=behaviour.oom_killed and not canceled and not timed_out,
            timed_out=timed_out,
            canceled=canceled,
            timeout=timeout,
            memory_limit=spec.limits.memory_bytes,
        )
        with self._lock:
            if run.status is None:
                run.status = status
            return run.status
