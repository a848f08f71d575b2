"""OCI runtime bundles: the config.json kapal writes for runc (OCI runtime spec 1.0)."""

from __future__ import annotations

import json
import resource
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

from runner.runtime.backend import Mount
from runner.runtime.seccomp import default_seccomp
from runner.runtime.users import ProcessUser

# Docker's default capability set, enough for package managers (setuid/setgid, chown), less
# CAP_NET_RAW (as Podman): raw and packet sockets would write frames beneath the sandbox's
# firewall (runner.runtime.firewall); `ping` uses ICMP datagram sockets instead.
DEFAULT_CAPABILITIES = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
]
MASKED_PATHS = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
]
READONLY_PATHS = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
]
CPU_PERIOD_US = 100_000


class BundleConfig(NamedTuple):
    """What goes into one container's config.json besides the defaults."""

    argv: Sequence[str]
    env: Sequence[str]
    cwd: str
    user: ProcessUser
    hostname: str
    mounts: Sequence[Mount]
    files: Sequence[tuple[Path, str]]  # generated files bound read-only: (host file, target)
    netns: Path | None  # None: the host's network
    cgroups_path: str
    cpus: float | None = None
    pids: int | None = None


def _standard_mounts() -> list[dict[str, Any]]:
    return [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {
            "destination": "/dev",
            "type": "tmpfs",
            "source": "tmpfs",
            "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
        },
        {
            "destination": "/dev/pts",
            "type": "devpts",
            "source": "devpts",
            "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
        },
        {
            "destination": "/dev/shm",
            "type": "tmpfs",
            "source": "shm",
            "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        },
        {
            "destination": "/dev/mqueue",
            "type": "mqueue",
            "source": "mqueue",
            "options": ["nosuid", "noexec", "nodev"],
        },
        {
            "destination": "/sys",
            "type": "sysfs",
            "source": "sysfs",
            "options": ["nosuid", "noexec", "nodev", "ro"],
        },
        {
            # The container's own groups, read-only (tools read their limits there).
            "destination": "/sys/fs/cgroup",
            "type": "cgroup",
            "source": "cgroup",
            "options": ["nosuid", "noexec", "nodev", "relatime", "ro"],
        },
    ]


def _rlimits() -> list[dict[str, Any]]:
    # The caller cannot raise limits above its own hard limits (no CAP_SYS_RESOURCE here).
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return [{"type": "RLIMIT_NOFILE", "soft": soft, "hard": hard}]


def build_config(config: BundleConfig) -> dict[str, Any]:
    """Return the OCI runtime config document for `config` (rootfs at ./rootfs)."""
    env = list(config.env)
    # As Docker does: HOME from the user's passwd entry, HOSTNAME the container's.
    if not any(e.startswith("HOME=") for e in env):
        env.append(f"HOME={config.user.home}")
    if not any(e.startswith("HOSTNAME=") for e in env):
        env.append(f"HOSTNAME={config.hostname}")
    mounts = _standard_mounts()
    for mount in config.mounts:
        options = ["rbind", "rprivate"] + (["ro"] if mount.read_only else [])
        mounts.append(
            {
                "destination": mount.target,
                "type": "bind",
                "source": str(mount.source),
                "options": options,
            }
        )
    for source, target in config.files:
        mounts.append(
            {"destination": target, "type": "bind", "source": str(source), "options": ["bind"]}
        )
    namespaces: list[dict[str, str]] = [
        {"type": "pid"},
        {"type": "ipc"},
        {"type": "uts"},
        {"type": "mount"},
    ]
    if config.netns is not None:
        namespaces.append({"type": "network", "path": str(config.netns)})
    resources: dict[str, Any] = {"devices": [{"allow": False, "access": "rwm"}]}
    if config.cpus is not None:
        resources["cpu"] = {"quota": round(config.cpus * CPU_PERIOD_US), "period": CPU_PERIOD_US}
    if config.pids is not None:
        resources["pids"] = {"limit": config.pids}
    user: dict[str, Any] = {"uid": config.user.uid, "gid": config.user.gid}
    if config.user.additional_gids:
        user["additionalGids"] = list(config.user.additional_gids)
    caps = list(DEFAULT_CAPABILITIES)
    return {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": False,
            "user": user,
            "args": list(config.argv),
            "env": env,
            "cwd": config.cwd,
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "rlimits": _rlimits(),
            "noNewPrivileges": False,
        },
        "root": {"path": "rootfs", "readonly": False},
        "hostname": config.hostname,
        "mounts": mounts,
        "linux": {
            "cgroupsPath": config.cgroups_path,
            "resources": resources,
            "namespaces": namespaces,
            "maskedPaths": MASKED_PATHS,
            "readonlyPaths": READONLY_PATHS,
            "seccomp": default_seccomp(),
        },
    }


def write_bundle(bundle: Path, config: BundleConfig) -> Path:
    """Write `bundle/config.json` and return its path."""
    path = bundle / "config.json"
    path.write_text(json.dumps(build_config(config), separators=(",", ":")))
    return path
