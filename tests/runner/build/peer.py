"""Docker as a peer for the builder: a private dockerd, and root filesystems compared file by file.

`docker_daemon()` starts a private dockerd (`tests.support.dockerd.running_dockerd`) and yields a
`DockerPeer` that runs the docker CLI against it with the legacy builder. It is used by the peer
tests and by bench/build.py.

`rootfs_of_kapal` and `rootfs_of_tar` reduce a root filesystem to {path: FileRecord} so two builds
can be compared. What legitimately differs is left out and listed in `IGNORED`: mtimes (kapal
clamps them to SOURCE_DATE_EPOCH), the files Docker's init layer adds to every container
(/.dockerenv, /etc/hosts, /etc/hostname, /etc/resolv.conf, /etc/mtab), and the mount points /dev,
/proc, /sys.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
import subprocess
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from runner.build.trees import LayeredTree
from tests.support.dockerd import DockerEngine, running_dockerd

IGNORED = (
    "mtimes (kapal clamps them to SOURCE_DATE_EPOCH)",
    "/.dockerenv, /etc/hosts, /etc/hostname, /etc/resolv.conf, /etc/mtab (docker's init layer)",
    "the contents of /dev, /proc and /sys (mount points)",
)
_SKIP = {".dockerenv", "etc/hosts", "etc/hostname", "etc/resolv.conf", "etc/mtab"}
_SKIP_UNDER = ("dev/", "proc/", "sys/")


@dataclass(frozen=True)
class FileRecord:
    """What is compared for a path: kind, permission bits, owner, content digest or link target."""

    kind: str
    mode: int
    uid: int
    gid: int
    content: str

    def __str__(self) -> str:
        return f"{self.kind} {self.mode:o} {self.uid}:{self.gid} {self.content}"


def _skip(path: str) -> bool:
    return path in _SKIP or path.startswith(_SKIP_UNDER)


def rootfs_of_kapal(layers: list[Path]) -> dict[str, FileRecord]:
    """The merged root filesystem of unpacked layers (bottom-first), as records."""
    tree = LayeredTree(tuple(layers))
    out: dict[str, FileRecord] = {}

    def walk(rel: str) -> None:
        for name in tree.listdir(rel):
            child = f"{rel}/{name}" if rel else name
            host = tree.locate(child)
            if host is None or _skip(child):
                continue
            st = os.lstat(host)
            mode = stat.S_IMODE(st.st_mode)
            if stat.S_ISDIR(st.st_mode):
                out[child] = FileRecord("dir", mode, st.st_uid, st.st_gid, "")
                walk(child)
            elif stat.S_ISLNK(st.st_mode):
                out[child] = FileRecord("link", 0, st.st_uid, st.st_gid, os.readlink(host))
            elif stat.S_ISREG(st.st_mode):
                digest = hashlib.sha256(host.read_bytes()).hexdigest()
                out[child] = FileRecord("file", mode, st.st_uid, st.st_gid, digest)
            else:
                out[child] = FileRecord("other", mode, st.st_uid, st.st_gid, str(st.st_rdev))

    walk("")
    return out


def rootfs_of_tar(path: Path) -> dict[str, FileRecord]:
    """The root filesystem in a `docker export` tar, as records (hard links resolved)."""
    out: dict[str, FileRecord] = {}
    with tarfile.open(path) as tar:
        members = tar.getmembers()
        for member in members:
            member.mode &= 0o7777  # docker export keeps the file type bits in the mode field
            name = member.name.removeprefix("./").strip("/")
            if not name or _skip(name) or name in ("dev", "proc", "sys"):
                if name in ("dev", "proc", "sys"):
                    out[name] = FileRecord("dir", member.mode, member.uid, member.gid, "")
                continue
            if member.isdir():
                out[name] = FileRecord("dir", member.mode, member.uid, member.gid, "")
            elif member.issym():
                out[name] = FileRecord("link", 0, member.uid, member.gid, member.linkname)
            elif member.islnk():
                target = out[member.linkname.removeprefix("./").strip("/")]
                out[name] = FileRecord("file", member.mode, member.uid, member.gid, target.content)
            elif member.isreg():
                data = tar.extractfile(member)
                assert data is not None
                digest = hashlib.sha256(data.read()).hexdigest()
                out[name] = FileRecord("file", member.mode, member.uid, member.gid, digest)
            else:
                rdev = str(os.makedev(member.devmajor, member.devminor))
                out[name] = FileRecord("other", member.mode, member.uid, member.gid, rdev)
    return out


def differences(ours: dict[str, FileRecord], theirs: dict[str, FileRecord]) -> list[str]:
    """Human-readable differences between two root filesystems (empty when they match)."""
    lines: list[str] = []
    for path in sorted(set(ours) | set(theirs)):
        mine, other = ours.get(path), theirs.get(path)
        if mine == other:
            continue
        lines.append(f"/{path}: kapal={mine} docker={other}")
    return lines


@dataclass(frozen=True)
class DockerPeer:
    """The docker CLI pointed at a private dockerd, with the legacy builder selected."""

    engine: DockerEngine

    def env(self) -> dict[str, str]:
        """Environment for docker: the legacy builder (Debian's docker.io has no buildx)."""
        return dict(os.environ, DOCKER_BUILDKIT="0")

    def command(self, *args: str) -> list[str]:
        """argv of `docker -H HOST ARGS`."""
        return self.engine.command(*args)

    def run(self, *args: str, check: bool = True, timeout: float = 600) -> str:
        """Run `docker ARGS`; return stdout; raise with stderr when it fails and `check`."""
        proc = subprocess.run(
            self.command(*args),
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and proc.returncode != 0:
            raise RuntimeError(f"docker {' '.join(args)} failed: {proc.stderr.strip()}")
        return proc.stdout

    def export_rootfs(self, image: str, out: Path) -> Path:
        """`docker create` + `docker export` of `image` into the tar `out`."""
        container = self.run("create", image, "/nonexistent").strip()
        try:
            self.run("export", "-o", str(out), container)
        finally:
            self.run("rm", "-f", container, check=False)
        return out


@contextlib.contextmanager
def docker_daemon() -> Iterator[DockerPeer]:
    """A private dockerd (tests.support.dockerd) wrapped for builder comparisons."""
    with running_dockerd() as engine:
        yield DockerPeer(engine)
