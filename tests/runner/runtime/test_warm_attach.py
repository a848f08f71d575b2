"""The no-op cgroup move kapal makes as runc starts (runner.runtime.cgroups, `warm_attach`).

The move saves a kernel wait; what these tests check is that it is harmless: it goes only to a
hierarchy without controllers, leaves the process where it was (groups and CPU affinity), is
made for every container before runc starts, and a refusal changes nothing.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from runner.runtime import cgroups
from runner.runtime.cgroups import Hierarchy, current_hierarchies, move_self_into, warm_attach_file
from runner.runtime.oneshot import run_container
from tests.runner.runtime.conftest import BusyboxImage, RecordingBackend

pytestmark = pytest.mark.timeout(180)


def hierarchy(*controllers: str) -> Hierarchy:
    name = ",".join(controllers) or "unified"
    return Hierarchy(frozenset(controllers), Path("/sys/fs/cgroup") / name / "own")


def test_the_cgroup2_hierarchy_comes_first_then_a_named_one() -> None:
    hybrid = [hierarchy("cpuset"), hierarchy("name=systemd"), hierarchy("memory"), hierarchy()]
    assert warm_attach_file(hybrid) == Path("/sys/fs/cgroup/unified/own/cgroup.procs")
    v1 = [hierarchy("cpu", "cpuacct"), hierarchy("name=systemd"), hierarchy("pids")]
    assert warm_attach_file(v1) == Path("/sys/fs/cgroup/name=systemd/own/cgroup.procs")


def test_a_hierarchy_with_a_controller_is_never_used() -> None:
    # cpuset's attach would reset the CPU affinity a user set with taskset
    assert warm_attach_file([hierarchy("cpuset"), hierarchy("pids"), hierarchy("memory")]) is None
    assert warm_attach_file([hierarchy("name=systemd", "pids")]) is None
    assert warm_attach_file([]) is None


def test_the_move_leaves_the_process_in_its_groups_with_its_affinity() -> None:
    target = warm_attach_file(current_hierarchies())
    if target is None:
        pytest.skip("no cgroup hierarchy without controllers is mounted here")
    groups = Path("/proc/self/cgroup").read_text()
    affinity = os.sched_getaffinity(0)
    pinned = {min(affinity)}
    os.sched_setaffinity(0, pinned)
    try:
        move_self_into(target)
        assert os.sched_getaffinity(0) == pinned
        assert Path("/proc/self/cgroup").read_text() == groups
        assert str(os.getpid()) in (target.parent / "cgroup.procs").read_text().split()
    finally:
        os.sched_setaffinity(0, affinity)


def test_a_refused_move_is_ignored(tmp_path: Path) -> None:
    move_self_into(tmp_path / "no-such-group" / "cgroup.procs")  # missing
    (tmp_path / "cgroup.procs").mkdir()
    move_self_into(tmp_path / "cgroup.procs")  # a directory: EISDIR
    read_only = tmp_path / "ro" / "cgroup.procs"
    read_only.parent.mkdir()
    read_only.write_text("")
    read_only.chmod(0o444)
    move_self_into(read_only)  # root may write it anyway: what matters is that nothing raises


def test_every_container_makes_the_move(
    backend: RecordingBackend, busybox: BusyboxImage, monkeypatch: pytest.MonkeyPatch
) -> None:
    if warm_attach_file(current_hierarchies()) is None:
        pytest.skip("no cgroup hierarchy without controllers is mounted here")
    seen: list[Path] = []
    real = cgroups.move_self_into

    def recording(procs: Path) -> None:
        seen.append(procs)
        real(procs)

    monkeypatch.setattr(cgroups, "move_self_into", recording)
    for _ in range(2):
        status = run_container(backend, busybox.spec("true"))
        assert status.ok, status.describe()
    deadline = time.monotonic() + 10  # the moves run on threads of their own
    while len(seen) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert seen == [warm_attach_file(current_hierarchies())] * 2
