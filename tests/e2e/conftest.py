"""End-to-end fixtures: the engine on the embedded runtime, and `kapal` as a subprocess."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

from runner.runtime.cgroups import current_hierarchies
from runner.runtime.syscalls import mount_points
from runner.settings import RunnerSettings

KAPAL = [sys.executable, "-m", "web.cli"]
REPO = Path(__file__).resolve().parents[2]


def kapal(
    *args: str, env: dict[str, str], timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """Run `kapal ARGS` to completion and return what it did (stdout is not a terminal)."""
    return subprocess.run(
        [*KAPAL, *args], env=env, capture_output=True, text=True, timeout=timeout, cwd=REPO
    )


def runtime_leftovers(settings: RunnerSettings, container_ids: Iterable[str] = ()) -> list[str]:
    """Containers, sandboxes, runc state and mounts left under a data dir, and the cgroups of
    `container_ids` (cgroups are not under the data dir, so only known ids are checked)."""
    root = settings.containers_dir
    found: list[str] = []
    if root.is_dir():
        found += [f"directory {p.name}" for p in root.iterdir() if p.name != "runc-state"]
        state = root / "runc-state"
        if state.is_dir():
            found += [f"runc state {p.name}" for p in state.iterdir()]
    found += [f"mount {m}" for m in mount_points() if str(settings.data_dir) in m]
    for cid in container_ids:
        for hierarchy in current_hierarchies():
            if (hierarchy.own_dir / f"kapal-{cid}").exists():
                found.append(f"cgroup {hierarchy.own_dir / f'kapal-{cid}'}")
    return found
