"""Long-lived services deployed by `deploy: service:` jobs: rollout, listing, stop.

State lives under `<data_dir>/services/<name>/` and is all a later `kapal` needs (nothing is kept
in the memory of `kapal run` or `kapal serve`, so services survive their restarts):

- `service.json`: owner, host address and port, container port, the current version and digest;
- `current.json`: the port proxy's target (the current version's pinned network namespace, port);
- `proxy.json`: the proxy process's pid and address (`runner.ship.proxy`);
- `versions/<id>/`: one version: `spec.json`, `status.json` and `output.log` of its keeper
  process (`runner.ship.keeper`).

Keepers and the proxy are detached processes (their own session, `start_new_session`), so they
outlive the `kapal` that started them; they do not outlive a reboot. A rollout holds the service's
lock (`lock`): two deploys of one service are serialised.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from runner.errors import RolloutError, ShipError
from runner.runtime.backend import ImageDefaults
from runner.ship.state_files import defaults_from_json, read_json, write_json

Log = Callable[[str], None]

_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,62}")
_START_WAIT = 10.0  # for the proxy to listen
_STOP_WAIT = 15.0
_POLL = 0.1
_KEPT_VERSIONS = 5


@dataclass(frozen=True)
class ServiceRequest:
    """One version to roll out: the image (by digest) and how to run and check it."""

    name: str
    owner: str
    image: str  # the reference the pipeline named
    digest: str
    layers: tuple[Path, ...]
    defaults: ImageDefaults
    port: int | None = None
    host_port: int | None = None
    health: str | None = None
    env: Mapping[str, str] | None = None
    command: tuple[str, ...] | None = None
    network: str = "nat"  # nat: outbound through slirp4netns; none: loopback only


@dataclass(frozen=True)
class RolloutResult:
    """A rollout that succeeded: the version now serving and the one it replaced."""

    version: str
    digest: str
    previous: str | None
    address: str | None
    health: str


@dataclass(frozen=True)
class ServiceInfo:
    """What `kapal services` shows for one service."""

    name: str
    owner: str
    image: str
    digest: str
    address: str | None
    state: str  # running, exited, stopped
    version: str | None


def check_name(name: str) -> str:
    """`name` when it can name a service directory; `ShipError` otherwise."""
    if not _NAME.fullmatch(name):
        raise ShipError(
            f"service name {name!r} must be 1-63 lower-case letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


def _next_version(versions: Path) -> str:
    """A new version name that sorts after every name in `versions`; call under the service lock.

    The name is the time to the second and a counter within that second, so two rollouts in one
    second (or a clock set back) still sort in the order they happened, which pruning relies on.
    """
    stamp = time.strftime("%Y%m%d%H%M%S")
    names = sorted(p.name for p in versions.iterdir()) if versions.is_dir() else []
    newest_stamp, _, counter = (names[-1] if names else "").partition("-")
    if newest_stamp < stamp:
        return f"{stamp}-000000"
    try:
        following = f"{int(counter, 16) + 1:0{len(counter)}x}"
    except ValueError:
        following = ""
    if not following or len(following) != len(counter):  # not a counter, or it overflowed:
        following = counter + "0"  # a longer name sorts after its own prefix
    return f"{newest_stamp}-{following}"


_children: list[subprocess.Popen[bytes]] = []  # keepers and proxies this process started


def _alive(pid: Any) -> bool:
    """Whether `pid` is a running keeper or proxy: a pid from a state file may have been reused
    by another process since (after a reboot), which must never be signalled."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    for child in _children:  # started here: it may not have exec'd its module yet
        if child.pid == pid:
            return child.poll() is None
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1]
    except (OSError, IndexError):
        return False
    if state.startswith("Z"):  # a child of this process, ended, not yet reaped
        return False
    return any(arg in (b"runner.ship.keeper", b"runner.ship.proxy") for arg in cmdline)


def _spawn(module: str, argument: Path, log: Path, env: Mapping[str, str] | None) -> int:
    """Start `python -m module argument` detached from this process; its pid."""
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", module, str(argument)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            start_new_session=True,
            close_fds=True,
            env=dict(env) if env is not None else None,
            cwd="/",
        )
    _forget(proc)
    return proc.pid


def _forget(proc: subprocess.Popen[bytes]) -> None:
    """Keep a handle so the child is reaped (polled) when it ends while this process lives."""
    _children.append(proc)
    for child in list(_children):
        if child.poll() is not None:
            _children.remove(child)


def _reap() -> None:
    for child in list(_children):
        if child.poll() is not None:
            _children.remove(child)


def _terminate(pid: int, wait: float = _STOP_WAIT) -> None:
    """SIGTERM `pid`, then SIGKILL if it is still there after `wait` seconds."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        _reap()
        if not _alive(pid):
            return
        time.sleep(_POLL)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


class Services:
    """The services under `root` (`<data_dir>/services`).

    Lifecycle: construct (no I/O); every method may be called from any process at any time:
    what one rollout changes is guarded by the service's file lock.
    """

    def __init__(
        self,
        root: Path,
        data_dir: Path,
        *,
        health_timeout: float = 60.0,
        drain: float = 1.0,
        env: Mapping[str, str] | None = None,
        ports: tuple[int, int] = (1024, 65535),
    ) -> None:
        self.root = root
        self.data_dir = data_dir
        self.health_timeout = health_timeout
        self.drain = drain  # seconds connections to the old version get to finish
        self.env = env
        self.ports = ports  # the host ports services may be published on

    def _dir(self, name: str) -> Path:
        return self.root / check_name(name)

    def roll_out(self, request: ServiceRequest, log: Log) -> RolloutResult:
        """Start `request` as a new version, wait for it to be healthy, move the port to it and
        stop the previous version. `RolloutError` (the previous version untouched and serving)
        when it never becomes healthy; `ShipError` when the service belongs to another owner or
        its host port cannot be listened on."""
        directory = self._dir(request.name)
        low, high = self.ports
        if request.host_port is not None and not low <= request.host_port <= high:
            raise ShipError(
                f"service {request.name}: host_port {request.host_port} is outside the ports "
                f"services may use here ({low}-{high}, KAPAL_SERVICE_PORTS)"
            )
        directory.mkdir(parents=True, exist_ok=True)
        from filelock import FileLock  # a listing locks nothing: `kapal services` goes without

        with FileLock(str(directory / "lock")):
            config = read_json(directory / "service.json") or {}
            if config.get("owner") not in (None, request.owner):
                raise ShipError(
                    f"service {request.name} belongs to another repository; pick another name"
                )
            version = _next_version(directory / "versions")
            vdir = directory / "versions" / version
            vdir.mkdir(parents=True)
            write_json(
                vdir / "spec.json",
                {
                    "name": request.name,
                    "data_dir": str(self.data_dir),
                    "image": request.image,
                    "digest": request.digest,
                    "layers": [str(p) for p in request.layers],
                    "defaults": asdict(request.defaults),
                    "port": request.port,
                    "network": request.network,
                    "health": request.health,
                    "health_timeout": self.health_timeout,
                    "env": dict(request.env or {}),
                    "command": list(request.command) if request.command is not None else None,
                },
            )
            log(f"kapal: starting {request.name} version {version} ({request.digest})")
            pid = _spawn("runner.ship.keeper", vdir, vdir / "keeper.log", self.env)
            status = self._await_verdict(vdir, pid)
            if status.get("state") != "healthy":
                for line in status.get("log") or []:
                    log(f"[{request.name}] {line}")
                _terminate(pid)
                said = status.get("output") or "the keeper ended without a verdict"
                raise RolloutError(
                    f"{request.name} version {version} never became healthy: {said}; "
                    "the previous version keeps serving"
                )
            log(f"kapal: {request.name} is healthy: {status.get('output', '')}")
            previous = config.get("version")
            try:
                address = self._publish(directory, config, request, vdir, status)
            except BaseException:
                _terminate(pid)  # the new version: never published
                raise
            config.update(
                owner=request.owner,
                name=request.name,
                image=request.image,
                digest=request.digest,
                version=version,
                pid=pid,
                port=request.port,
                updated=time.time(),
            )
            write_json(directory / "service.json", config)
            if previous and previous != version:
                old = read_json(directory / "versions" / previous / "status.json") or {}
                if _alive(old.get("pid")):
                    # connections the old version took meanwhile get `drain` seconds; its keeper
                    # then stops it (SIGTERM, SIGKILL after its grace) on its own
                    time.sleep(self.drain)
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(int(old["pid"]), signal.SIGTERM)
                    log(f"kapal: stopping the previous version {previous}")
            self._prune(directory, keep={version})
            return RolloutResult(
                version, request.digest, previous, address, status.get("output", "")
            )

    def _await_verdict(self, vdir: Path, pid: int) -> dict[str, Any]:
        deadline = time.monotonic() + self.health_timeout + 60.0
        while time.monotonic() < deadline:
            status = read_json(vdir / "status.json") or {}
            if status.get("state") in ("healthy", "unhealthy", "exited", "stopped"):
                return status
            _reap()
            if not _alive(pid):
                status = read_json(vdir / "status.json") or {}
                if status.get("state") in ("healthy", "unhealthy", "exited"):
                    return status
                tail = (vdir / "keeper.log").read_text(errors="replace")[-400:].strip()
                return {"state": "unhealthy", "output": f"the keeper exited: {tail}"}
            time.sleep(_POLL)
        return {"state": "unhealthy", "output": "no verdict from the keeper in time"}

    def _publish(
        self,
        directory: Path,
        config: dict[str, Any],
        request: ServiceRequest,
        vdir: Path,
        status: Mapping[str, Any],
    ) -> str | None:
        """Point the proxy at the new version, starting a proxy when none listens on its port
        (a proxy on another port stops once the new one listens). `RolloutError`, with the
        previous target, proxy and settings put back, when the new proxy cannot listen."""
        current = directory / "current.json"
        proxy = read_json(directory / "proxy.json") or {}
        old_proxy = int(proxy["pid"]) if _alive(proxy.get("pid")) else None
        if request.host_port is None or request.port is None:
            current.unlink(missing_ok=True)
            if old_proxy is not None:
                _terminate(old_proxy)
            config.pop("host_port", None)
            return None
        before = read_json(current)
        write_json(current, {"version": vdir.name, "netns": status["netns"], "port": request.port})
        same = config.get("host_port") == request.host_port and config.get("host") == "127.0.0.1"
        if same and old_proxy is not None:
            return str(proxy.get("address"))
        write_json(
            directory / "service.json",
            {**config, "host": "127.0.0.1", "host_port": request.host_port},
        )
        (directory / "proxy.json").unlink(missing_ok=True)
        try:
            address = self._start_proxy(directory, request)
        except ShipError as exc:
            if before is not None:
                write_json(current, before)
            else:
                current.unlink(missing_ok=True)
            write_json(directory / "service.json", config)
            if proxy:
                write_json(directory / "proxy.json", proxy)
            raise RolloutError(f"{exc}; the previous version keeps serving") from None
        if old_proxy is not None:
            _terminate(old_proxy)
        config.update(host="127.0.0.1", host_port=request.host_port)
        return address

    def _start_proxy(self, directory: Path, request: ServiceRequest) -> str:
        pid = _spawn("runner.ship.proxy", directory, directory / "proxy.log", self.env)
        deadline = time.monotonic() + _START_WAIT
        while time.monotonic() < deadline:
            started = read_json(directory / "proxy.json") or {}
            if started.get("error"):
                raise ShipError(f"cannot publish {request.name} on {started['error']}")
            if started.get("address"):
                return str(started["address"])
            _reap()
            if not _alive(pid):
                break
            time.sleep(_POLL)
        _terminate(pid)
        raise ShipError(
            f"the port proxy of {request.name} did not start; see {directory}/proxy.log"
        )

    def _stop_proxy(self, directory: Path) -> None:
        proxy = read_json(directory / "proxy.json") or {}
        if _alive(proxy.get("pid")):
            _terminate(int(proxy["pid"]))

    def _prune(self, directory: Path, keep: set[str]) -> None:
        # Version names sort in the order they were rolled out (see _next_version).
        versions = sorted((directory / "versions").iterdir())
        for old in versions[:-_KEPT_VERSIONS]:
            status = read_json(old / "status.json") or {}
            if old.name not in keep and not _alive(status.get("pid")):
                shutil.rmtree(old, ignore_errors=True)

    def list(self) -> list[ServiceInfo]:
        """Every service with its current version and whether it runs."""
        out: list[ServiceInfo] = []
        if not self.root.is_dir():
            return out
        for directory in sorted(self.root.iterdir()):
            config = read_json(directory / "service.json")
            if config is None:
                continue
            version = config.get("version")
            status = {}
            if version:
                status = read_json(directory / "versions" / version / "status.json") or {}
            state = status.get("state", "stopped")
            if state == "healthy":
                state = "running" if _alive(status.get("pid")) else "exited"
            proxy = read_json(directory / "proxy.json") or {}
            address = proxy.get("address") if _alive(proxy.get("pid")) else None
            out.append(
                ServiceInfo(
                    name=directory.name,
                    owner=str(config.get("owner", "")),
                    image=str(config.get("image", "")),
                    digest=str(config.get("digest", "")),
                    address=address,
                    state=state,
                    version=version,
                )
            )
        return out

    def restart(self, name: str, log: Log) -> RolloutResult:
        """Roll the current version of `name` out again from its recorded spec (after a reboot,
        or once it exited); `ShipError` when there is no such service or version."""
        directory = self._dir(name)
        config = read_json(directory / "service.json") or {}
        version = config.get("version")
        spec = read_json(directory / "versions" / str(version) / "spec.json") if version else None
        if spec is None:
            raise ShipError(f"service {name!r} has no version to restart (see `kapal services`)")
        command = spec.get("command")
        return self.roll_out(
            ServiceRequest(
                name=name,
                owner=str(config.get("owner", "")),
                image=str(spec.get("image", "")),
                digest=str(spec.get("digest", "")),
                layers=tuple(Path(p) for p in spec["layers"]),
                defaults=defaults_from_json(spec["defaults"]),
                port=spec.get("port"),
                host_port=config.get("host_port"),
                health=spec.get("health"),
                env=dict(spec.get("env") or {}),
                command=tuple(command) if command is not None else None,
                network=str(spec.get("network") or "nat"),
            ),
            log,
        )

    def stop(self, name: str) -> bool:
        """Stop every version of `name` and its proxy; False when there is no such service."""
        directory = self._dir(name)
        if not (directory / "service.json").exists():
            return False
        from filelock import FileLock

        with FileLock(str(directory / "lock")):
            self._stop_proxy(directory)
            versions = directory / "versions"
            for vdir in sorted(versions.iterdir()) if versions.is_dir() else []:
                status = read_json(vdir / "status.json") or {}
                if _alive(status.get("pid")):
                    _terminate(int(status["pid"]))
            config = read_json(directory / "service.json") or {}
            config["version"] = None
            write_json(directory / "service.json", config)
            (directory / "current.json").unlink(missing_ok=True)
        return True
