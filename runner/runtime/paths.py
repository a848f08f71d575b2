"""Where the embedded backend keeps things: runtime files on tmpfs, overlay dirs on disk.

Like Docker's exec-root and data-root: what lives only as long as a container (config.json, the
generated /etc/hosts, runc's state and log, owner records, the rootfs mount point, the pinned
network namespace) goes to a tmpfs run dir, because every file and directory removed from a
busy ext4 costs milliseconds per container; the overlay upper and work dirs, which hold whatever
a job writes, stay on disk under `KAPAL_DATA_DIR`.

The run dir is `/run/kapal/<key>` when /run is a tmpfs, else `/dev/shm/kapal/<key>`, else
`<containers_dir>/run`; `<key>` is derived from the data dir, so workers and `kapal gc` sharing a
data dir agree on it, and two data dirs never share one. A run dir records its data dir; when a
new one is made, empty run dirs of data dirs that no longer exist (temporary test data dirs) are
swept away.
"""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path
from typing import NamedTuple

from runner.errors import ContainerRuntimeError
from runner.runtime.environment import RuntimeSettings
from runner.text_digest import text_sha256


def _tmpfs_mounts() -> set[str]:
    points: set[str] = set()
    with open("/proc/self/mountinfo", encoding="utf-8") as info:
        for line in info:
            pre, _, post = line.partition(" - ")
            if post.split()[:1] == ["tmpfs"]:
                points.add(pre.split()[4])
    return points


def _private_dir(path: Path) -> Path:
    """Create `path` (0700) or accept it only if it is a real directory owned by us."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:
        info = path.lstat()
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
            raise ContainerRuntimeError(
                f"{path} exists but is not a directory owned by this user: remove it"
            ) from None
    return path


DATA_DIR_MARKER = "data-dir"


def _sweep_abandoned(base: Path, keep: Path) -> None:
    """Remove run dirs whose data dir is gone and which hold nothing (test sessions leave many)."""
    for run in base.iterdir():
        if run == keep or not run.is_dir():
            continue
        try:
            data_dir = Path((run / DATA_DIR_MARKER).read_text())
        except OSError:
            continue
        state = run / "runc-state"
        busy = any(run.glob("ct-*")) or any(run.glob("sb-*"))
        if data_dir.exists() or busy or (state.is_dir() and any(state.iterdir())):
            continue
        shutil.rmtree(run, ignore_errors=True)


class RuntimePaths(NamedTuple):
    """The run dir (tmpfs) and the disk dir of the embedded backend for one data dir."""

    run_root: Path
    disk_root: Path

    @classmethod
    def for_settings(cls, settings: RuntimeSettings) -> RuntimePaths:
        """Pick (and create) the directories for `settings.data_dir`."""
        disk = settings.containers_dir
        try:
            disk.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise ContainerRuntimeError(
                f"cannot create {disk} for containers ({err.strerror}): KAPAL_DATA_DIR "
                f"({settings.data_dir}) must be a directory kapal can write to"
            ) from err
        key = text_sha256(str(settings.data_dir.resolve()))[:16]
        tmpfs = _tmpfs_mounts()
        base = next(
            (
                Path(p) / "kapal"
                for p in ("/run", "/dev/shm")
                if p in tmpfs and os.access(p, os.W_OK)
            ),
            None,
        )
        if base is None:
            return cls(run_root=_private_dir(disk / "run"), disk_root=disk)
        _private_dir(base)
        run = _private_dir(base / key)
        marker = run / DATA_DIR_MARKER
        if not marker.exists():
            marker.write_text(str(settings.data_dir.resolve()))
            _sweep_abandoned(base, keep=run)
        return cls(run_root=run, disk_root=disk)

    @property
    def runc_state(self) -> Path:
        """runc's --root."""
        return self.run_root / "runc-state"

    def container_run_dir(self, container_id: str) -> Path:
        """Bundle, hosts file, runc log, owner record and rootfs mount point of a container."""
        return self.run_root / f"ct-{container_id}"

    def container_disk_dir(self, container_id: str) -> Path:
        """Overlay upper and work dirs of a container."""
        return self.disk_root / f"ct-{container_id}"

    def sandbox_disk_dir(self, sandbox_id: str) -> Path:
        """Mount point of a sandbox's size-limited disk (runner.runtime.disk), image beside it."""
        return self.disk_root / f"sb-{sandbox_id}"

    def sandbox_dir(self, sandbox_id: str) -> Path:
        """Owner record, pinned netns and resolv.conf of a sandbox."""
        return self.run_root / f"sb-{sandbox_id}"
