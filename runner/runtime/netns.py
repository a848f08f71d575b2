"""Network namespaces for sandboxes: created in-process, pinned by a bind mount, loopback up."""

from __future__ import annotations

import fcntl
import struct
import threading
from pathlib import Path

from runner.errors import ContainerRuntimeError
from runner.runtime.syscalls import CLONE_NEWNET, MS_BIND, mount, unmount_if_mounted, unshare

_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1


def create_netns(pin: Path) -> None:
    """Create a network namespace with only `lo` (up), pinned at the file `pin`.

    unshare(CLONE_NEWNET) affects the calling thread only, so a short-lived thread does the work
    and the rest of the process stays in the host's namespace.
    """
    pin.touch()
    failure: list[BaseException] = []

    def make() -> None:
        try:
            unshare(CLONE_NEWNET)
            _bring_loopback_up()
            mount("/proc/thread-self/ns/net", str(pin), None, MS_BIND, None)
        except BaseException as err:  # reported to the calling thread below
            failure.append(err)

    thread = threading.Thread(target=make, name="kapal-netns")
    thread.start()
    thread.join()
    if failure:
        pin.unlink(missing_ok=True)
        raise ContainerRuntimeError(
            f"cannot create the job's network namespace: {failure[0]}. kapal runs containers as "
            "root (CAP_SYS_ADMIN); run it with sudo or in a privileged worker"
        ) from failure[0]


def _bring_loopback_up() -> None:
    # The C module behind `socket` is enough for one ioctl; `socket` itself takes ~1.5 ms to
    # import (its enums), a good part of what `kapal exec` pays before runc starts.
    import _socket

    sock = _socket.socket(_socket.AF_INET, _socket.SOCK_DGRAM)
    try:
        request = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(sock, _SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(sock, _SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | _IFF_UP))
    finally:
        sock.close()


def remove_netns(pin: Path) -> None:
    """Unpin and delete a namespace made by `create_netns` (no-op when already gone)."""
    unmount_if_mounted(str(pin))
    pin.unlink(missing_ok=True)
