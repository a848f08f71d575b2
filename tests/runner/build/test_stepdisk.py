"""The disk a build's RUN steps share: each step starts on an empty disk with the whole cap."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

from runner.build.stepdisk import BuildDisk
from runner.runtime.embedded import EmbeddedBackend
from runner.runtime.policy import ContainerPolicy
from runner.settings import RunnerSettings

CAP = 64 << 20


def _backend(data_dir: Path, disk_bytes: int | None) -> EmbeddedBackend:
    settings = RunnerSettings(data_dir=data_dir)
    return EmbeddedBackend(settings, ContainerPolicy(disk_bytes=disk_bytes))


def _mounted(path: Path) -> bool:
    with open("/proc/self/mountinfo") as mounts:
        return any(f" {path} " in line for line in mounts)


def test_steps_share_one_disk_made_on_first_use_and_removed_on_close(tmp_path: Path) -> None:
    made: list[Path] = []

    @contextlib.contextmanager
    def tmp_dir() -> Iterator[Path]:
        path = tmp_path / f"work{len(made)}"
        path.mkdir()
        made.append(path)
        yield path

    disk = BuildDisk(tmp_dir)
    assert made == []  # nothing until a step runs
    backend = _backend(tmp_path / "data", CAP)
    try:
        with disk.step(backend) as first:
            assert first is not None
            first.upper.mkdir()
            (first.upper / "f").write_bytes(b"\0" * (40 << 20))
        with disk.step(backend) as second:
            assert second is not None and second.disk is first.disk
            names = sorted(p.name for p in second.disk.mount_point.iterdir())
            assert names == ["lost+found", "step-2"]
            info = os.statvfs(second.disk.mount_point)
            assert info.f_bavail * info.f_frsize > CAP - (8 << 20)  # the 40 MiB are free again
    finally:
        disk.close()
    assert len(made) == 1 and not _mounted(made[0] / "disk") and not list(made[0].iterdir())
    disk.close()  # idempotent


def test_a_step_whose_files_cannot_be_deleted_leaves_the_next_step_a_new_disk(
    tmp_path: Path,
) -> None:
    @contextlib.contextmanager
    def tmp_dir() -> Iterator[Path]:
        path = tmp_path / f"work{len(list(tmp_path.glob('work*')))}"
        path.mkdir()
        yield path

    disk = BuildDisk(tmp_dir)
    backend = _backend(tmp_path / "data", CAP)
    try:
        with disk.step(backend) as first:
            assert first is not None
            first.upper.mkdir()
            (first.upper / "stuck").write_text("x")
            subprocess.run(["chattr", "+i", str(first.upper / "stuck")], check=True)
        assert not _mounted(first.disk.mount_point)  # given up: unmounted, image deleted
        assert not first.disk.image.exists()
        with disk.step(backend) as second:
            assert second is not None and second.disk.mount_point != first.disk.mount_point
            names = sorted(p.name for p in second.disk.mount_point.iterdir())
            assert names == ["lost+found", "step-2"]
    finally:
        disk.close()


def test_no_cap_no_disk(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    disk = BuildDisk(lambda: contextlib.nullcontext(work))
    with disk.step(_backend(tmp_path / "data", None)) as step:
        assert step is None
    disk.close()
    assert list(work.iterdir()) == []
