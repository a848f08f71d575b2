"""`DirectoryObjectStore`: blobs as files under one directory (a local or network file system)."""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path

from runner.confined import ConfinedTree
from runner.errors import ConfinedPathError, ObjectStoreError
from runner.objects.store import CHUNK, PARTIAL_PREFIX, Readable, key_prefix, object_key

__all__ = ["DirectoryObjectStore", "write_atomically", "write_file_atomically"]


class DirectoryObjectStore:
    """An `ObjectStore` keeping each blob as the file `root/<key>` (the root made 0700).

    Every path below `root` is resolved through `runner.confined`: a symlink someone placed in
    the store resolves inside `root`, never out of it, and writing replaces the link itself.
    A write goes to a `.kapal-partial-*` file beside its key and is renamed over it, so readers
    (other workers on the same file system) see whole blobs only.
    """

    def __init__(self, root: Path, *, setting: str = "KAPAL_OBJECT_STORE") -> None:
        self.root = root
        self.setting = setting

    @property
    def location(self) -> str:
        """The root directory."""
        return str(self.root)

    def _tree(self) -> ConfinedTree:
        try:
            if not self.root.is_dir():
                self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
            return ConfinedTree(self.root)
        except (OSError, ConfinedPathError) as exc:
            raise ObjectStoreError(
                f"the object store directory {self.root} cannot be used ({_reason(exc)}); "
                f"fix {self.setting} or the directory's permissions"
            ) from None

    def _failed(self, what: str, exc: OSError | ConfinedPathError) -> ObjectStoreError:
        return ObjectStoreError(f"object store {self.root}: {what}: {_reason(exc)}")

    def check(self) -> None:
        """Make the root when missing and check that a blob can be written and read back."""
        with self._tree() as tree:
            probe = f"{PARTIAL_PREFIX}check-{secrets.token_hex(4)}"
            try:
                with tree.create_file(probe, 0o600) as handle:
                    handle.write(b"kapal")
                tree.remove(probe)
            except (OSError, ConfinedPathError) as exc:
                raise ObjectStoreError(
                    f"the object store directory {self.root} is not writable ({_reason(exc)}); "
                    f"fix {self.setting} or the directory's permissions"
                ) from None

    def put_file(self, key: str, source: Path) -> int:
        """Copy `source` to `root/<key>` through a partial file renamed into place."""
        object_key(key)
        with self._tree() as tree, open(source, "rb") as handle:
            try:
                with tree.parent_of(key, created=_private) as (parent, name):
                    return write_atomically(parent, name, handle)
            except (OSError, ConfinedPathError) as exc:
                raise self._failed(f"cannot store {key}", exc) from None

    def get_file(self, key: str, destination: Path) -> bool:
        """Copy `root/<key>` to `destination` (a partial file beside it, renamed into place)."""
        object_key(key)
        with self._tree() as tree:
            found = tree.stat(key)
            if found is None or not stat.S_ISREG(found.st_mode):
                return False
            try:
                with tree.open_file(key) as handle:
                    write_file_atomically(destination, handle)
            except (OSError, ConfinedPathError) as exc:
                raise self._failed(f"cannot read {key}", exc) from None
        return True

    def exists(self, key: str) -> bool:
        """Whether `root/<key>` is a regular file."""
        object_key(key)
        with self._tree() as tree:
            found = tree.stat(key)
        return found is not None and stat.S_ISREG(found.st_mode)

    def delete(self, key: str) -> None:
        """Remove `root/<key>` (a link there itself, never its target)."""
        object_key(key)
        with self._tree() as tree:
            try:
                found = tree.stat(key, follow=False)
                if found is not None and not stat.S_ISDIR(found.st_mode):  # a folder is no blob
                    tree.remove(key)
            except (OSError, ConfinedPathError) as exc:
                raise self._failed(f"cannot delete {key}", exc) from None

    def keys(self, prefix: str = "") -> Iterator[str]:
        """Keys of the regular files below `root` starting with `prefix` (links not followed)."""
        key_prefix(prefix)
        top = prefix.rpartition("/")[0]
        with self._tree() as tree:
            found = [
                rel
                for rel, st in tree.walk(top)
                if stat.S_ISREG(st.st_mode)
                and rel.startswith(prefix)
                and not any(p.startswith(PARTIAL_PREFIX) for p in rel.split("/"))
            ]
        yield from sorted(found)


def write_atomically(parent: int, name: str, source: Readable) -> int:
    """Stream `source` (a binary file) into `name` in the directory `parent` via a partial file.

    The partial file is made with O_EXCL|O_NOFOLLOW, synced, then renamed over `name` (which
    replaces a link there, never writing through it). Returns the bytes written.
    """
    partial = f"{PARTIAL_PREFIX}{secrets.token_hex(8)}"
    fd = os.open(
        partial,
        os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
        0o600,
        dir_fd=parent,
    )
    size = 0
    try:
        while chunk := source.read(CHUNK):
            view = memoryview(chunk)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            size += len(chunk)
        os.fsync(fd)
        os.close(fd)
        fd = -1
        os.rename(partial, name, src_dir_fd=parent, dst_dir_fd=parent)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(partial, dir_fd=parent)
        raise
    return size


def write_file_atomically(destination: Path, source: Readable) -> int:
    """`write_atomically` into the file `destination` (a path kapal chose: its own temp dir)."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    parent = os.open(destination.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        return write_atomically(parent, destination.name, source)
    finally:
        os.close(parent)


def _private(_path: str, fd: int) -> None:
    os.fchmod(fd, 0o700)


def _reason(exc: OSError | ConfinedPathError) -> str:
    if isinstance(exc, OSError):
        if exc.errno == errno.ENOSPC:
            return "no space left on the device"
        return exc.strerror or str(exc)
    return str(exc)
