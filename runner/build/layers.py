"""Deterministic layer tars: a directory tree in, the same gzip bytes out every time.

Entries are written depth-first with names sorted, owners numeric (uid/gid, empty uname/gname),
mtimes clamped to SOURCE_DATE_EPOCH, PAX format (headers only where a value needs one), gzip header
with mtime 0 and no file name. From an overlay upper dir (`whiteouts=True`), 0/0 character devices
become `.wh.NAME` entries and directories marked `trusted.overlay.opaque=y` get a `.wh..wh..opq`
entry, as the OCI image spec's "Representing Changes" section describes. Hard links inside the tree
become tar hard links; the xattrs kept are `security.capability` and `user.*`.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import stat
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from pipeline.records import record

__all__ = ["OPAQUE", "WHITEOUT_PREFIX", "LayerTar", "write_layer"]

WHITEOUT_PREFIX = ".wh."
OPAQUE = ".wh..wh..opq"
COMPRESS_LEVEL = 6  # Go's compress/gzip default, what docker pushes
ZSTD_LEVEL = 3  # zstd's default level, what BuildKit uses for compression=zstd
_KEPT_XATTRS = ("security.capability",)
_OPAQUE_XATTRS = ("trusted.overlay.opaque", "user.overlay.opaque")


@record
class LayerTar:
    """A layer written to disk: its gzip file, the blob digest, the uncompressed diff_id, size."""

    path: Path
    digest: str
    diff_id: str
    size: int
    empty: bool


class _HashingWriter:
    """A write-only file object that hashes what passes through it."""

    def __init__(self, sink: BinaryIO | None) -> None:
        self.sink = sink
        self.sha = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        self.size += len(data)
        if self.sink is not None:
            self.sink.write(data)
        return len(data)

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        if self.sink is not None:
            self.sink.flush()


def write_layer(
    root: Path,
    out: Path,
    *,
    epoch: int = 0,
    whiteouts: bool = False,
    compression: str = "gzip",
) -> LayerTar:
    """Write the tree under `root` (not `root` itself) as a layer tar to `out`, compressed with
    gzip (the default) or zstd (level 3, one thread: the same bytes every time)."""
    with out.open("wb") as file:
        blob = _HashingWriter(file)
        gz: Any
        if compression == "zstd":
            import zstandard  # only `--compression zstd` builds need it

            compressor = zstandard.ZstdCompressor(level=ZSTD_LEVEL)
            gz = compressor.stream_writer(blob, closefd=False)  # type: ignore[arg-type]
        else:
            gz = gzip.GzipFile(
                filename="",
                mode="wb",
                fileobj=blob,
                mtime=0,
                compresslevel=COMPRESS_LEVEL,
            )
        try:
            raw = _HashingWriter(gz)
            count = 0
            tar_file = tarfile.open(  # type: ignore[call-overload]  # noqa: SIM115
                fileobj=raw, mode="w", format=tarfile.PAX_FORMAT
            )
            with tar_file as tar:
                for info, source in _entries(root, epoch, whiteouts):
                    count += 1
                    if source is None:
                        tar.addfile(info)
                    else:
                        with source.open("rb") as data:
                            tar.addfile(info, data)
        finally:
            gz.close()
    return LayerTar(
        out,
        f"sha256:{blob.sha.hexdigest()}",
        f"sha256:{raw.sha.hexdigest()}",
        blob.size,
        count == 0,
    )


def _entries(
    root: Path, epoch: int, whiteouts: bool
) -> Iterator[tuple[tarfile.TarInfo, Path | None]]:
    """Depth-first, names sorted; hard links point at the first path seen for an inode."""
    yield from _walk(root, "", epoch, whiteouts, {})


def _walk(
    directory: Path, prefix: str, epoch: int, whiteouts: bool, links: dict[tuple[int, int], str]
) -> Iterator[tuple[tarfile.TarInfo, Path | None]]:
    names = sorted(os.listdir(directory))
    for name in names:
        path = directory / name
        arc = f"{prefix}{name}"
        st = os.lstat(path)
        mode = st.st_mode
        if whiteouts and stat.S_ISCHR(mode) and st.st_rdev == 0:
            yield (
                _info(f"{prefix}{WHITEOUT_PREFIX}{name}", tarfile.REGTYPE, st, epoch, mode=0),
                None,
            )
            continue
        if stat.S_ISSOCK(mode):
            continue
        if stat.S_ISDIR(mode):
            info = _info(arc + "/", tarfile.DIRTYPE, st, epoch)
            _xattrs(path, info)
            yield info, None
            if whiteouts and _opaque(path):
                yield _info(f"{arc}/{OPAQUE}", tarfile.REGTYPE, st, epoch, mode=0), None
            yield from _walk(path, arc + "/", epoch, whiteouts, links)
            continue
        if stat.S_ISLNK(mode):
            info = _info(arc, tarfile.SYMTYPE, st, epoch)
            info.linkname = os.readlink(path)
            yield info, None
            continue
        if stat.S_ISREG(mode):
            key = (st.st_dev, st.st_ino)
            if st.st_nlink > 1 and key in links:
                info = _info(arc, tarfile.LNKTYPE, st, epoch)
                info.linkname = links[key]
                yield info, None
                continue
            if st.st_nlink > 1:
                links[key] = arc
            info = _info(arc, tarfile.REGTYPE, st, epoch)
            info.size = st.st_size
            _xattrs(path, info)
            yield info, path
            continue
        kind = (
            tarfile.CHRTYPE
            if stat.S_ISCHR(mode)
            else tarfile.BLKTYPE
            if stat.S_ISBLK(mode)
            else tarfile.FIFOTYPE
        )
        info = _info(arc, kind, st, epoch)
        if kind != tarfile.FIFOTYPE:
            info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
        yield info, None


def _info(
    name: str, kind: bytes, st: os.stat_result, epoch: int, mode: int | None = None
) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = stat.S_IMODE(st.st_mode) if mode is None else mode
    info.uid, info.gid = (st.st_uid, st.st_gid) if mode is None else (0, 0)
    info.uname = info.gname = ""
    info.mtime = min(int(st.st_mtime), epoch)
    return info


def _opaque(path: Path) -> bool:
    for attr in _OPAQUE_XATTRS:
        try:
            if os.getxattr(path, attr, follow_symlinks=False) == b"y":
                return True
        except OSError:
            continue
    return False


def _xattrs(path: Path, info: tarfile.TarInfo) -> None:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return
    headers: dict[str, str] = {}
    for attr in sorted(names):
        if attr in _KEPT_XATTRS or (attr.startswith("user.") and "overlay" not in attr):
            try:
                value = os.getxattr(path, attr, follow_symlinks=False)
            except OSError:
                continue
            headers[f"SCHILY.xattr.{attr}"] = value.decode("utf-8", "surrogateescape")
    if headers:
        info.pax_headers = headers
