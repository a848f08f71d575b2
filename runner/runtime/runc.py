"""Finding and driving the OCI runtime binary (runc; crun where the cgroup layout allows it)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from runner.errors import ContainerRuntimeError


def _hybrid_cgroups() -> bool:
    # cgroup v1 controllers plus a cgroup2 mount beside them: crun 1.8 refuses this layout.
    return Path("/sys/fs/cgroup/unified").is_dir() and Path("/sys/fs/cgroup/memory").is_dir()


def find_runtime(configured: str = "") -> Path:
    """Return the OCI runtime to use: `configured` (KAPAL_RUNTIME), else runc, else crun."""
    if configured:
        found = shutil.which(configured)
        if found is None:
            raise ContainerRuntimeError(
                f"the configured OCI runtime {configured!r} (KAPAL_RUNTIME) was not found: "
                "install it or unset KAPAL_RUNTIME to let kapal look for runc"
            )
        return Path(found)
    runc = shutil.which("runc")
    if runc is not None:
        return Path(runc)
    crun = shutil.which("crun")
    if crun is not None and not _hybrid_cgroups():
        return Path(crun)
    hint = " (crun is installed but does not support this machine's hybrid cgroups)" if crun else ""
    raise ContainerRuntimeError(
        f"no OCI runtime found{hint}: install runc (Debian: apt-get install runc) or set "
        "KAPAL_RUNTIME to the path of runc"
    )


class Runc:
    """Commands of one runc binary with its own state directory (`--root`)."""

    def __init__(self, binary: Path, state_root: Path) -> None:
        self.binary = binary
        self.state_root = state_root

    def base(self) -> list[str]:
        """The command prefix: binary and --root."""
        return [str(self.binary), "--root", str(self.state_root)]

    def run_command(self, container_id: str, bundle: Path, log: Path) -> list[str]:
        """argv of `runc run` for a foreground container."""
        log_flags = ["--log", str(log), "--log-format", "json"]
        return [*self.base(), *log_flags, "run", "--bundle", str(bundle), container_id]

    def has_state(self, container_id: str) -> bool:
        """True when runc still keeps state for the container."""
        return (self.state_root / container_id).exists()

    def kill(self, container_id: str, signal: str) -> bool:
        """Send `signal` to the container's init; False when runc does not know it (yet)."""
        done = subprocess.run(
            [*self.base(), "kill", container_id, signal], capture_output=True, check=False
        )
        return done.returncode == 0

    def delete(self, container_id: str) -> None:
        """Force-delete the container's state (kills what is left); no-op when unknown."""
        if self.has_state(container_id):
            subprocess.run(
                [*self.base(), "delete", "--force", container_id], capture_output=True, check=False
            )

    def list_ids(self) -> list[str]:
        """Ids of the containers runc keeps state for under this root."""
        if not self.state_root.is_dir():
            return []
        done = subprocess.run(
            [*self.base(), "list", "-q"], capture_output=True, text=True, check=False
        )
        return [line for line in done.stdout.split() if line]
