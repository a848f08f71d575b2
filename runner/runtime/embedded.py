"""`EmbeddedBackend`: containers as OCI bundles run by runc, no daemon.

Every container gets the limits of the backend's `ContainerPolicy` (runner.runtime.policy): what
its spec leaves out is filled from the defaults, and nothing exceeds the caps. A `"nat"` sandbox's
namespace is served by a slirp4netns process (runner.runtime.usernet); `"host"` is refused unless
the policy allows it.

Directories (see `runner.runtime.paths`): per sandbox (job), `<run>/sb-<id>` holding the pinned
network namespace (none for `network: host`) and the resolv.conf containers get (for `"nat"`
slirp4netns' DNS, for `"host"` a copy of the host's), and, once a container writes a layer, a
size-limited disk `<containers_dir>/sb-<id>` (runner.runtime.disk) holding the overlay `upper`
and `work` dirs of the sandbox's containers. Per container, `<run>/ct-<id>` holding config.json,
the overlay mount point `rootfs`, the generated /etc/hosts, the runc log and `owner.json` (who
made it and what it holds, for `kapal gc`), and, when the policy sets no disk cap or the spec
brings its own upper dir, `<containers_dir>/ct-<id>` on disk holding the overlay `upper` and
`work` dirs. runc keeps its state under `<run>/runc-state`. Everything is removed when the
container ends (`wait`) or the sandbox is torn down, except that the disk dir is renamed into
the trash and deleted there in the background (`drain()` waits for that; so does interpreter
exit), and a sandbox disk goes whole, at teardown; what a killed worker left is removed by
`kapal gc` (runner.runtime.gc).
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING

from pipeline import records
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
from runner.runtime.bundle import BundleConfig, write_bundle
from runner.runtime.cgroups import ContainerCgroup
from runner.runtime.environment import RuntimeEnvironment, RuntimeSettings
from runner.runtime.netns import create_netns, remove_netns
from runner.runtime.overlay import mount_overlay
from runner.runtime.ownership import Owner, write_owner
from runner.runtime.paths import RuntimePaths
from runner.runtime.policy import ContainerPolicy
from runner.runtime.runc import Runc, find_runtime
from runner.runtime.syscalls import unmount_if_mounted
from runner.runtime.trash import Trash
from runner.runtime.users import resolve_user

if TYPE_CHECKING:
    # Imported where used: a sandbox without a disk cap (`kapal exec`) or without NAT never
    # loads them, and start-up is what a one-off container mostly costs (issue 11).
    from runner.runtime.disk import LimitedDisk
    from runner.runtime.usernet import UserNetwork

_READ_SIZE = 65536
_MAX_LINE = 1 << 20
_KILL_RETRY = 0.01
_KILL_WAIT = 1.0
_RUNC_FAILURE = b"runc run failed: "


class _SandboxState:
    """What the backend keeps of one sandbox while it is set up.

    Plain classes, these two: a dataclass costs a third of a millisecond to create, and
    `kapal exec` pays every one of them at start-up."""

    def __init__(
        self,
        sandbox: Sandbox,
        directory: Path,
        netns: Path | None,
        resolv_conf: Path | None,
        usernet: UserNetwork | None = None,
    ) -> None:
        self.sandbox = sandbox
        self.directory = directory
        self.netns = netns
        self.resolv_conf = resolv_conf
        self.usernet = usernet
        self.disk: LimitedDisk | None = None
        self.disk_lock = threading.Lock()
        self.containers: list[str] = []


class _ContainerState:
    """What the backend keeps of one container from `start` until `wait` released it."""

    def __init__(
        self,
        *,
        container: Container,
        directory: Path,
        disk: Path,
        rootfs: Path,
        upper: Path,
        cgroup: ContainerCgroup,
        log: Path,
        proc: subprocess.Popen[bytes],
        started: float,
        sandbox_disk: LimitedDisk | None,
    ) -> None:
        self.container = container
        self.directory = directory
        self.disk = disk
        self.rootfs = rootfs
        self.upper = upper
        self.cgroup = cgroup
        self.log = log
        self.proc = proc
        self.started = started
        self.sandbox_disk = sandbox_disk
        self.lock = threading.Lock()
        self.logs_claimed = False
        self.canceled = False
        self.timed_out = False
        self.timer: threading.Timer | None = None
        self.status: ExitStatus | None = None


class EmbeddedBackend:
    """Runs containers with runc over overlayfs; see `runner.runtime.backend` for the lifecycle."""

    def __init__(
        self, settings: RuntimeSettings | None = None, policy: ContainerPolicy | None = None
    ) -> None:
        settings = settings or RuntimeEnvironment.from_environ()
        self.policy = policy or ContainerPolicy()
        runtime = find_runtime(settings.runtime)
        self._paths = RuntimePaths.for_settings(settings)
        self._runc = Runc(runtime, self._paths.runc_state)
        self._trash = Trash(self._paths.disk_root)
        self._lock = threading.Lock()
        self._sandboxes: dict[str, _SandboxState] = {}
        self._containers: dict[str, _ContainerState] = {}

    def _new_id(self) -> str:
        """A fresh id for a sandbox or container (12 hex digits, like Docker's short ids)."""
        return os.urandom(6).hex()  # what uuid4().hex[:12] gave, without importing uuid

    @property
    def runc(self) -> Runc:
        """The runtime binary and state directory in use."""
        return self._runc

    def drain(self) -> None:
        """Block until the overlay dirs of ended containers are deleted (runner.runtime.trash)."""
        self._trash.drain()

    @property
    def paths(self) -> RuntimePaths:
        """Where this backend keeps runtime files and overlay dirs."""
        return self._paths

    # -- sandboxes -------------------------------------------------------------------------

    def setup(self, spec: SandboxSpec) -> Sandbox:
        """Create the sandbox's directory and network namespace (unless `network: host`)."""
        self.policy.check_network(spec.network, name=spec.name)
        sandbox = Sandbox(id=self._new_id(), spec=spec)
        directory = self._paths.sandbox_dir(sandbox.id)
        directory.mkdir(parents=True)
        netns = None if spec.network == "host" else directory / "netns"
        write_owner(directory, Owner.current(netns=str(netns) if netns else None))
        usernet = None
        try:
            resolv = None
            if netns is not None:
                create_netns(netns)
            if spec.network == "nat":
                assert netns is not None
                from runner.runtime.usernet import UserNetwork, resolv_conf

                usernet = UserNetwork.start(netns, self.policy.allowed_networks)
                resolv = directory / "resolv.conf"
                resolv.write_text(resolv_conf())
            elif spec.network == "host":
                resolv = directory / "resolv.conf"
                host_resolv = Path("/etc/resolv.conf")
                resolv.write_text(host_resolv.read_text() if host_resolv.exists() else "")
        except BaseException:
            if usernet is not None:
                usernet.stop()
            self._remove_sandbox_files(directory, netns)
            raise
        state = _SandboxState(sandbox, directory, netns, resolv, usernet)
        with self._lock:
            self._sandboxes[sandbox.id] = state
        return sandbox

    def teardown(self, sandbox: Sandbox) -> None:
        """Kill and reap the sandbox's containers, then remove its namespace and files."""
        with self._lock:
            state = self._sandboxes.pop(sandbox.id, None)
        if state is None:
            return
        try:
            for container_id in state.containers:
                with self._lock:
                    container = self._containers.get(container_id)
                if container is None:
                    continue
                try:
                    self.stop(container.container, grace=0.0)
                    self.wait(container.container)
                finally:
                    with self._lock:
                        self._containers.pop(container_id, None)
        finally:
            try:
                if state.usernet is not None:
                    state.usernet.stop()
            finally:
                try:
                    with state.disk_lock:
                        if self.policy.disk_bytes is not None or state.disk is not None:
                            from runner.runtime.disk import remove_disk

                            remove_disk(self._paths.sandbox_disk_dir(sandbox.id))
                        state.disk = None
                finally:
                    self._remove_sandbox_files(state.directory, state.netns)

    def _sandbox_disk(self, box: _SandboxState) -> LimitedDisk | None:
        """The sandbox's size-limited disk, made by the first container that needs it."""
        if self.policy.disk_bytes is None:
            return None
        with box.disk_lock:
            if box.disk is None:
                from runner.runtime.disk import LimitedDisk

                mount_point = self._paths.sandbox_disk_dir(box.sandbox.id)
                box.disk = LimitedDisk.create(mount_point, self.policy.disk_bytes)
            return box.disk

    @staticmethod
    def _remove_sandbox_files(directory: Path, netns: Path | None) -> None:
        try:
            if netns is not None:
                remove_netns(netns)
        finally:
            shutil.rmtree(directory, ignore_errors=True)

    # -- containers ------------------------------------------------------------------------

    def start(self, sandbox: Sandbox, spec: ContainerSpec) -> Container:
        """Mount the rootfs, write the bundle and start `runc run`; see the Backend docstring."""
        with self._lock:
            box = self._sandboxes.get(sandbox.id)
        if box is None:
            raise ContainerRuntimeError(f"sandbox {sandbox.id} was torn down or never set up")
        policy = self.policy
        spec = records.replace(
            spec, limits=policy.limits_for(spec.limits), timeout=policy.clamp_timeout(spec.timeout)
        )
        container = Container(id=self._new_id(), sandbox_id=sandbox.id, spec=spec)
        directory = self._paths.container_run_dir(container.id)
        directory.mkdir(parents=True)
        # A layer the caller keeps (the builder's) stays where the caller put it; the others
        # go on the sandbox's size-limited disk, which is created here for the first of them.
        sandbox_disk = None
        if spec.upper_dir is None:
            try:
                sandbox_disk = self._sandbox_disk(box)
            except BaseException:
                shutil.rmtree(directory, ignore_errors=True)
                raise
        if sandbox_disk is not None:
            disk = sandbox_disk.mount_point / f"ct-{container.id}"
        else:
            disk = self._paths.container_disk_dir(container.id)
        rootfs = directory / "rootfs"
        upper = spec.upper_dir if spec.upper_dir is not None else disk / "upper"
        cgroup = ContainerCgroup.for_container(container.id, spec.limits.memory_bytes)
        owner = Owner.current(
            rootfs=str(rootfs),
            cgroups=[str(d) for d in cgroup.dirs],
            runc_id=container.id,
            disk_dir=str(disk),
        )
        write_owner(directory, owner)
        try:
            proc = self._launch(box, container, directory, disk, rootfs, upper, cgroup)
        except BaseException as err:
            self._release(container.id, directory, disk, rootfs, cgroup)
            if isinstance(err, OSError):
                raise ContainerStartError(f"cannot start container {spec.name}: {err}") from err
            raise
        state = _ContainerState(
            container=container,
            directory=directory,
            disk=disk,
            rootfs=rootfs,
            upper=upper,
            cgroup=cgroup,
            log=directory / "runc.log",
            proc=proc,
            started=time.monotonic(),
            sandbox_disk=sandbox_disk,
        )
        if spec.timeout is not None:
            state.timer = threading.Timer(spec.timeout, self._expire, args=(state,))
            state.timer.daemon = True
            state.timer.start()
        with self._lock:
            self._containers[container.id] = state
            box.containers.append(container.id)
            torn_down = sandbox.id not in self._sandboxes
        if torn_down:
            # teardown ran while this container was starting: it must not outlive the sandbox.
            try:
                self.stop(container, grace=0.0)
                self.wait(container)
            finally:
                with self._lock:
                    self._containers.pop(container.id, None)
            raise ContainerRuntimeError(
                f"sandbox {sandbox.id} was torn down while {spec.name} started"
            )
        return container

    def _launch(
        self,
        box: _SandboxState,
        container: Container,
        directory: Path,
        disk: Path,
        rootfs: Path,
        upper: Path,
        cgroup: ContainerCgroup,
    ) -> subprocess.Popen[bytes]:
        spec = container.spec
        if spec.upper_dir is not None and spec.upper_dir.exists() and any(upper.iterdir()):
            raise ContainerStartError(f"the upper dir {upper} for {spec.name} is not empty")
        lowers = list(spec.layers) or ([spec.rootfs] if spec.rootfs is not None else [])
        argv = spec.argv()
        if not argv:
            raise ContainerStartError(
                f"no command for {spec.name}: the image has no Entrypoint or Cmd and none was "
                "given; pass a command (kapal exec IMAGE -- CMD...) or set the job's script"
            )
        cwd = spec.working_dir()
        if not cwd.startswith("/"):
            raise ContainerStartError(f"working directory {cwd!r} must be an absolute path")
        work = spec.work_dir if spec.upper_dir is not None and spec.work_dir else disk / "work"
        mount_overlay(lowers, upper, work, rootfs)
        user = resolve_user(rootfs, spec.user_spec())
        hostname = spec.hostname or _hostname(spec.name)
        hosts = directory / "hosts"
        hosts.write_text(
            "127.0.0.1\tlocalhost "
            + " ".join(dict.fromkeys([hostname, *box.sandbox.spec.aliases]))
            + "\n::1\tlocalhost ip6-localhost ip6-loopback\n"
        )
        files = [(hosts, "/etc/hosts")]
        if box.resolv_conf is not None:
            files.append((box.resolv_conf, "/etc/resolv.conf"))
        for mount in spec.mounts:
            if not mount.source.exists():
                raise ContainerStartError(
                    f"cannot mount {mount.source} into {spec.name}: it does not exist on the host"
                )
        cgroup.create()
        write_bundle(
            directory,
            BundleConfig(
                argv=argv,
                env=spec.environment(),
                cwd=cwd,
                user=user,
                hostname=hostname,
                mounts=spec.mounts,
                files=files,
                netns=box.netns,
                cgroups_path=cgroup.runc_path,
                cpus=spec.limits.cpus,
                pids=spec.limits.pids,
            ),
        )
        cgroup.warm_attach()
        return subprocess.Popen(
            self._runc.run_command(container.id, directory, directory / "runc.log"),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=directory,
            start_new_session=True,
        )

    def logs(self, container: Container) -> Iterator[LogLine]:
        """Yield output lines as they are written; ends when the container's output closes."""
        state = self._state(container)
        with state.lock:
            if state.logs_claimed:
                raise ContainerRuntimeError(
                    f"the logs of container {container.spec.name} are already being read"
                )
            state.logs_claimed = True
        return self._read_output(state)

    def _read_output(self, state: _ContainerState) -> Iterator[LogLine]:
        pipes: dict[Stream, IO[bytes] | None] = {
            "stdout": state.proc.stdout,
            "stderr": state.proc.stderr,
        }
        selector = selectors.DefaultSelector()
        pending: dict[Stream, bytes] = {}
        # runc prints its own failure on the stderr it shares with the container; it also logs
        # it, and `wait` reports it, so a stderr line that looks like it is held back until the
        # stream goes on (container output after all) or ends (dropped if runc logged it).
        held: bytes | None = None
        finished = False
        try:
            for name, pipe in pipes.items():
                if pipe is not None and not pipe.closed:
                    selector.register(pipe.fileno(), selectors.EVENT_READ, name)
                    pending[name] = b""
            while selector.get_map():
                for key, _ in selector.select():
                    stream: Stream = key.data
                    chunk = os.read(key.fd, _READ_SIZE)
                    now = time.time()
                    if not chunk:
                        selector.unregister(key.fd)
                        if stream == "stderr" and held is not None:
                            if pending[stream] or not _is_runc_failure(held, state.log):
                                yield LogLine(stream, now, _decode(held))
                            held = None
                        if pending[stream]:
                            yield LogLine(stream, now, _decode(pending[stream]))
                        pending[stream] = b""
                        continue
                    *lines, rest = (pending[stream] + chunk).split(b"\n")
                    # Output without newlines must not grow without bound: cut long lines.
                    while len(rest) >= _MAX_LINE:
                        lines.append(rest[:_MAX_LINE])
                        rest = rest[_MAX_LINE:]
                    pending[stream] = rest
                    for line in lines:
                        if stream == "stderr":
                            if held is not None:
                                yield LogLine(stream, now, _decode(held))
                                held = None
                            if line.startswith(_RUNC_FAILURE):
                                held = line
                                continue
                        yield LogLine(stream, now, _decode(line))
            finished = True
        finally:
            selector.close()
            if finished:
                for pipe in pipes.values():
                    if pipe is not None:
                        pipe.close()
            else:
                # The reader gave up early: let `wait` drain what is left.
                with state.lock:
                    state.logs_claimed = False

    def wait(self, container: Container) -> ExitStatus:
        """Wait for the container's end, release its resources, and return how it ended."""
        state = self._state(container)
        with state.lock:
            drain = not state.logs_claimed and state.status is None
            if drain:
                state.logs_claimed = True
        if drain:
            for _ in self._read_output(state):
                pass
        state.proc.wait()
        return self._finish(state)

    def stop(self, container: Container, grace: float = 1.0) -> None:
        """SIGTERM the container's init (forwarded by runc), SIGKILL after `grace` seconds."""
        state = self._state(container)
        with state.lock:
            if state.proc.poll() is not None or state.status is not None:
                return
            if not state.timed_out:
                state.canceled = True
        self._terminate(state, grace)

    def _expire(self, state: _ContainerState) -> None:
        with state.lock:
            if state.proc.poll() is not None or state.canceled:
                return
            state.timed_out = True
        self._terminate(state, 0.0)

    def _terminate(self, state: _ContainerState, grace: float) -> None:
        if grace > 0:
            with contextlib.suppress(ProcessLookupError):
                state.proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                state.proc.wait(timeout=grace)
                return
        # runc may not have created the container yet: retry until it exits.
        while state.proc.poll() is None:
            killed = self._runc.kill(state.container.id, "KILL")
            with contextlib.suppress(subprocess.TimeoutExpired):
                state.proc.wait(timeout=_KILL_WAIT if killed else _KILL_RETRY)

    def _finish(self, state: _ContainerState) -> ExitStatus:
        with state.lock:
            if state.status is not None:
                return state.status
            if state.timer is not None:
                state.timer.cancel()
            code = state.proc.returncode
            if code < 0:  # runc itself died of a signal: report it as a shell would
                code = 128 - code
            error = _runc_error(state.log)
            if error is not None:
                code = _start_failure_code(error, code)
            memory = state.container.spec.limits.memory_bytes
            oom = state.cgroup.oom_killed() and code != 0
            spec = state.container.spec
            ended = state.canceled or state.timed_out
            disk = state.sandbox_disk
            disk_full = disk is not None and code != 0 and not oom and not ended and disk.full()
            state.status = ExitStatus(
                exit_code=code,
                duration=time.monotonic() - state.started,
                oom_killed=oom and not state.canceled and not state.timed_out,
                timed_out=state.timed_out,
                canceled=state.canceled,
                timeout=spec.timeout,
                memory_limit=memory,
                error=error if not (state.canceled or state.timed_out) else None,
                disk_exceeded=disk_full,
                disk_limit=disk.size if disk is not None else None,
            )
        self._release(state.container.id, state.directory, state.disk, state.rootfs, state.cgroup)
        return state.status

    def _release(
        self, container_id: str, directory: Path, disk: Path, rootfs: Path, cgroup: ContainerCgroup
    ) -> None:
        try:
            self._runc.delete(container_id)
        finally:
            try:
                cgroup.remove()
            finally:
                try:
                    unmount_if_mounted(str(rootfs))
                finally:
                    shutil.rmtree(directory, ignore_errors=True)
                    # Dirs on a sandbox's disk go with the disk at teardown, at no cost per file.
                    if disk.parent == self._paths.disk_root:
                        self._trash.discard(disk)

    def _state(self, container: Container) -> _ContainerState:
        with self._lock:
            state = self._containers.get(container.id)
        if state is None:
            raise ContainerRuntimeError(
                f"unknown container {container.spec.name} ({container.id}): it was never started "
                "here or has already been waited for"
            )
        return state


def _decode(line: bytes) -> str:
    return line.rstrip(b"\r").decode("utf-8", errors="replace")


def _hostname(name: str) -> str:
    # every run of characters other than letters, digits and '-' becomes one '-'
    kept = "".join(c if (c.isascii() and c.isalnum()) or c == "-" else " " for c in name)
    cleaned = "-".join(kept.split()).strip("-")[:63]
    return cleaned or "container"


def _start_failure_code(error: str, code: int) -> int:
    """Exit codes a shell would give: 127 command not found, 126 not executable."""
    if "no such file" in error or "executable file not found" in error:
        return 127
    if "permission denied" in error:
        return 126
    return code


def _is_runc_failure(line: bytes, log: Path) -> bool:
    """True when `line` is runc's own failure message, as runc logged it."""
    error = _runc_error(log)
    return error is not None and _decode(line) == _RUNC_FAILURE.decode() + error


def _runc_error(log: Path) -> str | None:
    """The message of runc's own failure ("runc run failed: ..."), if it logged one."""
    try:
        lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
    except FileNotFoundError:
        return None
    for line in reversed(lines):
        with contextlib.suppress(ValueError):
            entry = json.loads(line)
            message = str(entry.get("msg", ""))
            if entry.get("level") in ("error", "fatal") and "run failed" in message:
                return message.removeprefix(_RUNC_FAILURE.decode())
    return None
