"""Job caches: files kept between runs under a key, restored before and saved after a job."""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Sequence
from enum import StrEnum
from pathlib import Path

from runner.artifacts import collect_paths, copy_entries, make_private_dir, restore_tree
from runner.objects.store import ObjectStore
from runner.objects.trees import pack_tree, unpack_tree
from runner.owners import DEFAULT_OWNER, owner_slug


class CachePolicy(StrEnum):
    """When a job uses its cache, as GitLab's `cache: policy`."""

    PULL = "pull"
    PUSH = "push"
    PULL_PUSH = "pull-push"

    @property
    def pulls(self) -> bool:
        """Whether the cache is restored before the job."""
        return self in (CachePolicy.PULL, CachePolicy.PULL_PUSH)

    @property
    def pushes(self) -> bool:
        """Whether the cache is saved after the job."""
        return self in (CachePolicy.PUSH, CachePolicy.PULL_PUSH)


def cache_dir_name(key: str) -> str:
    """A directory name for a cache key (unsafe characters replaced, never empty)."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", key.strip()) or "default"
    return "_" + name if name.startswith(".") else name


class CacheStore:
    """Caches kept as directory trees under `root`, one per scope, key and kind of ref.

    Saving takes the workspace's symlinks as links, never following them out of it; `root` is
    made 0700. `save` builds the new tree beside the old one and swaps it in with a rename, so a job
    restoring while another saves sees either the old or the new cache, never a half-written one.
    """

    def __init__(self, root: Path, scope: str = DEFAULT_OWNER, *, protected: bool = False) -> None:
        """Caches of the pipelines of `scope`, an owner (`runner.owners`: `repo:<id>`, `local:…`).

        Each scope has its own folder under `root`, so repositories choosing the same key never
        share a cache. `protected` says whether the pipeline runs for a protected ref (the
        default branch, a protected branch or tag): as in GitLab, its keys get `-protected`,
        the others' `-non_protected`, so no unprotected branch writes what a protected one
        restores.
        """
        self.root = root / owner_slug(scope)
        self.scope = scope
        self.protected = protected

    def dir_name(self, key: str) -> str:
        """The folder (under `root`) of the cache `key` for this store's kind of ref."""
        return cache_dir_name(f"{key}-{'protected' if self.protected else 'non_protected'}")

    def restore(self, key: str, workspace: Path) -> list[str]:
        """Copy the cache for `key` into `workspace`; return the files restored (none on a miss).

        The workspace's symlinked directories resolve inside it (`runner.confined`): a link
        `out -> /host/dir` made by an earlier job never makes a restore write on the host.
        """
        source = self.root / self.dir_name(key)
        return restore_tree(source, workspace) if source.is_dir() else []

    def save(self, key: str, workspace: Path, paths: Sequence[str]) -> list[str]:
        """Replace the cache for `key` with `paths` from `workspace`; return the files saved."""
        files = collect_paths(workspace, paths)
        make_private_dir(self.root)
        target = self.root / self.dir_name(key)
        staging = Path(tempfile.mkdtemp(prefix=".saving-", dir=self.root))
        try:
            files = copy_entries(workspace, files, staging).copied
            old = Path(tempfile.mkdtemp(prefix=".old-", dir=self.root))
            old.rmdir()
            if target.exists():
                target.rename(old)
            staging.rename(target)
            shutil.rmtree(old, ignore_errors=True)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return files


class SharedCacheStore(CacheStore):
    """Caches kept packed in an `ObjectStore` every worker reaches, one blob per scope and key.

    The blob `caches/<scope>/<key folder>.tar.gz` is the cache (`CacheStore`'s scopes and
    protected/non-protected keys are kept); nothing stays on the worker's disk. `save` copies the
    paths through `runner.confined` into a folder under `scratch`, packs and uploads it (the
    object store makes the replacement atomic; an upload that fails raises `ObjectStoreError`).
    `restore` downloads the blob, unpacks the untrusted archive through `runner.confined`
    (`runner.objects.trees`) and copies it into the workspace with the same code as
    `CacheStore.restore`. Each call cleans up its own folder under `scratch`.
    """

    def __init__(
        self,
        objects: ObjectStore,
        scope: str = DEFAULT_OWNER,
        *,
        scratch: Path,
        protected: bool = False,
    ) -> None:
        super().__init__(scratch, scope, protected=protected)
        self.objects = objects
        self.scratch = scratch

    def object_key(self, key: str) -> str:
        """The key of the blob of the cache `key` in the object store."""
        return f"caches/{owner_slug(self.scope)}/{self.dir_name(key)}.tar.gz"

    def _folder(self) -> Path:
        self.scratch.mkdir(mode=0o700, parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix="cache-", dir=self.scratch))

    def restore(self, key: str, workspace: Path) -> list[str]:
        """Copy the cache for `key` from the object store into `workspace` (none on a miss)."""
        folder = self._folder()
        try:
            blob = self.object_key(key)
            if not self.objects.get_file(blob, folder / "cache.tar.gz"):
                return []
            tree = folder / "tree"
            unpack_tree(folder / "cache.tar.gz", tree, where=f"{blob} in {self.objects.location}")
            return restore_tree(tree, workspace)
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def save(self, key: str, workspace: Path, paths: Sequence[str]) -> list[str]:
        """Replace the cache for `key` in the object store with `paths` from `workspace`."""
        folder = self._folder()
        try:
            tree = folder / "tree"
            files = copy_entries(workspace, collect_paths(workspace, paths), tree).copied
            pack_tree(tree, folder / "cache.tar.gz")
            self.objects.put_file(self.object_key(key), folder / "cache.tar.gz")
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        return files
