"""Size-limited disks for jobs: a sparse ext4 image, loop-mounted, per sandbox (or job dir).

A job must not fill the host's disk through its writable layer or its workspace. The cap is a
filesystem of its own: a sparse file of the cap's size (it takes only the blocks written),
formatted ext4 without a journal (once per size and process: later disks are copies of the
first one's image) and loop-mounted `nodev,nosuid` (runner.runtime.loopdev, without mount(8)).
A write past the cap gets ENOSPC inside the job, the host's filesystem never sees more than the
cap, and removing the disk is one unmount and one unlink however many files the job wrote.

Measured on the tested machine (2 cores shared with other work, load average about 6, ext4 on
virtio, kernel 6.18), 10 GiB image: create (mkfs.ext4 + loop mount) 28-49 ms, remove (unmount,
which frees the image's blocks) 20-40 ms; bench/container_start.py puts a one-container sandbox
at about 124 ms with the disk against 79 ms without (median of 20). Copying the formatted
image instead of running mkfs.ext4 and mounting with ioctls instead of mount(8) brought create
down to 5-12 ms (load average about 9). Only sandboxes whose
containers write a layer pay it (a build gets one for its RUN steps: runner.build.stepdisk). A
size-limited tmpfs would hold what jobs write in RAM; a watchdog summing file sizes would let a
fast writer overshoot between two scans and cost a tree walk per scan.

`kapal gc` unmounts and removes the disks of sandboxes whose owner died (runner.runtime.gc).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

from runner.errors import ContainerRuntimeError
from runner.runtime.loopdev import MS_NODEV, MS_NOSUID, mount_image
from runner.runtime.syscalls import unmount_if_mounted

IMAGE_SUFFIX = ".img"
# A disk with less than this free counts as full: ext4 keeps a few blocks a job cannot use.
_FULL_MARGIN = 1 << 20
# What mkfs.ext4 wrote, per disk size: the (offset, data) extents of the sparse image. A disk of
# a size made before in this process is written from them (about 1 ms) instead of running
# mkfs.ext4 again (10-25 ms); the filesystems share their UUID, which ext4 does not mind.
_formatted: dict[int, tuple[tuple[int, bytes], ...]] = {}
_FORMATTED_MAX = 4 << 20  # a formatted image holds about 0.2 MB; keep no more than this


class LimitedDisk:
    """A loop-mounted ext4 of `size` bytes at `mount_point`, its image file beside it.

    Lifecycle: `LimitedDisk.create(mount_point, size)` → files written under `mount_point` →
    `full()` to tell a disk-full failure from others → `remove()` (idempotent, in `finally`).
    """

    def __init__(self, mount_point: Path, size: int) -> None:
        self.mount_point = mount_point
        self.size = size

    @property
    def image(self) -> Path:
        """The sparse file holding the filesystem."""
        return image_of(self.mount_point)

    @classmethod
    def create(cls, mount_point: Path, size: int) -> LimitedDisk:
        """Make the image and mount it on `mount_point` (created; must not exist yet)."""
        disk = cls(mount_point, size)
        mkfs = shutil.which("mkfs.ext4")
        if mkfs is None:
            raise ContainerRuntimeError(
                "jobs get a disk of their own and mkfs.ext4 is missing: apt-get install e2fsprogs"
            )
        mount_point.mkdir()
        try:
            fd = os.open(disk.image, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            try:
                os.ftruncate(fd, size)
                formatted = _formatted.get(size)
                for offset, data in formatted or ():
                    os.pwrite(fd, data, offset)
            finally:
                os.close(fd)
            if formatted is None:
                disk._format(mkfs)
            disk._mount()
        except BaseException:
            disk.remove()
            raise
        return disk

    def _format(self, mkfs: str) -> None:
        _run(
            [
                mkfs,
                "-q",
                "-F",
                "-m",
                "0",
                "-O",
                "^has_journal,^resize_inode",  # no reserve for growing: 0.2 MB written, not 4
                "-G",
                "256",  # metadata of 256 groups together: fewer extents to free at the end
                "-E",
                "lazy_itable_init=1,lazy_journal_init=1,nodiscard",
                str(self.image),
            ],
            "format",
            self,
        )
        extents = _data_extents(self.image)
        if sum(len(data) for _, data in extents) <= _FORMATTED_MAX:
            _formatted[self.size] = extents

    def _mount(self) -> None:
        try:
            mount_image(self.image, self.mount_point, "ext4", MS_NODEV | MS_NOSUID)
        except OSError:  # no LOOP_CONFIGURE (Linux < 5.8) or no loop nodes: as mount(8) does it
            options = "loop,nodev,nosuid"
            argv = ["mount", "-t", "ext4", "-o", options, str(self.image), str(self.mount_point)]
            _run(argv, "mount", self)

    def full(self) -> bool:
        """True when (almost) no space, or no inode, is left on the disk."""
        try:
            info = os.statvfs(self.mount_point)
        except OSError:
            return False
        return info.f_bavail * info.f_frsize < _FULL_MARGIN or info.f_favail == 0

    def remove(self) -> None:
        """Unmount the disk and delete its image and mount point (idempotent)."""
        remove_disk(self.mount_point)


def image_of(mount_point: Path) -> Path:
    """Where the image of the disk mounted at `mount_point` lives."""
    return mount_point.with_name(mount_point.name + IMAGE_SUFFIX)


def remove_disk(mount_point: Path) -> None:
    """Unmount a disk made by `LimitedDisk.create` and delete its files (no-op when gone)."""
    unmount_if_mounted(str(mount_point))
    with contextlib.suppress(FileNotFoundError):
        mount_point.rmdir()
    image_of(mount_point).unlink(missing_ok=True)


@contextlib.contextmanager
def limited_disk(mount_point: Path, size: int) -> Iterator[LimitedDisk]:
    """A `LimitedDisk` at `mount_point` for the duration of the block (e.g. a job's workspace)."""
    disk = LimitedDisk.create(mount_point, size)
    try:
        yield disk
    finally:
        disk.remove()


def _data_extents(image: Path) -> tuple[tuple[int, bytes], ...]:
    # The parts of a sparse file that are not holes, with their contents.
    extents: list[tuple[int, bytes]] = []
    fd = os.open(image, os.O_RDONLY | os.O_CLOEXEC)
    try:
        end = os.fstat(fd).st_size
        offset = 0
        while offset < end:
            try:
                start = os.lseek(fd, offset, os.SEEK_DATA)
            except OSError:  # ENXIO: only a hole is left
                break
            offset = os.lseek(fd, start, os.SEEK_HOLE)
            extents.append((start, os.pread(fd, offset - start, start)))
    finally:
        os.close(fd)
    return tuple(extents)


def _run(argv: list[str], what: str, disk: LimitedDisk) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise ContainerRuntimeError(
            f"cannot {what} the job's disk {disk.image}: {done.stderr.strip() or done.returncode}"
        )
