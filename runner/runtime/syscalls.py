"""Thin ctypes wrappers for the Linux calls Python lacks: mount, umount2, unshare, setns."""

from __future__ import annotations

import ctypes
import os

MS_BIND = 0x1000
MNT_DETACH = 0x2
CLONE_NEWNET = 0x40000000

# The C library Python itself runs on, from the process's own symbols: `find_library("c")` would
# run `ldconfig -p` (a process, ~5 ms) on every kapal command that starts a container.
_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong]
_libc.mount.argtypes += [ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.unshare.argtypes = [ctypes.c_int]
_libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def mount(source: str, target: str, fstype: str | None, flags: int, data: str | None) -> None:
    """mount(2); raises OSError with the errno."""
    result = _libc.mount(
        source.encode(),
        target.encode(),
        fstype.encode() if fstype else None,
        flags,
        data.encode() if data else None,
    )
    _check(result, f"mount {source} on {target}")


def umount(target: str, flags: int = 0) -> None:
    """umount2(2); raises OSError with the errno."""
    _check(_libc.umount2(target.encode(), flags), f"umount {target}")


def unshare(flags: int) -> None:
    """unshare(2) for the calling thread; raises OSError with the errno."""
    _check(_libc.unshare(flags), "unshare")


def setns(fd: int, nstype: int) -> None:
    """setns(2) for the calling thread; raises OSError with the errno."""
    _check(_libc.setns(fd, nstype), "setns")


def mount_points() -> set[str]:
    """Every mount point in this process's mount namespace (from /proc/self/mountinfo)."""
    points: set[str] = set()
    with open("/proc/self/mountinfo", encoding="utf-8") as info:
        for line in info:
            fields = line.split()
            points.add(_unescape(fields[4]))
    return points


def _unescape(path: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as octal.
    for code in ("\\040", "\\011", "\\012", "\\134"):
        path = path.replace(code, chr(int(code[1:], 8)))
    return path


def unmount_if_mounted(target: str) -> None:
    """Unmount `target` (lazily if busy) when it is a mount point; ignore it otherwise."""
    while target in mount_points():
        try:
            umount(target)
        except OSError:
            umount(target, MNT_DETACH)
