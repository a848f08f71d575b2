"""The container backend interface: what the engine and the builder ask of a container runtime.

A `Backend` runs the containers of one job inside a *sandbox*: one network namespace shared by the
job's container and its service containers, with `/etc/hosts` mapping every service alias to
127.0.0.1. The sandbox's `NetworkMode` says what that namespace reaches: `"nat"` the outside world
through user-mode NAT but not the host (its loopback is refused; see `runner.runtime.usernet` for
what else), `"none"` its own loopback only, `"host"` the host's network itself (only where the
operator allows it, see `runner.runtime.policy`).

Lifecycle (woodpecker-style), for each job::

    sandbox = backend.setup(SandboxSpec(...))        # once per job
    try:
        svc = backend.start(sandbox, service_spec)   # services first, any number
        ctr = backend.start(sandbox, job_spec)
        for line in backend.logs(ctr): ...           # lines as they come, until the process exits
        status = backend.wait(ctr)                   # ExitStatus; a non-zero exit is a result
        backend.stop(svc, grace=1.0)                 # services are stopped by the caller...
    finally:
        backend.teardown(sandbox)                    # ...or by teardown: always, exactly once

Rules:

- `setup` and `teardown` are called by the thread that owns the job. `teardown` stops every
  container still running in the sandbox and removes everything the sandbox and its containers
  created (runtime state, mounts, overlay dirs, cgroups, network namespace). It never raises for
  cleanup that already happened; calling it twice is harmless.
- `start` returns once the runtime has been launched for the container (its process may still be
  starting; its output and exit are observed through `logs` and `wait`). It raises
  `ContainerStartError` when the container cannot be started (bad spec, unknown user, runtime
  failure); a process that starts and exits non-zero is *not* an error.
- `logs(container)` may be iterated by one thread at a time, once per container. It yields
  `LogLine`s (stream name, timestamp, text without the newline) in the order the process wrote them
  on each stream, as soon as a line is complete, and ends when the process has exited and its output
  is drained. The container's output is read *by this iterator*: a caller that does not want the
  output calls `wait` without calling `logs`, and `wait` drains and discards it.
- `wait(container)` blocks until the container has ended and returns its `ExitStatus`. It may be
  called from another thread while `logs` is being iterated, and more than once (same answer).
  The container's runtime resources are released before `wait` returns, except a kept `upper_dir`.
- `stop(container, grace)` may be called from any thread at any time (cancel): SIGTERM, then
  SIGKILL after `grace` seconds. It is idempotent and a no-op for a container that has ended.
  `wait` then reports `canceled=True`.
- A container's `timeout` is enforced by the backend: the container is killed when it expires and
  `wait` reports `timed_out=True`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal, Protocol

from pipeline.records import field, record
from runner.runtime.durations import format_duration

Stream = Literal["stdout", "stderr"]
NetworkMode = Literal["none", "nat", "host"]


@record
class Mount:
    """A bind mount of a host path into the container (the job workspace, a cache dir...)."""

    source: Path
    target: str
    read_only: bool = False


@record
class Limits:
    """Resource limits of one container; None means the backend's default (see ContainerPolicy)."""

    memory_bytes: int | None = None
    cpus: float | None = None
    pids: int | None = None


@record
class ImageDefaults:
    """The parts of an OCI image config that shape how a container runs (its `config` object)."""

    env: tuple[str, ...] = ()
    working_dir: str = ""
    user: str = ""
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()

    @classmethod
    def from_image_config(cls, config: Mapping[str, Any]) -> ImageDefaults:
        """Read the defaults from an OCI image config (the whole document or its `config` part)."""
        inner = config.get("config", config)
        inner = inner or {}
        return cls(
            env=tuple(inner.get("Env") or ()),
            working_dir=str(inner.get("WorkingDir") or ""),
            user=str(inner.get("User") or ""),
            entrypoint=tuple(inner.get("Entrypoint") or ()),
            cmd=tuple(inner.get("Cmd") or ()),
        )


@record
class ContainerSpec:
    """Everything needed to run one container.

    The root filesystem is an overlay of `layers` (bottom-first directories, as
    `ImageStore.unpacked_layers` returns them) or of the single directory `rootfs`, plus a
    per-container upper dir. When `upper_dir` is set, that directory is the overlay's upper dir and
    it is kept after the container ends (the image builder turns it into a layer); it must be
    empty or absent, must not be inside a lower dir, and must be on the same filesystem as the
    overlay work dir: `work_dir` when set (empty or absent; the caller removes it, e.g. with the
    size-limited disk both are on), else one the backend keeps beside KAPAL_DATA_DIR. runc creates
    the mount points the image lacks in it (`/etc/hosts`, `/etc/resolv.conf`, bind-mount
    targets): drop those from a layer.

    The command follows Docker's rules: `entrypoint` replaces the image's Entrypoint (and then the
    image's Cmd is dropped, as `docker run --entrypoint` does; `()` means no entrypoint, like
    GitLab's `entrypoint: [""]`); `command` replaces the image's Cmd; the process runs
    entrypoint + command. `env` entries override the image's Env by name; `cwd` and `user` override
    WorkingDir and User (`user` is a name from the image's /etc/passwd, `uid` or `uid:gid`).
    """

    name: str = "container"
    layers: tuple[Path, ...] = ()
    rootfs: Path | None = None
    image: ImageDefaults = field(default_factory=ImageDefaults)
    command: tuple[str, ...] | None = None
    entrypoint: tuple[str, ...] | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: str | None = None
    user: str | None = None
    hostname: str | None = None
    mounts: tuple[Mount, ...] = ()
    limits: Limits = field(default_factory=Limits)
    timeout: float | None = None
    upper_dir: Path | None = None
    work_dir: Path | None = None  # only with upper_dir

    def argv(self) -> list[str]:
        """The process arguments after applying the Entrypoint/Cmd rules (may be empty)."""
        if self.entrypoint is not None:
            entrypoint = [a for a in self.entrypoint if a != ""] if self.entrypoint else []
            cmd = list(self.command) if self.command is not None else []
        else:
            entrypoint = list(self.image.entrypoint)
            cmd = list(self.command) if self.command is not None else list(self.image.cmd)
        return entrypoint + cmd

    def environment(self) -> list[str]:
        """The process environment: image Env, then `env` overrides, as `KEY=value` strings."""
        merged: dict[str, str] = {}
        for entry in self.image.env:
            key, _, value = entry.partition("=")
            merged[key] = value
        merged.update(self.env)
        merged.setdefault("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
        return [f"{k}={v}" for k, v in merged.items()]

    def working_dir(self) -> str:
        """The process working directory (absolute)."""
        return self.cwd or self.image.working_dir or "/"

    def user_spec(self) -> str:
        """The user to run as, as written (`name`, `uid`, `uid:gid`, `name:group`); default root."""
        return self.user if self.user is not None and self.user != "" else self.image.user or "0"


@record
class SandboxSpec:
    """A job's sandbox: its network mode and the service aliases that resolve to 127.0.0.1.

    `"none"` is the default here; the engine and the builder ask for `"nat"` unless the pipeline
    says `network: none` or `network: host`.
    """

    name: str = "job"
    network: NetworkMode = "none"
    aliases: tuple[str, ...] = ()


@record
class Sandbox:
    """Handle to a sandbox made by `Backend.setup`; the backend keeps the state behind it."""

    id: str
    spec: SandboxSpec


@record
class Container:
    """Handle to a container started by `Backend.start`."""

    id: str
    sandbox_id: str
    spec: ContainerSpec


@record
class LogLine:
    """One line of a container's output: stream name, time it was read (epoch seconds), text."""

    stream: Stream
    timestamp: float
    text: str

    def __init__(self, stream: Stream, timestamp: float, text: str) -> None:
        # written out, as dataclass would: one is made per line of output, and `@record`'s
        # general __init__ takes twice as long
        setattr_ = object.__setattr__
        setattr_(self, "stream", stream)
        setattr_(self, "timestamp", timestamp)
        setattr_(self, "text", text)


@record
class ExitStatus:
    """How a container ended. A non-zero exit code is a result, not an error.

    `error` is set when the runtime could not start the process (command not found, bad working
    directory...): then `exit_code` is 127 (not found), 126 (not executable) or runc's own code.
    """

    exit_code: int
    duration: float
    oom_killed: bool = False
    timed_out: bool = False
    canceled: bool = False
    timeout: float | None = None
    memory_limit: int | None = None
    error: str | None = None
    disk_exceeded: bool = False  # it failed with its sandbox's disk full
    disk_limit: int | None = None

    @property
    def ok(self) -> bool:
        """True when the process exited 0 and was neither killed nor canceled."""
        killed = self.oom_killed or self.timed_out or self.canceled or self.disk_exceeded
        return self.exit_code == 0 and not killed and self.error is None

    def describe(self) -> str:
        """A short sentence for a person: "exited with code 1", "timed out after 10m", ..."""
        if self.error:
            return f"could not start: {self.error}"
        if self.timed_out:
            return f"timed out after {format_duration(self.timeout or self.duration)}"
        if self.canceled:
            return "canceled"
        if self.oom_killed:
            limit = f" (limit {format_size(self.memory_limit)})" if self.memory_limit else ""
            return f"killed: out of memory{limit}"
        if self.disk_exceeded:
            limit = f" ({format_size(self.disk_limit)})" if self.disk_limit else ""
            return f"disk limit exceeded{limit}: exited with code {self.exit_code}"
        return f"exited with code {self.exit_code}"


def format_size(value: int) -> str:
    """A byte count as a person writes it: "4 GiB", "512 MiB", "1000 bytes"."""
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if value >= size and value % size == 0:
            return f"{value // size} {unit}"
    return f"{value} bytes"


class Backend(Protocol):
    """A container runtime; see the module docstring for the lifecycle and thread rules."""

    def setup(self, spec: SandboxSpec) -> Sandbox:
        """Create a job's sandbox (network namespace, hosts file)."""
        ...

    def start(self, sandbox: Sandbox, spec: ContainerSpec) -> Container:
        """Start a container in the sandbox; return once the runtime is launched for it."""
        ...

    def logs(self, container: Container) -> Iterator[LogLine]:
        """Yield the container's output lines as they come, until it exits."""
        ...

    def wait(self, container: Container) -> ExitStatus:
        """Block until the container ended; release its resources; return how it ended."""
        ...

    def stop(self, container: Container, grace: float = 1.0) -> None:
        """Stop the container: SIGTERM, then SIGKILL after `grace` seconds (any thread)."""
        ...

    def teardown(self, sandbox: Sandbox) -> None:
        """Stop what still runs in the sandbox and remove everything it created."""
        ...
