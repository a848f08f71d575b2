"""Owners: the repository (or local project) that a pipeline's images and caches belong to.

An owner is a string the caller picks and keeps stable for a repository: the service gives each
repository `repo:<id>` (and a merge request from a fork the fork's own owner, so its builds and
caches never reach the parent repository's), `kapal run` uses `local:<absolute project path>`.
Images a pipeline builds are tagged in its owner's namespace of the image store
(`runner.images.store`), and its caches live in its owner's folder of the cache store
(`runner.cache`); nothing a pipeline of one owner writes is seen by another's.
"""

from __future__ import annotations

import re
from pathlib import Path

from runner.text_digest import text_sha256

__all__ = ["DEFAULT_OWNER", "local_owner", "owner_slug"]

DEFAULT_OWNER = "local"  # the owner of pipelines whose caller named none: they share it

_SLUG_CHARS = 40
_HASH_CHARS = 12


def owner_slug(owner: str) -> str:
    """A short lowercase name for `owner`, unique by its hash (`repo-42-1f2e3d4c5b6a`).

    Usable as a folder name and as an image repository path component.
    """
    readable = re.sub(r"[^a-z0-9]+", "-", owner.lower()).strip("-")
    readable = readable[-_SLUG_CHARS:].strip("-") or "owner"
    digest = text_sha256(owner)[:_HASH_CHARS]
    return f"{readable}-{digest}"


def local_owner(project: Path) -> str:
    """The owner of `kapal run` pipelines of the project at `project`."""
    return f"local:{project.resolve()}"
