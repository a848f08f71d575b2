"""Build-cache pruning: keep the builder's cache under a size limit, least recently used first.

What is counted and removed: instruction entries of the `LayerCache` (a key file with the blob and
unpacked tree it names; a blob or tree shared by several keys goes with the last of them), and
`RUN --mount=type=cache` directories (`runner.build.mounts`). Each counts as used when a build last
hit it (the cache touches a key file on every hit, a cache mount its directory on every use).
Blobs and trees no key names any more (left by a crash) go first. Nothing used in the last
`grace` seconds is removed, whatever the limit: a build running now may still need it.

Callers: `kapal image gc` and `kapal build --prune`, with the limit `KAPAL_BUILD_CACHE_MAX`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["PruneReport", "cache_size", "prune_build_cache"]

DEFAULT_GRACE = 600.0


@dataclass(frozen=True)
class PruneReport:
    """What a prune removed and what the cache holds afterwards (bytes, apparent sizes)."""

    entries: int
    mounts: int
    bytes_freed: int
    bytes_kept: int


@dataclass
class _Unit:
    """Something prunable: a key entry, or a cache-mount directory."""

    used: float
    key: Path | None = None
    mount: Path | None = None
    blob: Path | None = None
    tree: Path | None = None


def _size(path: Path, seen: set[tuple[int, int]]) -> int:
    """Bytes below `path` (symlinks not followed; a hard-linked inode counted once)."""
    try:
        st = os.lstat(path)
    except OSError:
        return 0
    if not stat.S_ISDIR(st.st_mode):
        if (st.st_dev, st.st_ino) in seen:
            return 0
        seen.add((st.st_dev, st.st_ino))
        return st.st_size
    total = 0
    try:
        with os.scandir(path) as entries:
            for entry in entries:
                total += _size(Path(entry.path), seen)
    except OSError:
        pass
    return total


def cache_size(root: Path) -> int:
    """The bytes the build cache at `root` holds (blobs, trees, cache mounts)."""
    seen: set[tuple[int, int]] = set()
    return sum(_size(root / sub, seen) for sub in ("blobs", "trees", "mounts"))


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _units(root: Path) -> tuple[list[_Unit], dict[Path, int]]:
    units: list[_Unit] = []
    refs: dict[Path, int] = {}
    for key in sorted((root / "keys").glob("*.json")):
        try:
            entry = json.loads(key.read_text())
            blob = root / "blobs" / f"{str(entry['digest']).split(':', 1)[1]}.tar.gz"
            tree = root / "trees" / str(entry["diff_id"]).split(":", 1)[1]
            used = key.stat().st_mtime
        except (OSError, ValueError, KeyError, IndexError, AttributeError):
            continue
        units.append(_Unit(used, key=key, blob=blob, tree=tree))
        refs[blob] = refs.get(blob, 0) + 1
        refs[tree] = refs.get(tree, 0) + 1
    mounts = root / "mounts"
    if mounts.is_dir():
        for owner in sorted(mounts.iterdir()):
            if not owner.is_dir() or owner.is_symlink():
                continue
            for directory in sorted(owner.iterdir()):
                if directory.is_dir() and not directory.is_symlink():
                    units.append(_Unit(directory.stat().st_mtime, mount=directory))
    return units, refs


def prune_build_cache(
    root: Path, max_bytes: int, *, grace: float = DEFAULT_GRACE, now: float | None = None
) -> PruneReport:
    """Remove least recently used entries until the cache at `root` fits `max_bytes`."""
    from filelock import FileLock

    now = time.time() if now is None else now
    units, refs = _units(root)
    freed, removed_entries, removed_mounts = 0, 0, 0
    seen: set[tuple[int, int]] = set()
    # orphans: blobs and trees no key names (a build stopped between writing them and its key)
    for sub in ("blobs", "trees"):
        for path in sorted((root / sub).glob("*")) if (root / sub).is_dir() else []:
            if path in refs or path.name.startswith("."):
                continue
            with contextlib.suppress(OSError):
                if now - os.lstat(path).st_mtime < grace:
                    continue
            freed += _size(path, seen)
            _remove(path)
    total = cache_size(root)
    for unit in sorted(units, key=lambda u: u.used):
        if total <= max_bytes or now - unit.used < grace:
            break
        if unit.mount is not None:
            with FileLock(str(unit.mount) + ".lock"):
                size = _size(unit.mount, set())
                _remove(unit.mount)
            with contextlib.suppress(FileNotFoundError):
                Path(str(unit.mount) + ".lock").unlink()
            total -= size
            freed += size
            removed_mounts += 1
            continue
        assert unit.key is not None and unit.blob is not None and unit.tree is not None
        lock = FileLock(str(root / "locks" / f"{unit.key.stem}.lock"))
        with lock, contextlib.suppress(FileNotFoundError):
            unit.key.unlink()
        removed_entries += 1
        for part in (unit.blob, unit.tree):
            refs[part] -= 1
            if refs[part] == 0:
                size = _size(part, set())
                _remove(part)
                total -= size
                freed += size
    _drop_dangling_links(root / "l")
    return PruneReport(removed_entries, removed_mounts, freed, max(total, 0))


def _drop_dangling_links(directory: Path) -> None:
    if not directory.is_dir():
        return
    for link in directory.iterdir():
        if link.is_symlink() and not link.exists():
            with contextlib.suppress(FileNotFoundError):
                link.unlink()
