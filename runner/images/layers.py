"""Layer tars: checking them (digests, paths, truncation) and unpacking them for overlayfs.

Layers may be plain tars, gzip or zstd (`zstandard` is imported only for a zstd layer; GNU
tar unpacks those through the `zstd` program). Unpacking turns OCI whiteouts into overlayfs
ones: `.wh.x` becomes a 0/0 character device `x`, `.wh..wh..opq` becomes the
`trusted.overlay.opaque=y` xattr on its directory. Extraction is done by GNU tar as root (owners,
modes, devices, xattrs kept) after a Python pass has rejected members that
would escape the layer directory.
"""

from __future__ import annotations

import errno
import hashlib
import os
import posixpath
import shutil
import subprocess
import tarfile
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from runner.errors import ArchiveError, StoreFullError
from runner.images.blobs import CHUNK, file_digest

WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"


def _compression(value: bool | str) -> str:
    """A layer's compression as "gzip", "zstd" or "" (True and False: gzip or none)."""
    if isinstance(value, bool):
        return "gzip" if value else ""
    return value


_ZLIB = type(zlib.decompressobj())


class _Decompressor(Protocol):
    @property
    def eof(self) -> bool: ...

    @property
    def unused_data(self) -> bytes: ...

    def decompress(self, data: bytes) -> bytes: ...


def _decompressor(compression: str) -> _Decompressor:
    if compression == "zstd":
        import zstandard  # only images with zstd layers need it

        return zstandard.ZstdDecompressor().decompressobj()
    return zlib.decompressobj(wbits=47)


class _HashingReader:
    """A file-like reader that hashes the raw bytes and the (decompressed) tar stream it yields."""

    def __init__(self, path: Path, compression: bool | str) -> None:
        self._kind = _compression(compression)
        self._file = path.open("rb")
        self._inflate = _decompressor(self._kind) if self._kind else None
        self._buffer = bytearray()
        self._position = 0
        self._eof = False
        self.tar_hash = hashlib.sha256()
        # An uncompressed blob is its own tar stream: one hash serves for both digests.
        self.raw_hash = hashlib.sha256() if self._kind else self.tar_hash
        self.raw_size = 0

    def _fill(self) -> bytes:
        raw = self._file.read(CHUNK)
        self.raw_size += len(raw)
        if self._inflate is None:
            self._eof = not raw
            self.tar_hash.update(raw)
            return raw
        self.raw_hash.update(raw)
        if not raw:
            self._eof = True
            out = self._inflate.flush() if isinstance(self._inflate, _ZLIB) else b""
            if not self._inflate.eof:
                raise ArchiveError(f"the {self._kind} stream ends early (truncated layer)")
        else:
            out = self._inflate.decompress(raw)
            # A gzip file may hold several members back to back, a zstd one several frames.
            while self._inflate.eof and self._inflate.unused_data:
                rest = self._inflate.unused_data
                self._inflate = _decompressor(self._kind)
                out += self._inflate.decompress(rest)
        self.tar_hash.update(out)
        return out

    def read(self, size: int = -1) -> bytes:
        """Return up to `size` bytes of the tar stream (all that is left when negative)."""
        while not self._eof and (size < 0 or len(self._buffer) - self._position < size):
            if self._position > CHUNK:
                del self._buffer[: self._position]
                self._position = 0
            self._buffer += self._fill()
        end = len(self._buffer) if size < 0 else min(len(self._buffer), self._position + size)
        data = bytes(self._buffer[self._position : end])
        self._position = end
        return data

    def drain(self) -> None:
        """Read to the end so the hashes cover the whole blob."""
        while self.read(CHUNK):
            pass

    def close(self) -> None:
        """Close the underlying file."""
        self._file.close()


@dataclass
class LayerScan:
    """What a pass over a layer blob found: its digests and the whiteouts to convert."""

    digest: str
    size: int
    diff_id: str
    whiteouts: list[str] = field(default_factory=list)
    opaque_dirs: list[str] = field(default_factory=list)


def _clean(name: str, where: str) -> str:
    path = posixpath.normpath(name.lstrip("/")) if name.strip("/") else "."
    if path == ".." or path.startswith("../"):
        raise ArchiveError(f"{where}: member {name!r} points outside the layer; refusing it")
    return path


def _check_not_under_symlink(path: str, shown: str, symlinks: set[str], where: str) -> None:
    parent = posixpath.dirname(path)
    while parent not in ("", "."):
        if parent in symlinks:
            raise ArchiveError(
                f"{where}: member {shown!r} lies under the symlink {parent!r} of the same layer; "
                "refusing it"
            )
        parent = posixpath.dirname(parent)


def _check_members(members: Iterable[tarfile.TarInfo], where: str) -> tuple[list[str], list[str]]:
    """Refuse members that escape the layer; return the whiteouts and opaque dirs found."""
    whiteouts: list[str] = []
    opaque: list[str] = []
    symlinks: set[str] = set()
    for member in members:
        name = _clean(member.name, where)
        _check_not_under_symlink(name, member.name, symlinks, where)
        if member.issym():
            symlinks.add(name)
        if member.islnk():
            # link() follows symlinks in the target's directories: a hard link through one could
            # reach a file of the host.
            target = _clean(member.linkname, where)
            _check_not_under_symlink(target, member.linkname, symlinks, where)
        base = posixpath.basename(name)
        if base == OPAQUE_MARKER:
            opaque.append(posixpath.dirname(name) or ".")
        elif base.startswith(WHITEOUT_PREFIX):
            whiteouts.append(name)
    return whiteouts, opaque


def _truncated(where: str, exc: BaseException) -> ArchiveError:
    return ArchiveError(
        f"{where}: the layer tar is truncated or malformed ({exc}); get the image again"
    )


def scan_layer(path: Path, gzip: bool | str, where: str) -> LayerScan:
    """Check a layer blob: its digest, diff_id, whiteouts; reject truncated or unsafe tars.

    `gzip` is the blob's compression: True or "gzip", "zstd", or False or "" for a plain tar.
    """
    if not gzip:
        # Uncompressed: walk the headers with seeks, hash the file in C; the blob is the tar.
        try:
            with tarfile.open(path, "r:") as tar:
                whiteouts, opaque = _check_members(tar, where)
        except (tarfile.TarError, EOFError) as exc:
            raise _truncated(where, exc) from exc
        digest, size = file_digest(path)
        return LayerScan(digest, size, digest, whiteouts, opaque)
    reader = _HashingReader(path, gzip)
    try:
        with tarfile.open(fileobj=reader, mode="r|") as tar:  # type: ignore[call-overload]
            whiteouts, opaque = _check_members(tar, where)
        reader.drain()
    except (tarfile.TarError, EOFError, zlib.error) as exc:
        raise _truncated(where, exc) from exc
    except ArchiveError as exc:
        if str(exc).startswith(where):
            raise
        raise _truncated(where, exc) from exc
    except Exception as exc:  # zstandard.ZstdError: the module is imported only when needed
        if type(exc).__name__ != "ZstdError":
            raise
        raise _truncated(where, exc) from exc
    finally:
        reader.close()
    return LayerScan(
        digest="sha256:" + reader.raw_hash.hexdigest(),
        size=reader.raw_size,
        diff_id="sha256:" + reader.tar_hash.hexdigest(),
        whiteouts=whiteouts,
        opaque_dirs=opaque,
    )


def _convert_whiteouts(dest: Path, scan: LayerScan) -> None:
    for name in scan.opaque_dirs:
        directory = dest / name
        (directory / OPAQUE_MARKER).unlink(missing_ok=True)
        os.setxattr(directory, "trusted.overlay.opaque", b"y")
    for name in scan.whiteouts:
        marker = dest / name
        target = marker.with_name(marker.name[len(WHITEOUT_PREFIX) :])
        marker.unlink(missing_ok=True)
        if not target.exists() and not target.is_symlink():
            os.mknod(target, 0o600 | 0o020000, os.makedev(0, 0))


def unpack_layer(blob: Path, gzip: bool | str, dest: Path, scan: LayerScan, where: str) -> None:
    """Extract a scanned layer blob into the empty directory `dest`, overlayfs-ready."""
    dest.mkdir(mode=0o755)
    command = [
        "tar",
        "--extract",
        "--file",
        str(blob),
        "--directory",
        str(dest),
        "--numeric-owner",
        "--same-owner",
        "--same-permissions",
        "--xattrs",
        "--xattrs-include=*",
        "--no-overwrite-dir",
        "--warning=no-unknown-keyword",
    ]
    compression = _compression(gzip)
    if compression:
        command.append(f"--{compression}")
    if compression == "zstd" and shutil.which("zstd") is None:
        raise ArchiveError("the zstd program is needed to unpack zstd layers; install `zstd`")
    if shutil.which("tar") is None:
        raise ArchiveError("GNU tar is needed to unpack layers; install Debian's `tar` package")
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        # GNU tar says "Wrote only N of M bytes" when a write comes up short (ENOSPC).
        if "No space left on device" in result.stderr or "Wrote only" in result.stderr:
            raise StoreFullError(
                f"no space left on the device holding {dest.parent} while unpacking {where}; "
                "free some space (`kapal image gc`) or point KAPAL_DATA_DIR elsewhere"
            )
        raise ArchiveError(f"{where}: unpacking the layer failed: {result.stderr.strip()[-500:]}")
    try:
        _convert_whiteouts(dest, scan)
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise StoreFullError(f"no space left while unpacking {where} into {dest}") from exc
        raise
