"""The keeper: a detached process that runs one version of a deployed service.

`python -m runner.ship.keeper VERSION_DIR` reads `VERSION_DIR/spec.json` (written by
`runner.ship.services`), sets up a sandbox with its own network namespace on the embedded
runtime, starts the image, and checks its health until it passes or the deadline is reached. It
reports through `VERSION_DIR/status.json`: `starting`, then `healthy` (with the pinned network
namespace the port proxy connects into) or `unhealthy` (with the health check's last output, and
the keeper exits), then `stopped` or `exited` when it ends. The service's output goes to
`VERSION_DIR/output.log` (the last `_LOG_CAP` bytes are kept).

The keeper runs in its own session, apart from `kapal run` or `kapal serve`, so the service
outlives them; SIGTERM stops the service and the keeper (`kapal services stop`, a rollout that
replaces it). The container has the operator's limits but no timeout.
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.client
import os
import signal
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

from runner.errors import RunnerError
from runner.runtime.backend import ContainerSpec, ImageDefaults, SandboxSpec
from runner.runtime.embedded import EmbeddedBackend
from runner.runtime.usernet import run_in_network
from runner.ship.state_files import defaults_from_json, read_json, write_json

_LOG_CAP = 4 << 20
_CHECK_INTERVAL = 0.25
_CHECK_TIMEOUT = 5.0


def http_check(port: int, path: str) -> tuple[bool, str]:
    """GET `path` on 127.0.0.1:`port` of the calling thread's network: (2xx/3xx?, what it said)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=_CHECK_TIMEOUT)
    try:
        conn.request("GET", path, headers={"User-Agent": "kapal-health"})
        response = conn.getresponse()
        body = response.read(200).decode("utf-8", "replace").strip()
        said = f"GET {path}: HTTP {response.status} {response.reason} {body}".strip()
        return 200 <= response.status < 400, said
    except (OSError, http.client.HTTPException) as exc:
        return False, f"GET {path} on port {port}: {exc}"
    finally:
        conn.close()


class _Output:
    """Drains the service's output into `output.log`, keeping the last lines for reports."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.tail: deque[str] = deque(maxlen=20)
        self._written = 0

    def add(self, text: str) -> None:
        """Append a line (the file is started afresh once it passes the cap)."""
        self.tail.append(text)
        data = (text + "\n").encode("utf-8", "replace")
        mode = "ab"
        if self._written + len(data) > _LOG_CAP:
            mode, self._written = "wb", 0
        with self.path.open(mode) as out:
            out.write(data)
        self._written += len(data)


class Keeper:
    """Runs the version described by `directory/spec.json` (see the module docstring).

    Lifecycle: `run()` once in the keeper process; it returns when the version ends (unhealthy,
    exited, or stopped by SIGTERM, which `request_stop` stands for in tests).
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        spec = read_json(directory / "spec.json")
        if spec is None:
            raise RunnerError(f"{directory}/spec.json is missing or not JSON")
        self.spec = spec
        self._stop = threading.Event()

    def request_stop(self) -> None:
        """Ask `run` to stop the service and return."""
        self._stop.set()

    def _status(self, state: str, **fields: Any) -> None:
        write_json(
            self.directory / "status.json",
            {"state": state, "pid": os.getpid(), "at": time.time(), **fields},
        )

    def run(self) -> int:
        """Run the version to its end; the process's exit code."""
        spec = self.spec
        from runner.settings import RunnerSettings  # the keeper's own process, not kapal run's

        settings = RunnerSettings(data_dir=Path(spec["data_dir"]))
        policy = dataclasses.replace(settings.container_policy(), max_timeout=None)
        backend = EmbeddedBackend(settings, policy)
        self._status("starting")
        sandbox = backend.setup(
            SandboxSpec(
                name=f"svc-{spec['name']}",
                network="none" if spec.get("network") == "none" else "nat",
            )
        )
        output = _Output(self.directory / "output.log")
        try:
            defaults = defaults_from_json(spec["defaults"])
            container = backend.start(
                sandbox,
                ContainerSpec(
                    name=f"svc-{spec['name']}",
                    layers=tuple(Path(p) for p in spec["layers"]),
                    image=defaults,
                    command=tuple(spec["command"]) if spec.get("command") is not None else None,
                    env=dict(spec.get("env") or {}),
                    hostname=spec["name"],
                ),
            )

            def copy_output() -> None:
                for line in backend.logs(container):
                    output.add(line.text)

            drain = threading.Thread(
                target=copy_output,
                name="kapal-service-output",
                daemon=True,
            )
            drain.start()
            netns = backend.paths.sandbox_dir(sandbox.id) / "netns"
            healthy, said = self._await_health(backend, sandbox, defaults, netns, drain)
            if not healthy:
                lines = [*output.tail][-10:]
                self._status("unhealthy", output=said, log=lines)
                return 1
            self._status("healthy", netns=str(netns), port=spec.get("port"), output=said)
            while not self._stop.wait(0.5):
                if not drain.is_alive():
                    status = backend.wait(container)
                    self._status("exited", output=status.describe(), log=[*output.tail][-10:])
                    return 1
            backend.stop(container, grace=float(spec.get("stop_grace", 5.0)))
            backend.wait(container)
            self._status("stopped")
            return 0
        finally:
            backend.teardown(sandbox)
            backend.drain()

    def _await_health(
        self,
        backend: EmbeddedBackend,
        sandbox: Any,
        defaults: ImageDefaults,
        netns: Path,
        drain: threading.Thread,
    ) -> tuple[bool, str]:
        spec = self.spec
        deadline = time.monotonic() + float(spec.get("health_timeout", 60.0))
        health = spec.get("health")
        port = spec.get("port")
        said = "no health check ran"
        while not self._stop.is_set():
            if not drain.is_alive():
                return False, "the service exited before it became healthy"
            if health and health.startswith("/") and port:
                ok, said = run_in_network(netns, lambda: http_check(int(port), health))
            elif health:
                ok, said = self._command_check(backend, sandbox, defaults, health)
            elif port:
                ok, said = run_in_network(netns, lambda: _listening(int(port)))
            else:
                return True, "no health check: started"
            if ok:
                return True, said
            if time.monotonic() >= deadline:
                timeout = spec.get("health_timeout", 60.0)
                return False, f"not healthy within {timeout}s; last check: {said}"
            self._stop.wait(_CHECK_INTERVAL)
        return False, "stopped before it became healthy"

    def _command_check(
        self, backend: EmbeddedBackend, sandbox: Any, defaults: ImageDefaults, command: str
    ) -> tuple[bool, str]:
        """Run `command` with `sh -c` in a container of the service's image and network."""
        probe = backend.start(
            sandbox,
            ContainerSpec(
                name=f"health-{self.spec['name']}",
                layers=tuple(Path(p) for p in self.spec["layers"]),
                image=defaults,
                entrypoint=(),
                command=("sh", "-c", command),
                env=dict(self.spec.get("env") or {}),
                timeout=_CHECK_TIMEOUT * 2,
            ),
        )
        lines = [line.text for line in backend.logs(probe)]
        status = backend.wait(probe)
        said = f"`{command}` {status.describe()}: {' | '.join(lines[-5:])}".strip()
        return status.ok, said


def _listening(port: int) -> tuple[bool, str]:
    import socket

    with socket.socket() as sock:
        sock.settimeout(_CHECK_TIMEOUT)
        try:
            sock.connect(("127.0.0.1", port))
        except OSError as exc:
            return False, f"port {port}: {exc}"
    return True, f"port {port} accepts connections"


def main(argv: list[str]) -> int:
    """Entry point: `python -m runner.ship.keeper VERSION_DIR`."""
    keeper = Keeper(Path(argv[0]))
    signal.signal(signal.SIGTERM, lambda *_: keeper.request_stop())
    signal.signal(signal.SIGINT, lambda *_: keeper.request_stop())
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        return keeper.run()
    except Exception as exc:
        with contextlib.suppress(OSError):
            keeper._status("unhealthy", output=f"kapal could not run the service: {exc}", log=[])
        return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
