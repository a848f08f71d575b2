"""Service containers: their host names, and waiting for the ports their images expose."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from runner.errors import ServiceError
from runner.runtime.backend import Backend, ContainerSpec, Sandbox

# Shell built-ins only: the probe runs in the job's image, which has `sh` (scripts need it) but
# perhaps no `cat`; /proc/net/tcp shows the sockets of the sandbox's network namespace.
PROBE_COMMAND = (
    "sh",
    "-c",
    'for f in /proc/net/tcp /proc/net/tcp6; do [ -r "$f" ] || continue; '
    'while IFS= read -r line; do printf "%s\\n" "$line"; done < "$f"; done',
)
_LISTEN = "0A"


def service_hostnames(name: str, aliases: tuple[str, ...] = ()) -> tuple[str, ...]:
    """Every host name a service answers to: its aliases, then the names GitLab derives.

    From `registry.test:5000/team/redis:7` GitLab derives `registry.test__team__redis` style
    names with the tag dropped (`/` → `__`, and `/` → `-`); kapal adds the whole name with `/`
    and `:` turned into `-`.
    """
    without_tag = name.split("@", 1)[0]
    last_slash = without_tag.rfind("/")
    colon = without_tag.rfind(":")
    if colon > last_slash:
        without_tag = without_tag[:colon]
    candidates = [
        *aliases,
        without_tag.replace("/", "__"),
        without_tag.replace("/", "-"),
        name.split("@", 1)[0].replace("/", "-").replace(":", "-"),
    ]
    names: list[str] = []
    for candidate in candidates:
        if candidate and candidate not in names and _valid_hostname(candidate):
            names.append(candidate)
    return tuple(names)


def _valid_hostname(name: str) -> bool:
    return all(c.isalnum() or c in "-._" for c in name) and not name.startswith("-")


def listening_ports(proc_net_tcp: Iterable[str]) -> set[int]:
    """TCP ports in LISTEN state in the text of `/proc/net/tcp` and `/proc/net/tcp6`."""
    ports: set[int] = set()
    for line in proc_net_tcp:
        fields = line.split()
        if len(fields) < 4 or fields[0] == "sl" or fields[3] != _LISTEN:
            continue
        _, _, port_hex = fields[1].rpartition(":")
        try:
            ports.add(int(port_hex, 16))
        except ValueError:
            continue
    return ports


def wait_for_ports(
    backend: Backend,
    sandbox: Sandbox,
    probe: ContainerSpec,
    ports: Iterable[int],
    *,
    timeout: float,
    interval: float = 0.2,
    alive: Callable[[], bool] = lambda: True,
) -> set[int]:
    """Wait until every port listens in the sandbox; return the ports still closed at timeout.

    Each check runs `probe` (a container of the job's image printing `/proc/net/tcp` with shell
    built-ins) in the sandbox, so it sees the sandbox's network namespace. Stops early when
    `alive()` turns false (the service exited or the job was canceled). Raises `ServiceError`
    when the probe itself cannot run (no `sh` in the image).
    """
    wanted = set(ports)
    deadline = time.monotonic() + timeout
    while wanted:
        container = backend.start(sandbox, probe)
        lines = [entry.text for entry in backend.logs(container)]
        status = backend.wait(container)
        if not lines and status.exit_code != 0 and not status.canceled:
            raise ServiceError(
                f"cannot check the ports of {probe.name.removeprefix('probe-')}: "
                f"the port probe (`sh -c ...` in the job's image) {status.describe()}; "
                "kapal needs `sh` in the job's image, as the job's script does"
            )
        wanted -= listening_ports(lines)
        if not wanted or time.monotonic() >= deadline or not alive():
            break
        time.sleep(interval)
    return wanted
