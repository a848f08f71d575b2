"""Small layer tars made in tests: regular files, dirs, symlinks, devices, whiteouts, xattrs."""

from __future__ import annotations

import gzip
import io
import tarfile
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Entry:
    """One member of a test tar."""

    name: str
    type: bytes = tarfile.REGTYPE
    data: bytes = b""
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    linkname: str = ""
    devmajor: int = 0
    devminor: int = 0
    xattrs: dict[str, str] = field(default_factory=dict)


def tar_bytes(entries: list[Entry]) -> bytes:
    """A PAX tar holding `entries` in order."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for e in entries:
            info = tarfile.TarInfo(e.name)
            info.type, info.mode, info.uid, info.gid = e.type, e.mode, e.uid, e.gid
            info.linkname, info.devmajor, info.devminor = e.linkname, e.devmajor, e.devminor
            info.mtime = 1_700_000_000
            if e.xattrs:
                info.pax_headers = {f"SCHILY.xattr.{k}": v for k, v in e.xattrs.items()}
            if e.type == tarfile.REGTYPE:
                info.size = len(e.data)
                tar.addfile(info, io.BytesIO(e.data))
            else:
                tar.addfile(info)
    return out.getvalue()


def write_tar(path: Path, entries: list[Entry], *, compress: bool = False) -> Path:
    """Write a tar of `entries` at `path` (gzip with mtime 0 when `compress`)."""
    data = tar_bytes(entries)
    path.write_bytes(gzip.compress(data, mtime=0) if compress else data)
    return path
