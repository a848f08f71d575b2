"""What containers leave behind: a backend recording the ids it hands out, and a check that
none of them left runc state, a mount, a cgroup or a directory (shared by the runtime and
end-to-end tests).

The embedded backend deletes a finished container's overlay dirs in the background (from its
trash, see runner.runtime.trash); `RecordingBackend.wait` (and a failed `start`) waits for that,
so that `leftovers` right after a run is exact: a directory still in the trash counts as left
behind."""

from __future__ import annotations

import threading
from collections.abc import Iterable

from runner.runtime.backend import Container, ContainerSpec, ExitStatus, Sandbox, SandboxSpec
from runner.runtime.cgroups import current_hierarchies
from runner.runtime.embedded import EmbeddedBackend
from runner.runtime.paths import RuntimePaths
from runner.runtime.syscalls import mount_points
from runner.runtime.trash import trash_dir
from runner.settings import RunnerSettings


class RecordingBackend(EmbeddedBackend):
    """The embedded backend, remembering every container and sandbox id it handed out (even
    for failed starts), from any thread."""

    def __init__(self, settings: RunnerSettings) -> None:
        super().__init__(settings)
        self.container_ids: list[str] = []
        self.sandbox_ids: list[str] = []
        self._in_setup = threading.local()

    def _new_id(self) -> str:
        new = super()._new_id()
        in_setup = getattr(self._in_setup, "active", False)
        (self.sandbox_ids if in_setup else self.container_ids).append(new)
        return new

    def setup(self, spec: SandboxSpec) -> Sandbox:
        """Set up the sandbox, recording its id as a sandbox's."""
        self._in_setup.active = True
        try:
            return super().setup(spec)
        finally:
            self._in_setup.active = False

    def start(self, sandbox: Sandbox, spec: ContainerSpec) -> Container:
        """Start as the embedded backend does; after a failed start, wait for its cleanup too."""
        try:
            return super().start(sandbox, spec)
        except BaseException:
            self.drain()
            raise

    def wait(self, container: Container) -> ExitStatus:
        """Wait as the embedded backend does, then for the deletion of the overlay dirs too."""
        status = super().wait(container)
        self.drain()
        return status


def leftovers(
    settings: RunnerSettings, container_ids: list[str], sandbox_ids: list[str]
) -> list[str]:
    """Everything the given containers and sandboxes left behind (empty when clean)."""
    paths = RuntimePaths.for_settings(settings)
    found: list[str] = []
    mounts = mount_points()
    for cid in container_ids:
        if (paths.runc_state / cid).exists():
            found.append(f"runc state of {cid}")
        disk = paths.container_disk_dir(cid)
        for directory in (
            paths.container_run_dir(cid),
            disk,
            trash_dir(paths.disk_root) / disk.name,
        ):
            if directory.exists():
                found.append(f"directory {directory}")
        found += [f"mount {m}" for m in mounts if f"ct-{cid}" in m]
        for hierarchy in current_hierarchies():
            if (hierarchy.own_dir / f"kapal-{cid}").exists():
                found.append(f"cgroup {hierarchy.own_dir / f'kapal-{cid}'}")
    for sid in sandbox_ids:
        if paths.sandbox_dir(sid).exists():
            found.append(f"directory {paths.sandbox_dir(sid)}")
        found += [f"mount {m}" for m in mounts if f"sb-{sid}" in m]
    return found


def data_dir_leftovers(settings: RunnerSettings, container_ids: Iterable[str] = ()) -> list[str]:
    """Containers, sandboxes, runc state and mounts left under a data dir, and the cgroups of
    `container_ids` (cgroups are not under the data dir, so only known ids are checked)."""
    root = settings.containers_dir
    found: list[str] = []
    if root.is_dir():
        found += [
            f"directory {p.name}" for p in root.iterdir() if p.name not in ("runc-state", "trash")
        ]
        found += [f"trash {p.name}" for p in trash_dir(root).glob("*")]
        state = root / "runc-state"
        if state.is_dir():
            found += [f"runc state {p.name}" for p in state.iterdir()]
    found += [f"mount {m}" for m in mount_points() if str(settings.data_dir) in m]
    for cid in container_ids:
        for hierarchy in current_hierarchies():
            if (hierarchy.own_dir / f"kapal-{cid}").exists():
                found.append(f"cgroup {hierarchy.own_dir / f'kapal-{cid}'}")
    return found
