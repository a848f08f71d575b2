"""Job caches: files kept between runs under a key, restored before and saved after a job."""

from __future__ import annotations

import re
import shutil
import stat
import tempfile
from collections.abc import Sequence
from enum import StrEnum
from pathlib import Path

from runner.artifacts import collect_paths, copy_entries, make_private_dir
from runner.confined import ConfinedTree
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
        if not source.is_dir():
            return []
        with ConfinedTree(source) as tree:
            files = [rel for rel, st in tree.walk() if not stat.S_ISDIR(st.st_mode)]
        return copy_entries(source, files, workspace).copied

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
