"""User-mode networking for `"nat"` sandboxes: slirp4netns between a namespace and the world.

A `"nat"` sandbox is a network namespace of its own (runner.runtime.netns) with a tap device that
Debian's `slirp4netns` serves: the container's packets become ordinary sockets of the slirp4netns
process in the host's namespace, so the outside world is reachable as from the host (package
mirrors, registries, DNS through 10.0.2.3), with no bridge, no iptables and no routing on the host.

What the container can and cannot reach (checked by tests/security/test_network.py):

- refused: the host's loopback, by `--disable-host-loopback` (127.0.0.1:* and the gateway
  10.0.2.2, which slirp would otherwise map to the host's 127.0.0.1);
- refused: the other sandboxes (each has its own namespace and slirp4netns);
- refused, by the namespace's nftables rules (runner.runtime.firewall, installed before
  slirp4netns starts): every address the host has when the sandbox starts (a service on 0.0.0.0
  is not reachable at the host's LAN address) and link-local 169.254.0.0/16 and fe80::/10 (a
  cloud's metadata service), except the networks the operator allows
  (`KAPAL_JOB_ALLOWED_NETWORKS`); TCP gets a reset, the rest ICMP "prohibited": tools fail at once;
- reachable: DNS through 10.0.2.3, and what the host's routes reach beyond the host itself
  (the internet, the host's LAN: other machines there are the operator's firewall's to guard).

The containers have neither CAP_NET_ADMIN nor CAP_NET_RAW, so they can neither change the rules
nor write frames beneath them; `ping` works through ICMP datagram sockets.

slirp4netns runs with `--enable-sandbox` (its own mount namespace, capabilities dropped) and
`--enable-seccomp`, because it parses packets a job writes. It ends with the sandbox (`stop`), and
on its own when kapal dies: it watches a pipe only kapal holds open (`--exit-fd`).
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import subprocess
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from runner.errors import ContainerRuntimeError
from runner.runtime.firewall import install_firewall
from runner.runtime.syscalls import CLONE_NEWNET, setns

SLIRP4NETNS = "slirp4netns"
GUEST_DNS = "10.0.2.3"  # slirp4netns forwards DNS sent here to the host's resolvers
_MTU = 65520  # slirp4netns' maximum: fewer, larger packets cost less CPU
_READY_TIMEOUT = 10.0
_STOP_TIMEOUT = 2.0

_Result = TypeVar("_Result")


class UserNetwork:
    """The slirp4netns process serving one pinned network namespace.

    Lifecycle: `create_netns(pin)` → `UserNetwork.start(pin)` (returns once the tap device is up)
    → containers use the namespace → `stop()` (idempotent) → `remove_netns(pin)`.
    """

    def __init__(self, proc: subprocess.Popen[bytes], exit_fd: int) -> None:
        self._proc = proc
        self._exit_fd: int | None = exit_fd

    @property
    def pid(self) -> int:
        """The slirp4netns process id."""
        return self._proc.pid

    @classmethod
    def start(cls, pin: Path, allowed_networks: Sequence[str] = ()) -> UserNetwork:
        """Firewall the namespace pinned at `pin`, start slirp4netns on it, wait until configured.

        The rules (runner.runtime.firewall) go in first: no packet leaves without them, and
        when they cannot be installed nothing starts.
        """
        binary = shutil.which(SLIRP4NETNS)
        if binary is None:
            raise ContainerRuntimeError(
                "jobs reach the outside world through slirp4netns, which is not installed: "
                "apt-get install slirp4netns (or give the job `network: none`)"
            )
        unshare = shutil.which("unshare")
        if unshare is None:
            raise ContainerRuntimeError(
                "jobs' networks need unshare(1) to start slirp4netns in a mount namespace of its "
                "own: apt-get install util-linux"
            )
        install_firewall(pin, allowed_networks)
        ready_r, ready_w = os.pipe()
        exit_r, exit_w = os.pipe()
        try:
            proc = subprocess.Popen(
                [
                    # In a mount namespace of its own, private all the way down: slirp4netns'
                    # sandbox makes only "/" private before it pivots and lazily unmounts the old
                    # root, and run as root in the host's namespace that unmount reaches the
                    # host's shared mounts (other containers' roots vanished while jobs ran).
                    unshare,
                    "--mount",
                    "--propagation",
                    "private",
                    binary,
                    "--configure",
                    f"--mtu={_MTU}",
                    "--disable-host-loopback",
                    "--enable-sandbox",
                    "--enable-seccomp",
                    f"--ready-fd={ready_w}",
                    f"--exit-fd={exit_r}",
                    "--netns-type=path",
                    str(pin),
                    "tap0",
                ],
                pass_fds=(ready_w, exit_r),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                # Ctrl-C on `kapal run` cancels jobs; their after_script still needs the network.
                start_new_session=True,
            )
        except OSError as err:
            for fd in (ready_r, ready_w, exit_r, exit_w):
                os.close(fd)
            raise ContainerRuntimeError(f"cannot start slirp4netns: {err}") from err
        os.close(ready_w)
        os.close(exit_r)
        network = cls(proc, exit_w)
        try:
            readable, _, _ = select.select([ready_r], [], [], _READY_TIMEOUT)
            ready = bool(readable) and os.read(ready_r, 1) == b"1"
        finally:
            os.close(ready_r)
        if not ready:
            network.stop()
            detail = proc.stderr.read().decode(errors="replace").strip() if proc.stderr else ""
            raise ContainerRuntimeError(
                "slirp4netns did not set up the job's network"
                + (f": {detail.splitlines()[-1]}" if detail else f" within {_READY_TIMEOUT:g}s")
            )
        return network

    def stop(self) -> None:
        """End slirp4netns and reap it (idempotent)."""
        if self._exit_fd is not None:
            os.close(self._exit_fd)  # slirp4netns exits when this pipe closes
            self._exit_fd = None
        try:
            self._proc.wait(timeout=_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        if self._proc.stderr is not None:
            self._proc.stderr.close()


def run_in_network(pin: Path, work: Callable[[], _Result]) -> _Result:
    """Call `work` in a thread that joined the network namespace pinned at `pin`.

    Sockets are made in the namespace of the thread that creates them, so whatever `work`
    connects to is reached as a container in that namespace would reach it. The thread ends
    with `work`: setns affects it alone, never the rest of the process.
    """
    results: list[_Result] = []
    failures: list[BaseException] = []

    def joined() -> None:
        try:
            fd = os.open(pin, os.O_RDONLY | os.O_CLOEXEC)
            try:
                setns(fd, CLONE_NEWNET)
            finally:
                os.close(fd)
            results.append(work())
        except BaseException as err:  # handed to the calling thread below
            failures.append(err)

    thread = threading.Thread(target=joined, name="kapal-in-netns")
    thread.start()
    thread.join()
    if failures:
        raise failures[0]
    return results[0]


def resolv_conf() -> str:
    """The resolv.conf of a `"nat"` container: slirp4netns' DNS forwarder, the host's search."""
    search = ""
    with contextlib.suppress(OSError):
        for line in Path("/etc/resolv.conf").read_text().splitlines():
            if line.split()[:1] in (["search"], ["options"]):
                search += line.strip() + "\n"
    return f"nameserver {GUEST_DNS}\n{search}"
