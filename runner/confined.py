"""Confined file access: the one place where kapal touches trees that others control.

The rule. kapal runs as root on the host, while a job's workspace, a repository, a build context,
an image layer or a tar archive is written by whoever wrote the pipeline, the repository or the
image. Host-side code never follows such a tree's symlinks out of it: every path into the tree is
resolved by the kernel relative to a directory fd of the tree's root, with `openat2(2)`, as if the
tree were `/` (as `docker build` and `docker cp` resolve paths in scope):

- reading (`open`, `stat`, `resolve`) uses `RESOLVE_IN_ROOT`: a link `d -> /etc` in the tree
  means the tree's own `etc`, and `..` stops at the root;
- writing (`make_dirs`, `create_file`, `symlink`) walks the parent directories one component at
  a time from directory fds (`RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS` for each step), resolving
  symlinks it meets in the same in-root way and creating the directories that are missing; the
  last component is replaced itself (a symlink there is removed, never written through);
- walking (`walk`) never follows a symlink, and copying (`copy_into`) keeps symlinks as symlinks;
- magic links (`/proc/self/fd/N` in the tree) are never followed (`RESOLVE_NO_MAGICLINKS`).

`RESOLVE_NO_XDEV` is not used: a tree kapal made holds no mounts, and a working tree may
legitimately have one; a mount point inside the tree still resolves inside it.

Tar archives (`ADD x.tar`) are extracted member by member through the same resolver
(`extract_tar`), never with `tarfile`'s own path checks: on Python 3.11.7 its `data` filter is
defeated by long nested symlinks (CVE-2025-4517), since it compares `os.path.realpath` strings.

A path that cannot be used safely raises `ConfinedPathError` (a `RunnerError`) saying which path
and why; no `OSError` escapes from this module's public functions.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import posixpath
import shutil
import stat
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from runner.errors import ConfinedPathError

__all__ = [
    "ConfinedTree",
    "CopyReport",
    "extract_tar",
    "openat2",
]

RESOLVE_NO_XDEV = 0x01
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
RESOLVE_IN_ROOT = 0x10

_SYS_OPENAT2 = 437  # x86_64 and aarch64 share the number (asm-generic)
_IN_ROOT = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS
_ONE_STEP = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS
_MAX_LINKS = 40  # as the kernel's MAXSYMLINKS
_MAX_HOST_PATH = 4000  # below PATH_MAX (4096): what path-based tools can still reach
_CHUNK = 1 << 20

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


class _OpenHow(ctypes.Structure):
    _fields_ = [
        ("flags", ctypes.c_uint64),
        ("mode", ctypes.c_uint64),
        ("resolve", ctypes.c_uint64),
    ]


def openat2(dirfd: int, path: str, flags: int, resolve: int, mode: int = 0) -> int:
    """`openat2(2)`: open `path` relative to `dirfd` under `RESOLVE_*` flags (or OSError)."""
    how = _OpenHow(flags | os.O_CLOEXEC, mode, resolve)
    encoded = os.fsencode(path)
    while True:
        fd = _libc.syscall(
            ctypes.c_long(_SYS_OPENAT2),
            ctypes.c_int(dirfd),
            ctypes.c_char_p(encoded),
            ctypes.byref(how),
            ctypes.c_size_t(ctypes.sizeof(how)),
        )
        if fd >= 0:
            return int(fd)
        err = ctypes.get_errno()
        if err not in (errno.EINTR, errno.EAGAIN):  # EAGAIN: a rename raced the lookup; retry
            raise OSError(err, os.strerror(err), path)


def _parts(path: str) -> list[str]:
    return [p for p in path.split("/") if p and p != "."]


def _fail(root: Path, path: str, what: str) -> ConfinedPathError:
    shown = path.lstrip("/") or "."
    return ConfinedPathError(f"{root}: {shown}: {what}")


def _why(exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return "goes through a symlink that cannot be followed safely (or too many symlinks)"
    if exc.errno == errno.EXDEV:
        return "leads outside the tree"
    return exc.strerror or str(exc)


@dataclass
class CopyReport:
    """What `copy_into` did: files copied, their bytes, and entries left out with the reason."""

    copied: list[str] = field(default_factory=list)
    size: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)


class ConfinedTree:
    """A directory tree an untrusted party controls, reached only through its root's fd.

    Lifecycle: `ConfinedTree(path)` opens the root (the root itself is a path kapal chose and is
    trusted; everything below it is not); use it in a `with` block, or call `close()`. Every
    method takes `/`-separated paths relative to the root (a leading `/` means the root too).
    Methods may be called from several threads; each call opens and closes its own fds.
    """

    def __init__(self, root: Path, *, create: bool = False, mode: int = 0o755) -> None:
        self.root = root
        try:
            if create:
                root.mkdir(mode=mode, parents=True, exist_ok=True)
            self.fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            raise ConfinedPathError(f"{root}: cannot open the directory: {_why(exc)}") from None

    def close(self) -> None:
        """Close the root's fd (idempotent)."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> ConfinedTree:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- reading -------------------------------------------------------------------------------

    def _open(self, path: str, flags: int) -> int:
        return openat2(self.fd, path.lstrip("/") or ".", flags, _IN_ROOT)

    def open_file(self, path: str) -> BinaryIO:
        """The regular file at `path` opened for reading (symlinks resolved inside the tree).

        Anything else is refused before it is opened: a job can `mknod` in its workspace, and
        opening a device node on the host runs its driver.
        """
        try:
            held = self._open(path, os.O_PATH)
        except OSError as exc:
            raise _fail(self.root, path, _why(exc)) from None
        try:
            if not stat.S_ISREG(os.fstat(held).st_mode):
                raise _fail(self.root, path, "is not a regular file")
            fd = os.open(f"/proc/self/fd/{held}", os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            raise _fail(self.root, path, _why(exc)) from None
        finally:
            os.close(held)
        return os.fdopen(fd, "rb")

    def read_bytes(self, path: str, limit: int | None = None) -> bytes:
        """Content of the regular file at `path` (at most `limit` bytes when given)."""
        with self.open_file(path) as handle:
            try:
                return handle.read() if limit is None else handle.read(limit)
            except OSError as exc:
                raise _fail(self.root, path, _why(exc)) from None

    @contextlib.contextmanager
    def _opened(self, path: str, flags: int) -> Iterator[int | None]:
        """An fd of `path` resolved in the tree, or None when it is absent; closed on exit."""
        try:
            fd = self._open(path, flags)
        except OSError as exc:
            if exc.errno not in (errno.ENOENT, errno.ENOTDIR):
                raise _fail(self.root, path, _why(exc)) from None
            yield None
            return
        try:
            yield fd
        finally:
            os.close(fd)

    @staticmethod
    def _lookup(path: str, follow: bool) -> int:
        base = posixpath.basename(path.rstrip("/"))
        return os.O_PATH if follow or base in ("", ".", "..") else os.O_PATH | os.O_NOFOLLOW

    def stat(self, path: str, *, follow: bool = True) -> os.stat_result | None:
        """`stat` of `path` resolved in the tree (last link followed if `follow`), or None."""
        with self._opened(path, self._lookup(path, follow)) as fd:
            return None if fd is None else os.fstat(fd)

    def resolve(self, path: str, *, follow: bool = True) -> str | None:
        """The canonical path (relative to the root) that `path` names; None when absent.

        Symlinks are resolved inside the tree; the last one only when `follow` is set.
        """
        with self._opened(path, self._lookup(path, follow)) as fd:
            return None if fd is None else self._relative(fd)

    def _relative(self, fd: int) -> str:
        where = os.readlink(f"/proc/self/fd/{fd}")
        top = os.readlink(f"/proc/self/fd/{self.fd}")
        if where == top:
            return ""
        if not where.startswith(top.rstrip("/") + "/"):
            raise ConfinedPathError(f"{self.root}: a path resolved outside the tree ({where})")
        return where[len(top.rstrip("/")) + 1 :]

    def readlink(self, path: str) -> str | None:
        """Target of the symlink at `path` (parents resolved in the tree); None if not a link."""
        with self._opened(path, os.O_PATH | os.O_NOFOLLOW) as fd:
            if fd is None or not stat.S_ISLNK(os.fstat(fd).st_mode):
                return None
            return os.readlink("", dir_fd=fd)

    def listdir(self, path: str = "") -> list[str]:
        """Sorted names in the directory at `path` (resolved in the tree); empty if none."""
        with self._opened(path, os.O_RDONLY | os.O_DIRECTORY) as fd:
            return [] if fd is None else sorted(os.listdir(fd))

    def walk(self, path: str = "") -> Iterator[tuple[str, os.stat_result]]:
        """Every entry below the directory at `path`, as (path from the root, lstat), sorted.

        Symlinks are reported, never followed; a directory comes before its contents. The
        directory at `path` itself is resolved in the tree.
        """
        with self._opened(path, os.O_RDONLY | os.O_DIRECTORY) as fd:
            if fd is not None:
                yield from _walk_fd(fd, self._relative(fd))

    def open_beneath(self, path: str) -> tuple[int, os.stat_result] | None:
        """An O_PATH fd of `path` and its lstat, refusing any symlink on the way (not the last).

        For collecting what a job left: a path that only exists through a symlink is refused
        (`ConfinedPathError`), one that does not exist gives None. The caller closes the fd.
        """
        try:
            fd = openat2(self.fd, path.lstrip("/") or ".", os.O_PATH | os.O_NOFOLLOW, _ONE_STEP)
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.ENOTDIR):
                return None
            raise _fail(self.root, path, _why(exc)) from None
        return fd, os.fstat(fd)

    # -- writing -------------------------------------------------------------------------------

    def subtree(self, path: str, *, create: bool = True) -> ConfinedTree:
        """A tree rooted at the directory `path` of this one (made when missing and `create`)."""
        fd = self._dir_fd(path, create=create)
        sub = ConfinedTree.__new__(ConfinedTree)
        sub.root = self.root / path.lstrip("/")
        sub.fd = fd
        return sub

    def _dir_fd(
        self,
        path: str,
        *,
        create: bool,
        mode: int = 0o755,
        created: Callable[[str, int], None] | None = None,
    ) -> int:
        """A new O_RDONLY fd of the directory `path`, resolved in the tree one step at a time.

        Missing directories are made when `create` is set (`created(path, fd)` is called for
        each, so the caller can set its owner and mode). The caller closes the fd.
        """
        todo = _parts(path)
        stack: list[tuple[str, int]] = [("", os.dup(self.fd))]
        hops = 0
        try:
            while todo:
                name = todo.pop(0)
                if name == "..":
                    if len(stack) > 1:
                        os.close(stack.pop()[1])
                    continue
                parent_path, parent = stack[-1]
                here = f"{parent_path}/{name}" if parent_path else name
                try:
                    fd = openat2(
                        parent, name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, _ONE_STEP
                    )
                except OSError as exc:
                    if exc.errno == errno.ENOENT and create:
                        with contextlib.suppress(FileExistsError):
                            os.mkdir(name, mode, dir_fd=parent)
                            fd = openat2(parent, name, os.O_RDONLY | os.O_DIRECTORY, _ONE_STEP)
                            if created is not None:
                                try:
                                    created(here, fd)
                                except BaseException:
                                    os.close(fd)
                                    raise
                            stack.append((here, fd))
                            continue
                        todo.insert(0, name)  # made by someone else meanwhile: look again
                        continue
                    if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                        raise
                    target = _link_target(parent, name)
                    if target is None:
                        raise OSError(
                            errno.ENOTDIR, "a path component is not a directory"
                        ) from None
                    hops += 1
                    if hops > _MAX_LINKS:
                        raise OSError(errno.ELOOP, "too many symlinks") from None
                    if target.startswith("/"):
                        while len(stack) > 1:
                            os.close(stack.pop()[1])
                    todo[:0] = _parts(target)
                    continue
                stack.append((here, fd))
            return os.dup(stack[-1][1])
        except OSError as exc:
            raise _fail(self.root, path, _why(exc)) from None
        finally:
            for _, fd in stack:
                os.close(fd)

    def make_dirs(
        self, path: str, mode: int = 0o755, created: Callable[[str, int], None] | None = None
    ) -> str:
        """Make the directory `path` and its missing parents in the tree; return its canonical path.

        `created(path, fd)` is called for each directory made (owner and mode are the caller's).
        """
        fd = self._dir_fd(path, create=True, mode=mode, created=created)
        try:
            return self._relative(fd)
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def parent_of(
        self,
        path: str,
        *,
        create: bool = True,
        created: Callable[[str, int], None] | None = None,
    ) -> Iterator[tuple[int, str]]:
        """(directory fd, last name) for writing `path`; parents resolved (and made) in the tree."""
        parts = _parts(path)
        if not parts or parts[-1] == "..":
            raise _fail(self.root, path, "names no entry that can be written")
        fd = self._dir_fd("/".join(parts[:-1]), create=create, created=created)
        try:
            yield fd, parts[-1]
        finally:
            os.close(fd)

    def create_file(self, path: str, mode: int = 0o644) -> BinaryIO:
        """A new regular file at `path` opened for writing, replacing a file or link already there.

        A directory in the way is an error (`remove` it first when that is meant).
        """
        with self.parent_of(path) as (parent, name):
            try:
                _unlink_leaf(parent, name, directories=False)
                fd = os.open(
                    name,
                    os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                    mode & 0o777,
                    dir_fd=parent,
                )
            except OSError as exc:
                raise _fail(self.root, path, _why(exc)) from None
        try:
            os.fchmod(fd, mode)
        except BaseException:
            os.close(fd)
            raise
        return os.fdopen(fd, "wb")

    def symlink(self, path: str, target: str) -> None:
        """Make `path` a symlink to `target` (never followed here), replacing a file or link."""
        with self.parent_of(path) as (parent, name):
            try:
                _unlink_leaf(parent, name, directories=False)
                os.symlink(target, name, dir_fd=parent)
            except OSError as exc:
                raise _fail(self.root, path, _why(exc)) from None

    def set_attributes(self, path: str, uid: int, gid: int, mode: int | None) -> None:
        """Set owner (and mode, unless None) of the entry at `path` itself, not of a link target."""
        if not _parts(path):
            os.fchown(self.fd, uid, gid)
            if mode is not None:
                os.fchmod(self.fd, mode)
            return
        with self.parent_of(path, create=False) as (parent, name):
            try:
                os.chown(name, uid, gid, dir_fd=parent, follow_symlinks=False)
                if mode is None:
                    return
                fd = openat2(parent, name, os.O_PATH | os.O_NOFOLLOW, _ONE_STEP)
                try:
                    if stat.S_ISLNK(os.fstat(fd).st_mode):
                        return  # a link has no mode of its own
                    os.chmod(f"/proc/self/fd/{fd}", mode)  # the inode held, not a path again
                finally:
                    os.close(fd)
            except OSError as exc:
                raise _fail(self.root, path, _why(exc)) from None

    def remove(self, path: str) -> None:
        """Remove the entry at `path` itself (a link, not its target; a directory and contents)."""
        with self.parent_of(path, create=False) as (parent, name):
            try:
                _unlink_leaf(parent, name, directories=True)
            except OSError as exc:
                raise _fail(self.root, path, _why(exc)) from None

    def copy_into(
        self,
        target: ConfinedTree,
        files: list[str],
        *,
        strip_setid: bool = True,
    ) -> CopyReport:
        """Copy `files` (paths in this tree) to the same paths in `target`; symlinks stay symlinks.

        A source is taken only where it is reached without any symlink on the way (a file named
        `hostroot/etc/shadow` with `hostroot -> /` is skipped, with the reason). Only regular
        files and symlinks are copied: device nodes, fifos and sockets are skipped; setuid and
        setgid bits are dropped when `strip_setid` is set. The target's parents are resolved in
        the target tree (`create_file`).
        """
        report = CopyReport()
        for rel in files:
            try:
                opened = self.open_beneath(rel)
            except ConfinedPathError:
                report.skipped.append((rel, "it is reached through a symlink"))
                continue
            if opened is None:
                report.skipped.append((rel, "it is gone"))
                continue
            fd, st = opened
            try:
                if stat.S_ISLNK(st.st_mode):
                    target.symlink(rel, os.readlink("", dir_fd=fd))
                    report.copied.append(rel)
                elif stat.S_ISREG(st.st_mode):
                    mode = stat.S_IMODE(st.st_mode)
                    if strip_setid:
                        mode &= ~(stat.S_ISUID | stat.S_ISGID)
                    report.size += _copy_regular(fd, target, rel, mode, st)
                    report.copied.append(rel)
                elif stat.S_ISDIR(st.st_mode):
                    target.make_dirs(rel)
                else:
                    report.skipped.append((rel, "not a regular file or a symlink"))
            except ConfinedPathError as exc:
                report.skipped.append((rel, str(exc)))
            finally:
                os.close(fd)
        return report


def _copy_regular(fd: int, target: ConfinedTree, rel: str, mode: int, st: os.stat_result) -> int:
    # reopening an O_PATH fd through /proc is the kernel's own handle: nothing is re-resolved
    source = os.open(f"/proc/self/fd/{fd}", os.O_RDONLY | os.O_CLOEXEC)
    size = 0
    try:
        with target.create_file(rel, mode) as out:
            try:
                while chunk := os.read(source, _CHUNK):
                    out.write(chunk)
                    size += len(chunk)
                out.flush()
                os.utime(out.fileno(), ns=(st.st_atime_ns, st.st_mtime_ns))
            except OSError as exc:
                raise _fail(target.root, rel, _why(exc)) from None
    finally:
        os.close(source)
    return size


def _link_target(parent: int, name: str) -> str | None:
    try:
        fd = openat2(parent, name, os.O_PATH | os.O_NOFOLLOW, _ONE_STEP)
    except OSError:
        return None
    try:
        if not stat.S_ISLNK(os.fstat(fd).st_mode):
            return None
        return os.readlink("", dir_fd=fd)
    finally:
        os.close(fd)


def _unlink_leaf(parent: int, name: str, *, directories: bool) -> None:
    try:
        st = os.stat(name, dir_fd=parent, follow_symlinks=False)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        if not directories:
            raise OSError(errno.EISDIR, "a directory is in the way")
        shutil.rmtree(name, dir_fd=parent)
    else:
        os.unlink(name, dir_fd=parent)


def _walk_fd(fd: int, base: str) -> Iterator[tuple[str, os.stat_result]]:
    for name in sorted(os.listdir(fd)):
        rel = f"{base}/{name}" if base else name
        try:
            st = os.stat(name, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            continue
        yield rel, st
        if stat.S_ISDIR(st.st_mode):
            try:
                child = openat2(fd, name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, _ONE_STEP)
            except OSError:
                continue  # replaced by a link or removed meanwhile: not followed
            try:
                yield from _walk_fd(child, rel)
            finally:
                os.close(child)


# -- tar extraction ------------------------------------------------------------------------------


def _member_path(name: str, where: str) -> str:
    stripped = name.lstrip("/")
    clean = posixpath.normpath(stripped) if stripped else "."
    if clean == ".." or clean.startswith("../"):
        raise ConfinedPathError(f"{where}: member {name!r} points outside the destination")
    return "" if clean == "." else clean


def _link_source(member: tarfile.TarInfo, where: str) -> str:
    stripped = member.linkname.lstrip("/")
    clean = posixpath.normpath(stripped) if stripped else "."
    if clean == ".." or clean.startswith("../"):
        shown = posixpath.normpath("/" + member.linkname)
        raise ConfinedPathError(
            f"{where}: member {member.name!r} would link to {shown!r}, which is outside the "
            "destination"
        )
    return "" if clean == "." else clean


def extract_tar(archive: Path | BinaryIO, tree: ConfinedTree, *, where: str = "") -> None:
    """Unpack `archive` (plain, gzip, bzip2 or xz) into `tree`, each member resolved in the tree.

    Member names are relative to the tree (a leading `/` is dropped, names climbing out with `..`
    are refused); parent directories, symlinks the archive made included, are resolved inside
    the tree, so nothing is written or linked outside it. Owners (numeric), modes (setuid bits
    included: this is image content), device nodes, fifos and mtimes are kept, as `docker build`
    keeps them for `ADD`.
    """
    where = where or str(getattr(archive, "name", "archive"))
    try:
        source = {"name": archive} if isinstance(archive, Path) else {"fileobj": archive}
        with tarfile.open(**source) as tar:
            for member in tar:
                _extract_member(tar, member, tree, where)
    except (tarfile.TarError, EOFError) as exc:
        raise ConfinedPathError(f"{where}: not a readable archive ({exc})") from None
    except OSError as exc:
        raise ConfinedPathError(f"{where}: cannot read the archive: {_why(exc)}") from None


def _extract_member(
    tar: tarfile.TarFile, member: tarfile.TarInfo, tree: ConfinedTree, where: str
) -> None:
    rel = _member_path(member.name, where)
    if not rel:
        return  # "./" itself: the destination exists already
    with tree.parent_of(rel) as (parent, name):
        try:
            deep = len(os.readlink(f"/proc/self/fd/{parent}")) + len(name) + 1 > _MAX_HOST_PATH
        except OSError:  # ENAMETOOLONG: the kernel cannot even name it
            deep = True
        if deep:
            # host-side tools (the layer writer, overlayfs) address files by path
            raise ConfinedPathError(
                f"{where}: member {member.name!r} would lie deeper than {_MAX_HOST_PATH} bytes "
                "of path on the host; refusing it"
            )
        try:
            _write_member(tar, member, tree, parent, name, where)
        except OSError as exc:
            raise ConfinedPathError(f"{where}: member {member.name!r}: {_why(exc)}") from None


def _write_member(
    tar: tarfile.TarFile,
    member: tarfile.TarInfo,
    tree: ConfinedTree,
    parent: int,
    name: str,
    where: str,
) -> None:
    mode = member.mode & 0o7777
    if member.isdir():
        try:
            st = os.stat(name, dir_fd=parent, follow_symlinks=False)
            if not stat.S_ISDIR(st.st_mode):
                _unlink_leaf(parent, name, directories=False)
                os.mkdir(name, 0o700, dir_fd=parent)
        except FileNotFoundError:
            os.mkdir(name, 0o700, dir_fd=parent)
        fd = openat2(parent, name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, _ONE_STEP)
        try:
            os.fchown(fd, member.uid, member.gid)
            os.fchmod(fd, mode)
            os.utime(fd, (member.mtime, member.mtime))
        finally:
            os.close(fd)
        return
    _unlink_leaf(parent, name, directories=True)
    if member.issym():
        os.symlink(member.linkname, name, dir_fd=parent)
        os.chown(name, member.uid, member.gid, dir_fd=parent, follow_symlinks=False)
        os.utime(name, (member.mtime, member.mtime), dir_fd=parent, follow_symlinks=False)
        return
    if member.islnk():
        source = _link_source(member, where)
        if not source:
            raise ConfinedPathError(f"{where}: member {member.name!r} links to the destination")
        with tree.parent_of(source, create=False) as (src_parent, src_name):
            try:
                os.link(
                    src_name, name, src_dir_fd=src_parent, dst_dir_fd=parent, follow_symlinks=False
                )
            except FileNotFoundError:
                raise ConfinedPathError(
                    f"{where}: member {member.name!r}: a hard link points at a file the archive "
                    f"does not hold ({member.linkname!r})"
                ) from None
        return
    if member.ischr() or member.isblk() or member.isfifo():
        kind = stat.S_IFCHR if member.ischr() else stat.S_IFBLK if member.isblk() else stat.S_IFIFO
        os.mknod(name, kind | 0o600, os.makedev(member.devmajor, member.devminor), dir_fd=parent)
        os.chown(name, member.uid, member.gid, dir_fd=parent, follow_symlinks=False)
        os.chmod(name, mode, dir_fd=parent)  # not a symlink: made just now from this fd
        os.utime(name, (member.mtime, member.mtime), dir_fd=parent, follow_symlinks=False)
        return
    if not member.isreg():
        return  # sparse, contiguous and other kinds tarfile reads as files are handled above
    fd = os.open(
        name,
        os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
        0o600,
        dir_fd=parent,
    )
    try:
        content = tar.extractfile(member)
        if content is not None:
            while chunk := content.read(_CHUNK):
                _write_all(fd, chunk)
        os.fchown(fd, member.uid, member.gid)
        os.fchmod(fd, mode)
        os.utime(fd, (member.mtime, member.mtime))
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]
