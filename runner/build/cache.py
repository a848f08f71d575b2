"""`LayerCache`: the builder's per-instruction cache, on disk, shared by concurrent builds.

Layout under `RunnerSettings().build_cache_dir`::

    keys/<key>.json         the layer an instruction produced: digest, diff_id, size
    blobs/<hex>.tar.gz      the layer blob (gzip tar), named by its digest
    trees/<hex>/            the layer unpacked (overlay style: whiteouts as 0/0 char devices),
                            named by its diff_id; used as an overlay lower dir by later RUN steps
    locks/<key>.lock        held while one build computes a missing key
    l/<short>               short symlinks to trees and image layers: overlayfs takes all its
                            lower dirs in one page of mount options, so short names allow
                            about twice as many layers as full paths
    tmp/                    work space; entries are renamed into place when complete

Lifecycle: `lookup(key)` answers a hit only when the key file, the blob and the tree all exist.
On a miss the builder holds `lock(key)`, looks up again (another build may have finished it), then
computes the layer in `tmp_dir()` and calls `store(key, layer, tree)`, which renames both into place
(atomic on one filesystem) and writes the key file last. Entries are never modified once written.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

from pipeline.records import record
from runner.build.layers import LayerTar

__all__ = ["CachedLayer", "LayerCache", "cache_key"]


@record
class CachedLayer:
    """A layer held by the cache: blob file, unpacked tree, digests."""

    digest: str
    diff_id: str
    size: int
    blob: Path
    tree: Path


def cache_key(*parts: object) -> str:
    """A stable hex key from JSON-serialisable parts."""
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


class LayerCache:
    """The on-disk instruction cache (see the module docstring for the layout and protocol)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        for sub in ("keys", "blobs", "trees", "locks", "tmp", "l"):
            (root / sub).mkdir(parents=True, exist_ok=True)

    def _layer(self, digest: str, diff_id: str, size: int) -> CachedLayer:
        return CachedLayer(
            digest,
            diff_id,
            size,
            self.root / "blobs" / f"{digest.split(':', 1)[1]}.tar.gz",
            self.root / "trees" / diff_id.split(":", 1)[1],
        )

    def lookup(self, key: str) -> CachedLayer | None:
        """The layer stored under `key`, or None when any part of it is missing."""
        path = self.root / "keys" / f"{key}.json"
        try:
            entry = json.loads(path.read_text())
            layer = self._layer(entry["digest"], entry["diff_id"], int(entry["size"]))
        except (OSError, ValueError, KeyError):
            return None
        if not layer.blob.is_file() or not layer.tree.is_dir():
            return None
        with contextlib.suppress(OSError):
            os.utime(path)  # last use, for pruning least recently used first (cache_prune)
        return layer

    @contextlib.contextmanager
    def lock(self, key: str) -> Iterator[None]:
        """Hold the lock for computing `key` (blocks while another build holds it)."""
        from filelock import FileLock  # only a cache miss stores: a warm build never imports it

        with FileLock(str(self.root / "locks" / f"{key}.lock")):
            yield

    @contextlib.contextmanager
    def tmp_dir(self) -> Iterator[Path]:
        """A fresh work directory on the cache's filesystem, removed on exit; it records its
        owner process, so that `kapal gc` removes it (and unmounts a step disk in it) should
        that process be killed."""
        from runner.runtime.ownership import Owner, write_owner

        path = Path(tempfile.mkdtemp(dir=self.root / "tmp"))
        try:
            write_owner(path, Owner.current())
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)

    def short_path(self, directory: Path) -> Path:
        """A short symlink to `directory` (created once, shared), for overlay lower dir lists."""
        digest = hashlib.sha256(str(directory).encode()).hexdigest()
        name = digest[:8]
        link = self.root / "l" / name
        if link.is_symlink() and os.readlink(link) != str(directory):
            name = digest  # a clash of short names: fall back to the full digest
            link = self.root / "l" / name
        if not link.is_symlink():
            tmp = self.root / "l" / f".{name}.{os.getpid()}.{threading.get_ident()}"
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            os.symlink(directory, tmp)
            os.replace(tmp, link)
        return link

    def store(self, key: str | None, layer: LayerTar, tree: Path) -> CachedLayer:
        """Move `layer`'s blob and its unpacked `tree` into the cache; record `key` if given."""
        cached = self._layer(layer.digest, layer.diff_id, layer.size)
        if not cached.blob.exists():
            os.replace(layer.path, cached.blob)
        if not cached.tree.exists():
            try:
                os.rename(tree, cached.tree)
            except OSError:
                if not cached.tree.exists():
                    raise
        if key is not None:
            entry = {"digest": layer.digest, "diff_id": layer.diff_id, "size": layer.size}
            tmp = self.root / "keys" / f".{key}.{os.getpid()}.tmp"
            tmp.write_text(json.dumps(entry, sort_keys=True))
            os.replace(tmp, self.root / "keys" / f"{key}.json")
        return cached
