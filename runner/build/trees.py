"""Read-only views of file trees the builder copies from: the build context and stacked layers.

`ContextTree` is the build context seen through .dockerignore. `LayeredTree` is the root filesystem
an overlay of unpacked layers would show, read without mounting anything: the topmost layer holding
a name wins, a `.wh.`-style whiteout (overlay's 0/0 character device) hides lower entries, and an
opaque directory (`trusted.overlay.opaque=y`) hides the directories beneath it.
"""

from __future__ import annotations

import os
import posixpath
import stat
from pathlib import Path
from typing import Protocol

from pipeline.records import record
from runner.build.dockerignore import DockerIgnore
from runner.confined import ConfinedTree

__all__ = ["ContextTree", "LayeredTree", "SourceTree"]

_MAX_LINKS = 40


class SourceTree(Protocol):
    """A tree of files addressed by `/`-separated paths relative to its root."""

    def locate(self, path: str) -> Path | None:
        """Host path of the entry at `path` (last component not followed), None if absent."""
        ...

    def listdir(self, path: str) -> list[str]:
        """Sorted names in the directory at `path` (empty when it is not a directory)."""
        ...


@record
class ContextTree:
    """The build context directory, with .dockerignore'd paths absent.

    Paths resolve as `docker build` resolves them: symlinks in the context are followed inside
    it, as if the context were `/` (`runner.confined`), so `d -> /etc` names the context's own
    `etc`, never the host's.
    """

    root: Path
    ignore: DockerIgnore

    def _host(self, rel: str, *, follow: bool = False) -> tuple[str, Path] | None:
        """(path in the context, host path) of `rel`, its directories resolved in the context."""
        if not rel:
            return "", self.root
        parent, _, name = rel.rpartition("/")
        with ConfinedTree(self.root) as tree:
            where = tree.resolve(rel) if follow else tree.resolve(parent) if parent else ""
        if where is None:
            return None
        if not follow:
            where = f"{where}/{name}" if where else name
        return where, self.root / where if where else self.root

    def locate(self, path: str) -> Path | None:
        """Host path of `path` in the context, None when absent or excluded."""
        rel = _clean(path)
        if rel and self.ignore.excluded(rel):
            return None
        found = self._host(rel)
        if found is None:
            return None
        where, host = found
        if where != rel and where and self.ignore.excluded(where):
            return None
        return host if os.path.lexists(host) else None

    def listdir(self, path: str) -> list[str]:
        """Names in the context directory `path` (a symlink to one followed inside the context)."""
        rel = _clean(path)
        if self.locate_any(rel) is None:
            return []
        found = self._host(rel, follow=True)
        if found is None:
            return []
        _, host = found
        if host.is_symlink() or not host.is_dir():
            return []
        keep = []
        for name in sorted(os.listdir(host)):
            child = f"{rel}/{name}" if rel else name
            if not self.ignore.excluded(child) or self._has_included_below(child, host / name):
                keep.append(name)
        return keep

    def _has_included_below(self, rel: str, host: Path) -> bool:
        # an excluded directory is still walked when a `!` pattern may re-include something in it
        if not self.ignore.has_exceptions() or host.is_symlink() or not host.is_dir():
            return False
        for dirpath, dirnames, filenames in os.walk(host):
            base = rel + dirpath[len(str(host)) :]
            for name in dirnames + filenames:
                if not self.ignore.excluded(f"{base}/{name}"):
                    return True
        return False

    def locate_any(self, path: str) -> Path | None:
        """Like `locate`, but a directory that is excluded yet holds included files is present."""
        host = self.locate(path)
        if host is not None:
            return host
        rel = _clean(path)
        found = self._host(rel)
        if found is None:
            return None
        _, candidate = found
        if self._has_included_below(rel, candidate):
            return candidate
        return None


@record
class LayeredTree:
    """The merged view of unpacked layer directories (bottom-first), read without a mount."""

    layers: tuple[Path, ...]

    def locate(self, path: str) -> Path | None:
        """Host path of the topmost entry at `path`, None when absent or whited out."""
        rel = _clean(path)
        if not rel:
            return self.layers[-1] if self.layers else None
        parts = rel.split("/")
        for layer in reversed(self.layers):
            hidden = False
            for i in range(1, len(parts)):
                parent = layer.joinpath(*parts[:i])
                if os.path.lexists(parent) and (parent.is_symlink() or not parent.is_dir()):
                    hidden = True  # a whiteout, file or link here hides what lower layers hold
                    break
                if parent.is_dir() and not parent.is_symlink() and _is_opaque(parent):
                    # entries below an opaque dir in lower layers are hidden
                    host = layer.joinpath(*parts)
                    return host if os.path.lexists(host) and not _is_whiteout(host) else None
            if hidden:
                return None
            host = layer.joinpath(*parts)
            if os.path.lexists(host):
                return None if _is_whiteout(host) else host
        return None

    def listdir(self, path: str) -> list[str]:
        """Merged names in the directory at `path` (symlinked directories followed)."""
        rel = self.resolve(path, follow_last=True) if path.strip("/") else ""
        names: set[str] = set()
        gone: set[str] = set()
        parts = rel.split("/") if rel else []
        for layer in reversed(self.layers):
            host = layer.joinpath(*parts) if parts else layer
            if os.path.lexists(host) and not (host.is_dir() and not host.is_symlink()):
                break  # a non-directory here hides the directories beneath
            if _is_whiteout(host):
                break
            if host.is_dir():
                for name in os.listdir(host):
                    if name in gone or name in names:
                        continue
                    if _is_whiteout(host / name):
                        gone.add(name)
                    else:
                        names.add(name)
                if _is_opaque(host):
                    break
        return sorted(names)

    def resolve(self, path: str, *, follow_last: bool = False) -> str:
        """`path` with symlinks in its directories resolved inside this tree (chroot-style).

        The last component is followed too when `follow_last` is set.
        """
        parts = [p for p in _clean(path).split("/") if p]
        done: list[str] = []
        hops = 0
        while parts:
            name = parts.pop(0)
            if name == "..":
                if done:
                    done.pop()
                continue
            candidate = "/".join([*done, name])
            host = self.locate(candidate)
            if host is not None and host.is_symlink() and (parts or follow_last):
                hops += 1
                if hops > _MAX_LINKS:
                    return candidate
                target = os.readlink(host)
                base = [] if target.startswith("/") else list(done)
                parts = [p for p in target.split("/") if p and p != "."] + parts
                done = base
                continue
            done.append(name)
        return "/".join(done)

    def read_text(self, path: str) -> str | None:
        """Text of the file at `path` (symlinks followed), None when it is absent."""
        resolved = self.resolve(path)
        for _ in range(_MAX_LINKS):
            host = self.locate(resolved)
            if host is None:
                return None
            if host.is_symlink():
                target = os.readlink(host)
                parent = posixpath.dirname(resolved)
                resolved = self.resolve(
                    target if target.startswith("/") else posixpath.join(parent, target)
                )
                continue
            return _read_regular(host)
        return None


def _read_regular(host: Path) -> str | None:
    """Text of a regular file; None for anything else (a fifo in an image must not hang us)."""
    try:
        fd = os.open(host, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        try:
            return handle.read().decode("utf-8", errors="replace")
        except OSError:
            return None


def _clean(path: str) -> str:
    cleaned = posixpath.normpath("/" + path).lstrip("/")
    return "" if cleaned == "." else cleaned


def _is_whiteout(host: Path) -> bool:
    try:
        st = os.lstat(host)
    except OSError:
        return False
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _is_opaque(host: Path) -> bool:
    for attr in ("trusted.overlay.opaque", "user.overlay.opaque"):
        try:
            if os.getxattr(host, attr, follow_symlinks=False) == b"y":
                return True
        except OSError:
            continue
    return False
