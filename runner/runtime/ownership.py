"""`owner.json`: which process made a container or sandbox directory and what it holds.

Written before any resource is created, so `kapal gc` can undo a start that a crash interrupted.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import NamedTuple

OWNER_FILE = "owner.json"


def _start_time(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 22 (starttime) counts from the end of the command name, which may hold spaces.
    return int(stat.rsplit(")", 1)[1].split()[19])


class Owner(NamedTuple):
    """The process that owns a directory, and the resources behind it."""

    pid: int
    start_time: int
    rootfs: str | None = None
    netns: str | None = None
    runc_id: str | None = None
    cgroups: tuple[str, ...] = ()
    disk_dir: str | None = None

    @classmethod
    def current(
        cls,
        *,
        rootfs: str | None = None,
        netns: str | None = None,
        runc_id: str | None = None,
        cgroups: list[str] | None = None,
        disk_dir: str | None = None,
    ) -> Owner:
        """An owner record for this process."""
        pid = os.getpid()
        return cls(
            pid, _start_time(pid) or 0, rootfs, netns, runc_id, tuple(cgroups or ()), disk_dir
        )

    def alive(self) -> bool:
        """True when the owning process still runs (same pid and start time)."""
        return _start_time(self.pid) == self.start_time


def write_owner(directory: Path, owner: Owner) -> None:
    """Record `owner` in the new `directory` (one write; a reader may see it half-written).

    No write-and-rename: this runs for every container and each metadata operation costs.
    `kapal gc` treats an unreadable record like a missing one (see `runner.runtime.gc`).
    """
    fd = os.open(directory / OWNER_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        os.write(fd, json.dumps(owner._asdict()).encode())
    finally:
        os.close(fd)


def read_owner(directory: Path) -> Owner | None:
    """The owner recorded in `directory`, or None when missing or unreadable."""
    try:
        data = json.loads((directory / OWNER_FILE).read_text())
        return Owner(**{**data, "cgroups": tuple(data.get("cgroups") or ())})
    except (OSError, ValueError, TypeError):
        return None
