"""The operator's rules for every container: default limits, caps, host network, disk per job.

A pipeline is untrusted code, so no container runs unlimited: what a container's `Limits` leave
out is filled from `ContainerPolicy.defaults` (pids 4096, 4 GiB of memory, 2 CPUs unless the
operator says otherwise), and every limit is clamped to `ContainerPolicy.caps`, whoever asked for
it. The embedded backend applies `limits_for` to every container it starts (jobs, services,
build RUN steps, `kapal exec`), so no caller can forget it, and cuts every container's timeout
to `max_timeout` (`clamp_timeout`: a job's `timeout:` above it, or none, becomes the maximum).
`kapal run --memory/--cpus/--pids` are checked with `check_limits` and refused above a cap.
`network: host` is refused by the backend (`check_network`) unless the operator allows it
(`KAPAL_ALLOW_HOST_NETWORK`: on for `kapal run`, off for the service). A `"nat"` sandbox is
kept off the host's addresses and link-local ones (runner.runtime.firewall) except the networks
in `allowed_networks` (`KAPAL_JOB_ALLOWED_NETWORKS`, read by `allowed_networks()` for the settings'
policy and for `kapal exec --network nat`).
"""

from __future__ import annotations

from typing import TypeVar

from pipeline.records import field, record
from runner.errors import ContainerStartError, RunnerError
from runner.runtime.backend import Limits, NetworkMode, format_size
from runner.runtime.durations import format_duration

GIB = 1 << 30
DEFAULT_LIMITS = Limits(memory_bytes=4 * GIB, cpus=2.0, pids=4096)
DEFAULT_CAPS = Limits(memory_bytes=16 * GIB, cpus=8.0, pids=32768)
DEFAULT_MAX_TIMEOUT = 24 * 3600.0
DEFAULT_DISK = 10 * GIB


class PolicyError(ContainerStartError):
    """A pipeline or a command line asked for more than the operator allows."""


@record
class ContainerPolicy:
    """Default limits, the caps nothing exceeds, the network rules, the disk cap."""

    defaults: Limits = field(default_factory=lambda: DEFAULT_LIMITS)
    caps: Limits = field(default_factory=lambda: DEFAULT_CAPS)
    max_timeout: float | None = DEFAULT_MAX_TIMEOUT
    allow_host_network: bool = True
    disk_bytes: int | None = DEFAULT_DISK  # writable layers of one sandbox's containers
    # CIDRs a `"nat"` sandbox may reach though they are the host's or link-local
    allowed_networks: tuple[str, ...] = ()

    def limits_for(self, asked: Limits) -> Limits:
        """`asked`, its gaps filled from the defaults, each limit clamped to its cap."""
        defaults, caps = self.defaults, self.caps
        return Limits(
            memory_bytes=_clamp(asked.memory_bytes, defaults.memory_bytes, caps.memory_bytes),
            cpus=_clamp(asked.cpus, self.defaults.cpus, self.caps.cpus),
            pids=_clamp(asked.pids, self.defaults.pids, self.caps.pids),
        )

    def check_limits(self, asked: Limits) -> None:
        """Raise `PolicyError` naming each limit in `asked` above its cap (for command lines)."""
        problems = []
        memory, cap_memory = asked.memory_bytes, self.caps.memory_bytes
        if memory is not None and cap_memory is not None and memory > cap_memory:
            problems.append(
                f"memory {format_size(memory)} is above the maximum {format_size(cap_memory)} "
                "(KAPAL_MAX_JOB_MEMORY)"
            )
        if asked.cpus is not None and self.caps.cpus is not None and asked.cpus > self.caps.cpus:
            problems.append(
                f"cpus {asked.cpus:g} is above the maximum {self.caps.cpus:g} (KAPAL_MAX_JOB_CPUS)"
            )
        if asked.pids is not None and self.caps.pids is not None and asked.pids > self.caps.pids:
            problems.append(
                f"pids {asked.pids} is above the maximum {self.caps.pids} (KAPAL_MAX_JOB_PIDS)"
            )
        if problems:
            raise PolicyError("; ".join(problems) + ": ask for less, or raise the maximum")

    def clamp_timeout(self, seconds: float | None) -> float | None:
        """A job's timeout no longer than the maximum (None, no timeout asked: the maximum)."""
        if self.max_timeout is None:
            return seconds
        return self.max_timeout if seconds is None else min(seconds, self.max_timeout)

    def check_network(self, mode: NetworkMode, *, name: str) -> None:
        """Raise `PolicyError` when `name` asks for the host's network and that is not allowed."""
        if mode == "host" and not self.allow_host_network:
            raise PolicyError(
                f"{name} asks for `network: host`, which this runner does not allow: the host's "
                "network reaches every service on the host's loopback. Remove `network: host` "
                "(jobs reach the outside world by default), or let the operator set "
                "KAPAL_ALLOW_HOST_NETWORK=true"
            )

    def describe_timeout(self) -> str:
        """The maximum timeout for a person ("24h"), or "none"."""
        return format_duration(self.max_timeout) if self.max_timeout is not None else "none"


def allowed_networks(text: str) -> tuple[str, ...]:
    """`KAPAL_JOB_ALLOWED_NETWORKS` (comma-separated CIDRs) normalized; RunnerError if bad."""
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        return ()
    import ipaddress  # only when an operator opened holes: `kapal run`, `exec` start without it

    found: list[str] = []
    for item in items:
        try:
            found.append(str(ipaddress.ip_network(item, strict=False)))
        except ValueError:
            raise RunnerError(
                f"KAPAL_JOB_ALLOWED_NETWORKS: {item!r} is not an address or a network: write "
                "CIDRs separated by commas, e.g. 192.0.2.10/32,10.20.0.0/16"
            ) from None
    return tuple(found)


_Number = TypeVar("_Number", int, float)


def _clamp(asked: _Number | None, default: _Number | None, cap: _Number | None) -> _Number | None:
    value = asked if asked is not None else default
    if value is None:
        return cap
    return value if cap is None else min(value, cap)
