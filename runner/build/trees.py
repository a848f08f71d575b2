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
from runner.errors import ConfinedPathError

__all__ = ["ContextLookup", "ContextTree", "LayeredTree", "SourceTree"]

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
class ContextLookup:
    """Where a path in the build context leads: `path`, its canonical path, or None when it is
    absent; `excluded` is then the entry .dockerignore excludes that the lookup met, if any."""

    path: str | None
    excluded: str = ""


@record
class ContextTree:
    """The build context directory as `docker build` sends it: .dockerignore'd entries absent.

    Paths resolve as `docker build` resolves them, in the context it sent: symlinks are followed
    inside it, as if the context were `/` (`runner.confined`), so `d -> /etc` names the context's
    own `etc`, never the host's; and every step of a lookup, each symlink hop included, passes
    only through entries .dockerignore keeps. An excluded entry is absent even when a path
    reaches it through a symlink (`alias/ex/f` with `alias -> src` and `src/ex` excluded), except
    a directory holding an entry a `!` pattern brings back, which is present with only those.
    The decision is made on canonical paths (no symlink in them), as Docker's client makes it
    on the paths of the tree it walks.
    """

    root: Path
    ignore: DockerIgnore

    def lookup(self, path: str, *, follow: bool = False) -> ContextLookup:
        """Resolve `path` (the last component too when `follow`) in the context as sent."""
        rel = _clean(path)
        if not rel:
            return ContextLookup("")
        with ConfinedTree(self.root) as tree:
            if self._direct(tree, rel, follow):
                return ContextLookup(rel)
            return self._walk(tree, rel, follow)

    def _direct(self, tree: ConfinedTree, rel: str, follow: bool) -> bool:
        """Whether `rel` is present with no symlink on the way (one lookup: the common case).

        An included entry reached through real directories only is present: each directory
        above it holds it, so each is sent even when a pattern excludes it.
        """
        try:
            opened = tree.open_beneath(rel)  # refuses any symlink on the way
        except ConfinedPathError:
            return False
        if opened is None:
            return False
        fd, st = opened
        os.close(fd)
        if follow and stat.S_ISLNK(st.st_mode):
            return False
        return not self.ignore.excluded(rel)

    def _walk(self, tree: ConfinedTree, rel: str, follow: bool) -> ContextLookup:
        """Resolve `rel` one component at a time, refusing absent and excluded entries."""
        todo = [p for p in rel.split("/") if p and p != "."]
        done: list[str] = []
        hops = 0
        while todo:
            name = todo.pop(0)
            if name == "..":
                if done:
                    done.pop()
                continue
            here = "/".join([*done, name])
            try:
                opened = tree.open_beneath(here)  # `here` is canonical: no symlink in it
            except ConfinedPathError:
                return ContextLookup(None)  # changed under us (a directory now a link)
            if opened is None:
                return ContextLookup(None)
            fd, st = opened
            try:
                target = os.readlink("", dir_fd=fd) if stat.S_ISLNK(st.st_mode) else None
            finally:
                os.close(fd)
            if not self._present(tree, here, st):
                return ContextLookup(None, excluded=here)
            if target is not None and (todo or follow):
                hops += 1
                if hops > _MAX_LINKS:
                    return ContextLookup(None)
                if target.startswith("/"):
                    done = []
                todo[:0] = [p for p in target.split("/") if p and p != "."]
                continue
            if todo and not stat.S_ISDIR(st.st_mode):
                return ContextLookup(None)
            done.append(name)
        return ContextLookup("/".join(done))

    def _present(self, tree: ConfinedTree, rel: str, st: os.stat_result) -> bool:
        """Whether the entry at canonical `rel` (lstat `st`) is in the context as sent."""
        if not self.ignore.excluded(rel):
            return True
        return stat.S_ISDIR(st.st_mode) and self._has_included_below(tree, rel)

    def _has_included_below(self, tree: ConfinedTree, rel: str) -> bool:
        # an excluded directory is sent when a `!` pattern brings back something in it
        if not self.ignore.has_exceptions():
            return False
        try:
            return any(not self.ignore.excluded(path) for path, _ in tree.walk(rel))
        except ConfinedPathError:
            return False

    def locate(self, path: str) -> Path | None:
        """Host path of `path` in the context (last component not followed), None when absent
        or excluded (a directory that is excluded yet holds included files is present)."""
        found = self.lookup(path).path
        if found is None:
            return None
        return self.root / found if found else self.root

    def listdir(self, path: str) -> list[str]:
        """Names in the context directory `path` (a symlink to one followed inside the context)
        that the context as sent holds."""
        found = self.lookup(path, follow=True).path
        if found is None:
            return []
        keep = []
        with ConfinedTree(self.root) as tree:
            for name in tree.listdir(found):
                child = f"{found}/{name}" if found else name
                if not self.ignore.excluded(child):
                    keep.append(name)
                    continue
                st = tree.stat(child, follow=False)
                if st is not None and self._present(tree, child, st):
                    keep.append(name)
        return keep


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
