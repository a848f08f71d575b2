"""Files a pipeline names inside its repository, opened without following symlinks out of it.

A repository is written by whoever opens a pull request, and kapal reads its files as root on the
host. `open_in_repository` resolves a path as if the repository were `/`: each component is
opened from its parent's directory fd with `O_NOFOLLOW`; a symlink met on the way is read and its
target resolved inside the repository (an absolute target from the repository root, `..` stopping
there), so `ci.yml -> /etc/passwd` names the repository's own `etc/passwd`, never the host's.
(`runner.confined` holds the same rule for the runner; `pipeline` imports nothing of `runner`.)
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

__all__ = ["files_in_repository", "open_in_repository", "regular_file_in_repository"]

_MAX_LINKS = 40


def _parts(path: str) -> list[str]:
    return [p for p in path.split("/") if p and p != "."]


def open_in_repository(root: Path, rel: str) -> int:
    """An O_PATH fd of `rel` resolved inside `root`; OSError (ENOENT...) when it is absent."""
    todo = _parts(rel)
    stack = [os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)]
    hops = 0
    try:
        while todo:
            name = todo.pop(0)
            if name == "..":
                if len(stack) > 1:
                    os.close(stack.pop())
                continue
            # the last name is held without opening it (O_PATH): a device node is never opened
            flags = (
                os.O_NOFOLLOW | os.O_CLOEXEC | (os.O_RDONLY | os.O_DIRECTORY if todo else os.O_PATH)
            )
            try:
                fd = os.open(name, flags, dir_fd=stack[-1])
            except OSError as exc:
                if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                    raise
                fd = -1
            if fd >= 0 and not todo and stat.S_ISLNK(os.fstat(fd).st_mode):
                os.close(fd)  # the last name is a link: follow it inside the repository
                fd = -1
            if fd < 0:
                st = os.stat(name, dir_fd=stack[-1], follow_symlinks=False)
                if not stat.S_ISLNK(st.st_mode):
                    raise OSError(errno.ENOTDIR, "not a directory", rel)
                hops += 1
                if hops > _MAX_LINKS:
                    raise OSError(errno.ELOOP, "too many symlinks", rel) from None
                target = os.readlink(name, dir_fd=stack[-1])
                if target.startswith("/"):
                    while len(stack) > 1:
                        os.close(stack.pop())
                todo[:0] = _parts(target)
                continue
            stack.append(fd)
        result = stack.pop() if len(stack) > 1 else os.dup(stack[0])
        return result
    finally:
        for fd in stack:
            os.close(fd)


def files_in_repository(root: Path, limit: int) -> list[str]:
    """Relative paths of the files under `root` (links too, never followed), `.git` left out.

    Walked through directory fds (`os.fwalk`), so a directory swapped for a link while it is
    listed is not entered; at most `limit` paths, sorted within each directory.
    """
    found: list[str] = []
    for current, dirs, files, _fd in os.fwalk(root, follow_symlinks=False):
        dirs[:] = sorted(d for d in dirs if d != ".git")
        rel = os.path.relpath(current, root)
        for name in sorted(files):
            found.append(name if rel == "." else f"{rel}/{name}")
            if len(found) >= limit:
                return found
    return found


def regular_file_in_repository(root: Path, rel: str) -> bool:
    """Whether `rel`, resolved inside `root`, is a regular file."""
    try:
        fd = open_in_repository(root, rel)
    except (OSError, ValueError):
        return False
    try:
        return stat.S_ISREG(os.fstat(fd).st_mode)
    finally:
        os.close(fd)
