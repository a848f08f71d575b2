"""`kapal gc`: remove what crashed workers left behind (runc state, mounts, cgroups, netns, disks,
and the work dirs of killed builds with the step disks mounted in them).

Only directories whose owner process (see `runner.runtime.ownership`) is gone are touched, so
`gc` is safe to run while other workers use the same data dir.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from runner.errors import ContainerRuntimeError
from runner.runtime.cgroups import remove_cgroup_dirs
from runner.runtime.disk import IMAGE_SUFFIX, remove_disk
from runner.runtime.environment import RuntimeSettings
from runner.runtime.netns import remove_netns
from runner.runtime.ownership import read_owner
from runner.runtime.paths import RuntimePaths
from runner.runtime.runc import Runc, find_runtime
from runner.runtime.syscalls import mount_points, unmount_if_mounted
from runner.runtime.trash import empty_trash

_OWNERLESS_GRACE = 60.0


@dataclass
class GcReport:
    """What `collect` removed."""

    containers: list[str] = field(default_factory=list)
    sandboxes: list[str] = field(default_factory=list)
    runc_states: list[str] = field(default_factory=list)
    builds: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line for a person."""
        return (
            f"removed {len(self.containers)} container(s), {len(self.sandboxes)} sandbox(es), "
            f"{len(self.runc_states)} orphaned runc state(s), "
            f"{len(self.builds)} build work dir(s)"
        )


def collect(settings: RuntimeSettings) -> GcReport:
    """Remove every container, sandbox and build work dir of `settings.data_dir` whose owner
    process is gone."""
    report = GcReport()
    if settings.containers_dir.is_dir():
        _collect_containers(settings, report)
    # After the containers: a killed build's RUN step overlay sits on its step disk.
    _collect_build_work(settings.data_dir / "build-cache" / "tmp", report)
    return report


def _collect_containers(settings: RuntimeSettings, report: GcReport) -> None:
    paths = RuntimePaths.for_settings(settings)
    runc: Runc | None
    try:
        runc = Runc(find_runtime(settings.runtime), paths.runc_state)
    except ContainerRuntimeError as err:
        runc = None
        report.warnings.append(f"runc state not checked: {err}")
    live: set[str] = set()
    for directory in sorted(paths.run_root.glob("ct-*")):
        owner = read_owner(directory)
        container_id = directory.name.removeprefix("ct-")
        if (owner is not None and owner.alive()) or (owner is None and _young(directory)):
            live.add(container_id)
            continue
        if runc is not None:
            runc.delete(container_id)
        remove_cgroup_dirs([Path(p) for p in owner.cgroups] if owner else [])
        unmount_if_mounted(str(directory / "rootfs"))
        shutil.rmtree(directory, ignore_errors=True)
        shutil.rmtree(paths.container_disk_dir(container_id), ignore_errors=True)
        report.containers.append(container_id)
    # Overlay dirs on disk whose runtime files are gone (a reboot emptied the tmpfs run dir).
    for directory in sorted(paths.disk_root.glob("ct-*")):
        container_id = directory.name.removeprefix("ct-")
        if container_id in live or paths.container_run_dir(container_id).exists():
            continue
        if _young(directory):
            continue
        shutil.rmtree(directory, ignore_errors=True)
        report.containers.append(container_id)
    for directory in sorted(paths.run_root.glob("sb-*")):
        owner = read_owner(directory)
        if (owner is not None and owner.alive()) or (owner is None and _young(directory)):
            continue
        sandbox_id = directory.name.removeprefix("sb-")
        remove_netns(directory / "netns")
        remove_disk(paths.sandbox_disk_dir(sandbox_id))
        shutil.rmtree(directory, ignore_errors=True)
        report.sandboxes.append(sandbox_id)
    # Sandbox disks whose runtime files are gone (a reboot emptied the run dir and the mounts).
    for image in sorted(paths.disk_root.glob(f"sb-*{IMAGE_SUFFIX}")):
        mount_point = image.with_name(image.name.removesuffix(IMAGE_SUFFIX))
        sandbox_id = mount_point.name.removeprefix("sb-")
        if paths.sandbox_dir(sandbox_id).exists() or _young(image):
            continue
        remove_disk(mount_point)
        report.sandboxes.append(sandbox_id)
    # Overlay dirs a killed process had moved to the trash but not yet deleted.
    report.containers += [name.removeprefix("ct-") for name in empty_trash(paths.disk_root)]
    if runc is not None:
        for container_id in runc.list_ids():
            if container_id not in live:
                runc.delete(container_id)
                report.runc_states.append(container_id)


def _collect_build_work(tmp: Path, report: GcReport) -> None:
    # `runner.build.cache.LayerCache.tmp_dir` dirs whose build process is gone: unmount what is
    # mounted beneath (the step disk), deepest first, then delete them.
    if not tmp.is_dir():
        return
    for directory in sorted(tmp.iterdir()):
        owner = read_owner(directory)
        if (owner is not None and owner.alive()) or (owner is None and _young(directory)):
            continue
        beneath = [p for p in mount_points() if p.startswith(f"{directory}/")]
        for point in sorted(beneath, key=len, reverse=True):
            unmount_if_mounted(point)
        shutil.rmtree(directory, ignore_errors=True)
        report.builds.append(directory.name)


def _young(directory: Path) -> bool:
    # A directory without a readable owner record may be one a live worker is creating now.
    try:
        return time.time() - directory.stat().st_mtime < _OWNERLESS_GRACE
    except FileNotFoundError:
        return True
