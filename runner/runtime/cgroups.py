"""cgroup v1 (and hybrid) groups for containers: a kapal-owned parent per container.

cgroupsPath is relative to kapal's own cgroups, so nested workers work. Without a memory limit
runc creates and removes the container's group `kapal-<id>` itself. With one, runc puts the
container in `kapal-<id>/ctr` and applies the CPU and pids limits there, while kapal creates the
parent and sets the memory limit on it: the kernel then raises the OOM event on the parent, which
outlives runc's leaf, so kapal can tell an OOM kill from any other SIGKILL after the container is
gone (as Docker does on cgroup v1, through `cgroup.event_control`). The parent costs one rmdir per
hierarchy (about 1 ms each), which is why containers without a memory limit do without it.

A move into a cgroup (the write to `cgroup.procs` runc makes for the container's process) first
waits for the kernel's next RCU grace period, unless another move happened a few milliseconds
before. Measured on a 2-core VM (kernel 6.18, cgroup v1): 6-8 ms, at times 18, when the last move
was 30 ms or more ago; 0.03 ms within 10 ms of one. runc makes its first move about 8 ms after
it starts, so `ContainerCgroup.warm_attach` makes a move of its own as runc starts, on a thread:
kapal's process into the group it is already in, in a hierarchy without controllers (a no-op
for the kernel). The wait then overlaps runc's start-up, and runc finds the moves cheap: a
container started after an idle moment is ready 6-10 ms sooner. Where the write is refused (a
read-only cgroup tree), runc simply waits as it would have.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from pathlib import Path
from typing import NamedTuple

from runner.errors import ContainerStartError

LEAF = "ctr"


class Hierarchy(NamedTuple):
    """One mounted cgroup hierarchy and this process's group in it."""

    controllers: frozenset[str]
    own_dir: Path


def current_hierarchies() -> list[Hierarchy]:
    """The cgroup hierarchies this process belongs to, with its own group directory in each."""
    mounts: dict[frozenset[str], tuple[str, str]] = {}
    with open("/proc/self/mountinfo", encoding="utf-8") as info:
        for line in info:
            pre, _, post = line.partition(" - ")
            fields, post_fields = pre.split(), post.split()
            if len(post_fields) < 3:
                continue
            fstype, options = post_fields[0], post_fields[2]
            if fstype == "cgroup2":
                mounts.setdefault(frozenset(), (fields[3], fields[4]))
            elif fstype == "cgroup":
                names = {o for o in options.split(",") if o not in ("rw", "ro")}
                keep = {o for o in names if o.startswith("name=") or "=" not in o}
                mounts.setdefault(frozenset(keep), (fields[3], fields[4]))
    found: list[Hierarchy] = []
    with open("/proc/self/cgroup", encoding="utf-8") as groups:
        for line in groups:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            key = frozenset(c for c in controllers.split(",") if c)
            if key not in mounts:
                continue
            root, mount_point = mounts[key]
            relative = os.path.relpath(path, root) if path.startswith(root) else path.lstrip("/")
            found.append(Hierarchy(key, Path(mount_point) / relative))
    return found


class ContainerCgroup:
    """The parent cgroups of one container; create before runc runs, `remove` after.

    Lifecycle: `create()` (memory limit + OOM event armed) → runc runs in `runc_path` →
    `oom_killed()` → `remove()` (always, in `finally`; idempotent).
    """

    def __init__(
        self,
        name: str,
        dirs: list[Path],
        memory_limit: int | None,
        warm_file: Path | None = None,
    ) -> None:
        self.name = name
        self.dirs = dirs
        self.memory_limit = memory_limit
        self.warm_file = warm_file
        self._event_fd: int | None = None

    @classmethod
    def for_container(cls, container_id: str, memory_limit: int | None) -> ContainerCgroup:
        """Describe the cgroups of a container (nothing is created yet)."""
        name = f"kapal-{container_id}"
        hierarchies = current_hierarchies()
        dirs = [h.own_dir / name for h in hierarchies]
        return cls(name, dirs, memory_limit, warm_file=warm_attach_file(hierarchies))

    def warm_attach(self) -> None:
        """As runc starts: a no-op move of this process on a thread (see the module docstring)."""
        if self.warm_file is not None:
            threading.Thread(
                target=move_self_into, args=(self.warm_file,), name="kapal-warm", daemon=True
            ).start()

    @property
    def runc_path(self) -> str:
        """The cgroupsPath to give runc (relative: below this process's own groups)."""
        return f"{self.name}/{LEAF}" if self.memory_limit is not None else self.name

    def _memory_dir(self) -> Path | None:
        for directory in self.dirs:
            if (directory.parent / "memory.limit_in_bytes").exists():
                return directory
        return None

    def create(self) -> None:
        """With a memory limit: create the memory parent, set the limit, arm the OOM event."""
        if self.memory_limit is None:
            return
        memory = self._memory_dir()
        if memory is None:
            raise ContainerStartError(
                "a memory limit was asked for but no cgroup v1 memory controller is mounted"
            )
        try:
            memory.mkdir(exist_ok=True)
            (memory / "memory.limit_in_bytes").write_text(str(self.memory_limit))
            swap = memory / "memory.memsw.limit_in_bytes"
            if swap.exists():
                swap.write_text(str(self.memory_limit))
            control = os.open(memory / "memory.oom_control", os.O_RDONLY)
            try:
                self._event_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
                (memory / "cgroup.event_control").write_text(f"{self._event_fd} {control}")
            finally:
                os.close(control)
        except OSError as err:
            raise ContainerStartError(
                f"cannot set up the container's memory cgroup {memory}: {err.strerror}"
            ) from err

    def oom_killed(self) -> bool:
        """True when the kernel's OOM killer ran in this container's memory group."""
        if self._event_fd is None:
            return False
        try:
            return os.eventfd_read(self._event_fd) > 0
        except BlockingIOError:
            return False

    def remove(self) -> None:
        """Kill anything left in the groups and remove them (idempotent)."""
        if self._event_fd is not None:
            os.close(self._event_fd)
            self._event_fd = None
        remove_cgroup_dirs(self.dirs)


def warm_attach_file(hierarchies: list[Hierarchy]) -> Path | None:
    """`cgroup.procs` of this process's own group in a hierarchy without controllers, if any.

    The cgroup2 mount (the unified one beside v1's, or the only one) comes first, then a named
    v1 hierarchy (`name=systemd`). A hierarchy with controllers is never used: a move there could
    run a controller's attach code (cpuset's resets CPU affinity).
    """
    ranked = sorted(
        (h for h in hierarchies if all(c.startswith("name=") for c in h.controllers)),
        key=lambda h: len(h.controllers),
    )
    return ranked[0].own_dir / "cgroup.procs" if ranked else None


def move_self_into(procs: Path) -> None:
    """Write this process into `procs` (its own group: nothing moves); refusals are ignored."""
    try:
        fd = os.open(procs, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, b"0")
        finally:
            os.close(fd)
    except OSError:
        pass  # e.g. a read-only cgroup tree in a container: runc then waits as it would have


def remove_cgroup_dirs(dirs: list[Path]) -> None:
    """Remove container cgroups `dirs` and their leaves, killing any process still in them."""
    for directory in dirs:
        leaf = directory / LEAF
        for group in (leaf, directory):
            if not group.is_dir():
                continue
            for _ in range(50):
                try:
                    group.rmdir()
                    break
                except OSError:
                    _kill_members(group)
                    time.sleep(0.02)


def _kill_members(group: Path) -> None:
    with contextlib.suppress(OSError):
        for pid in (group / "cgroup.procs").read_text().split():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
