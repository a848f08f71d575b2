"""Reading the Dockerfile a pipeline names, inside the repository that holds it.

A `build:` job names its Dockerfile with a path the repository chooses; the builder runs as root
on the host. `read_dockerfile_within` reads it through the in-root resolver (`runner.confined`):
a path or a symlink that leads out of the repository is refused, and no line of a file outside
it ever reaches a message.
"""

from __future__ import annotations

import os
from pathlib import Path

from runner.build.dockerfile import Dockerfile, parse_dockerfile
from runner.confined import ConfinedTree
from runner.errors import ConfinedPathError, DockerfileError

__all__ = ["read_dockerfile_within"]

_MAX_BYTES = 4 * 1024 * 1024


def read_dockerfile_within(root: Path, path: Path) -> Dockerfile:
    """Read and parse the Dockerfile at `path`, which must resolve inside the tree `root`."""
    rel = _inside(root, path)
    if rel is None:
        raise DockerfileError(
            f"{path}: the Dockerfile must be inside the repository ({root}); name one there"
        )
    shown = str(root / rel)
    try:
        with ConfinedTree(root) as tree:
            raw = tree.read_bytes(rel, _MAX_BYTES + 1)
    except ConfinedPathError as exc:
        raise DockerfileError(
            f"{shown}: cannot read the Dockerfile inside the repository ({exc})"
        ) from None
    if len(raw) > _MAX_BYTES:
        raise DockerfileError(f"{shown}: larger than 4 MiB; that is not a Dockerfile")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DockerfileError(f"{shown}: not UTF-8 text ({exc.reason}); save it as UTF-8") from None
    return parse_dockerfile(text, shown)


def _inside(root: Path, path: Path) -> str | None:
    """`path` relative to `root` when it is lexically inside (either side may be resolved)."""
    for base in (Path(os.path.abspath(root)), root.resolve()):
        candidate = Path(os.path.abspath(path))
        if candidate.is_relative_to(base):
            return candidate.relative_to(base).as_posix()
    return None
