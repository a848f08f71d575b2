"""`ObjectStore`: the one interface to where artifacts and caches live beyond one worker."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from runner.errors import ObjectKeyError

MAX_KEY_BYTES = 1024  # S3's limit for an object key
PARTIAL_PREFIX = ".kapal-partial-"  # a write in progress in a directory store; never a key
CHUNK = 1 << 20  # bytes read or written at a time: blobs stream, never held whole


class ObjectStore(Protocol):
    """Blobs (files of any size) kept under path-like keys, reachable from every worker.

    Lifecycle: a store is made from the settings (`runner.objects.open_object_store`), which
    checks nothing and connects to nothing; `check()` then says whether the store can be used
    (reachable, bucket present, credentials accepted) and a worker calls it once at start. After
    that, `put_file`, `get_file`, `exists`, `delete` and `keys` may be called in any order, from
    several threads at once; there is no close (connections are pooled and reused).

    Keys are `/`-separated relative paths (`artifacts/12/build.tar.gz`), checked by `object_key`:
    never absolute, never with `.`, `..` or empty parts. Blobs stream from and to files, a chunk
    at a time, so their size never shows in memory. A `put_file` is atomic: a reader of the
    key sees the old blob or the new one, never part of one. Every failure is an
    `ObjectStoreError` whose message names the setting to fix.
    """

    @property
    def location(self) -> str:
        """Where the blobs live, for messages (`s3://bucket/prefix at http://host:9000`)."""
        ...

    def check(self) -> None:
        """Raise `ObjectStoreError` unless the store can be read and written now."""
        ...

    def put_file(self, key: str, source: Path) -> int:
        """Store the file at `source` under `key` (replacing any blob there); return its size."""
        ...

    def get_file(self, key: str, destination: Path) -> bool:
        """Write the blob `key` to the file `destination` (replaced whole); False if absent."""
        ...

    def exists(self, key: str) -> bool:
        """Whether a blob is stored under `key`."""
        ...

    def delete(self, key: str) -> None:
        """Remove the blob `key`; nothing happens when there is none."""
        ...

    def keys(self, prefix: str = "") -> Iterator[str]:
        """The keys that start with `prefix` (a plain string prefix, as S3 lists), sorted."""
        ...


class Readable(Protocol):
    """Anything with a binary `read(size)`: an open file, a streamed HTTP body."""

    def read(self, size: int = -1, /) -> bytes:
        """Up to `size` bytes; b"" at the end."""
        ...


def object_key(key: str) -> str:
    """`key` when it is a plain relative path; `ObjectKeyError` saying why otherwise."""
    if not key:
        raise ObjectKeyError("an object key may not be empty")
    if "\0" in key or "\\" in key:
        raise ObjectKeyError(f"object key {key!r}: NUL and backslash are not allowed")
    if key.startswith("/"):
        raise ObjectKeyError(f"object key {key!r}: absolute keys are not allowed")
    parts = key.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise ObjectKeyError(f"object key {key!r}: empty, `.` and `..` parts are not allowed")
    if any(part.startswith(PARTIAL_PREFIX) for part in parts):
        raise ObjectKeyError(f"object key {key!r}: {PARTIAL_PREFIX}* names are kapal's own")
    if len(key.encode("utf-8", "surrogateescape")) > MAX_KEY_BYTES:
        raise ObjectKeyError(f"object key {key[:40]!r}...: longer than {MAX_KEY_BYTES} bytes")
    return key


def key_prefix(prefix: str) -> str:
    """`prefix` for listing: empty, or a string whose complete parts form a valid key."""
    if not prefix:
        return ""
    head = prefix.rstrip("/")
    if head:
        object_key(head)
    elif prefix:
        raise ObjectKeyError(f"object key prefix {prefix!r}: absolute prefixes are not allowed")
    return prefix
