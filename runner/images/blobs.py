"""Content-addressed blobs on disk (`blobs/sha256/<hex>`), written atomically and verified."""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from runner.errors import CorruptBlobError, StoreFullError
from runner.images.reference import check_digest
from runner.text_digest import small_sha256

CHUNK = 1 << 20
_SMALL = 1 << 16  # digests of up to 64 KiB use CPython's own SHA-256 (runner.text_digest)


def sha256_digest(data: bytes) -> str:
    """The `sha256:<hex>` digest of `data`."""
    if len(data) <= _SMALL:  # a manifest or config: no OpenSSL (runner.text_digest)
        return "sha256:" + small_sha256(data)
    import hashlib

    return "sha256:" + hashlib.sha256(data).hexdigest()


def file_digest(path: Path) -> tuple[str, int]:
    """The `sha256:<hex>` digest and size of the file at `path`."""
    import hashlib

    with path.open("rb") as f:
        digest = hashlib.file_digest(f, "sha256").hexdigest()
        size = f.tell()
    return "sha256:" + digest, size


def store_full_error(where: Path, exc: OSError) -> StoreFullError:
    """The error for a write that ran out of space under `where`."""
    return StoreFullError(
        f"no space left on the device holding {where} ({exc.strerror}); nothing was kept. "
        "Free some space (`kapal image gc` removes unused blobs) or point KAPAL_DATA_DIR elsewhere."
    )


@contextmanager
def space_checked(where: Path) -> Iterator[None]:
    """Turn "no space left on device" inside the block into a `StoreFullError` about `where`."""
    try:
        yield
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise store_full_error(where, exc) from exc
        raise


class BlobWriter:
    """A blob being written to a temp file; `commit()` verifies and moves it into place."""

    def __init__(self, store: BlobStore, file: BinaryIO, tmp_path: Path) -> None:
        self._store = store
        self._file = file
        self.tmp_path = tmp_path
        import hashlib

        self._hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> None:
        """Append `data` to the blob."""
        self._file.write(data)
        self._hash.update(data)
        self.size += len(data)

    @property
    def digest(self) -> str:
        """The digest of what was written so far."""
        return "sha256:" + self._hash.hexdigest()

    def commit(self, expected: str | None = None, where: str = "blob") -> str:
        """Check the content against `expected`, then make the blob visible; return its digest."""
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        digest = self.digest
        if expected is not None and expected != digest:
            raise CorruptBlobError(
                f"{where}: content does not match its digest (expected {expected}, got {digest}, "
                f"{self.size} bytes); the source is corrupt or was truncated, nothing was stored"
            )
        final = self._store.path(digest)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self.tmp_path, final)
        return digest


class BlobStore:
    """Blobs named by their sha256 digest under `root`; temp files live in `tmp` until verified.

    Writers never expose partial content: a blob is written to `tmp`, fsynced, checked against its
    expected digest, then renamed into place. Two processes writing the same blob both succeed.
    """

    def __init__(self, root: Path, tmp: Path) -> None:
        self.root = root
        self.tmp = tmp

    def path(self, digest: str) -> Path:
        """Where the blob named `digest` lives (whether or not it exists)."""
        check_digest(digest, digest)
        algorithm, _, hexpart = digest.partition(":")
        return self.root / algorithm / hexpart

    def has(self, digest: str) -> bool:
        """Whether the blob `digest` is in the store."""
        return self.path(digest).is_file()

    def size(self, digest: str) -> int:
        """Size in bytes of the stored blob `digest`."""
        return self.path(digest).stat().st_size

    def read_bytes(self, digest: str, where: str = "blob") -> bytes:
        """The whole content of a (small) blob, verified against its digest."""
        data = self.path(digest).read_bytes()
        if sha256_digest(data) != digest:
            raise CorruptBlobError(
                f"{where} {digest} in the image store is corrupt (its content hashes to "
                f"{sha256_digest(data)}); remove the image with `kapal image rm` and get it again"
            )
        return data

    def digests(self) -> Iterator[str]:
        """Every blob digest in the store."""
        base = self.root / "sha256"
        if base.is_dir():
            for entry in base.iterdir():
                yield f"sha256:{entry.name}"

    def remove(self, digest: str) -> int:
        """Delete a blob; return the bytes freed (0 if it was not there)."""
        path = self.path(digest)
        try:
            size = path.stat().st_size
            path.unlink()
        except FileNotFoundError:
            return 0
        return size

    @contextmanager
    def writer(self) -> Iterator[BlobWriter]:
        """A `BlobWriter`; its temp file is removed unless `commit()` moved it into place."""
        self.tmp.mkdir(parents=True, exist_ok=True)
        import tempfile  # writing only: reading a blob does not pay for it

        fd, name = tempfile.mkstemp(dir=self.tmp, prefix="blob-")
        tmp_path = Path(name)
        try:
            with space_checked(self.root), os.fdopen(fd, "wb") as f:
                yield BlobWriter(self, f, tmp_path)
        finally:
            tmp_path.unlink(missing_ok=True)

    def put_bytes(self, data: bytes, expected: str | None = None, where: str = "blob") -> str:
        """Store `data`; return its digest."""
        digest = sha256_digest(data)
        if expected is not None and expected != digest:
            raise CorruptBlobError(
                f"{where}: content does not match its digest (expected {expected}, got {digest})"
            )
        if self.has(digest):
            return digest
        with self.writer() as w:
            w.write(data)
            return w.commit(expected, where)

    def put_chunks(
        self, chunks: Iterable[bytes], expected: str | None = None, where: str = "blob"
    ) -> tuple[str, int]:
        """Store a stream of bytes; return its digest and size."""
        with self.writer() as w:
            for chunk in chunks:
                w.write(chunk)
            return w.commit(expected, where), w.size

    def adopt_file(self, path: Path, digest: str) -> None:
        """Copy a file whose digest was just computed into place, without hashing it again.

        Unpacking verifies every layer blob, so a file that changed in between is still caught.
        """
        if self.has(digest):
            return
        self.tmp.mkdir(parents=True, exist_ok=True)
        import tempfile  # writing only: reading a blob does not pay for it

        fd, name = tempfile.mkstemp(dir=self.tmp, prefix="blob-")
        os.close(fd)
        tmp_path = Path(name)
        try:
            with space_checked(self.root):
                shutil.copyfile(path, tmp_path)
                with tmp_path.open("rb") as f:
                    os.fsync(f.fileno())
                final = self.path(digest)
                final.parent.mkdir(parents=True, exist_ok=True)
                os.replace(tmp_path, final)
        finally:
            tmp_path.unlink(missing_ok=True)

    def put_file(self, path: Path, expected: str | None = None, where: str = "") -> tuple[str, int]:
        """Copy the file at `path` into the store; return its digest and size."""

        def chunks() -> Iterator[bytes]:
            with path.open("rb") as f:
                while chunk := f.read(CHUNK):
                    yield chunk

        return self.put_chunks(chunks(), expected, where or str(path))
