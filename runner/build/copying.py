"""COPY and ADD: plan what to write, fingerprint it for the cache, write it into a layer tree.

Docker's rules followed here: sources are relative to the context (or to the `--from` stage or
image root), may hold wildcards (Go `filepath.Match`, per path component), and a directory source
copies its *contents*; with several sources or a wildcard the destination must end with `/`; a
destination ending in `/` or naming an existing directory receives files under their base names;
a relative destination is under WORKDIR; missing parent directories are created 0755, owned by
the `--chown` user and group when one is given (as `docker build` does), else root:root;
files keep their permission bits (`--chmod` replaces them) and get owner 0:0 (`--chown` sets
it). ADD also extracts local tar archives (gzip, bzip2, xz or plain) into the destination directory
and downloads http(s) URLs (mode 0600).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import hashlib
import os
import posixpath
import shutil
import stat
import tarfile
from pathlib import Path
from typing import BinaryIO

from pipeline.records import record
from runner.build.dockerignore import DockerIgnore
from runner.build.trees import ContextTree, LayeredTree, SourceTree
from runner.confined import ConfinedTree, extract_tar
from runner.errors import ConfinedPathError

__all__ = ["CopyItem", "CopyPlanError", "fingerprint", "materialize", "plan_copy"]

_MAGIC = set("*?[")


class CopyPlanError(ValueError):
    """A COPY/ADD cannot be planned (the caller adds file:line and the instruction)."""


class ArchiveExtractError(ValueError):
    """ADD could not extract a local archive safely (the caller adds file:line)."""


@record
class CopyItem:
    """One entry to create in the layer: `dest` is an absolute image path."""

    kind: str  # "dir", "file", "link", "data", "extract"
    dest: str
    mode: int
    uid: int
    gid: int
    host: Path | None = None
    data: bytes | None = None
    target: str = ""
    # owner of the parent directories this entry needs that the image does not have (--chown)
    parents: tuple[int, int] = (0, 0)


@record
class Ownership:
    """Owner and mode overrides from `--chown` / `--chmod` (None: keep the default)."""

    uid: int | None = None
    gid: int | None = None
    chmod: int | None = None


def _has_magic(text: str) -> bool:
    return any(ch in _MAGIC for ch in text)


def _glob(tree: SourceTree, pattern: str, *, globstar: bool = False) -> list[str]:
    parts = [p for p in posixpath.normpath("/" + pattern).split("/") if p]
    found = [""]
    for part in parts:
        nxt: list[str] = []
        for base in found:
            if globstar and part == "**":  # zero or more directories (COPY --parents)
                nxt += [base, *_subdirs(tree, base)]
            elif _has_magic(part):
                go = part.replace("[^", "[!")
                for name in tree.listdir(base):
                    if fnmatch.fnmatchcase(name, go):
                        nxt.append(f"{base}/{name}" if base else name)
            else:
                nxt.append(f"{base}/{part}" if base else part)
        found = nxt
    return [p for p in dict.fromkeys(found) if _locate(tree, p) is not None]


def _subdirs(tree: SourceTree, base: str) -> list[str]:
    """Every directory below `base` (symlinks not entered)."""
    out: list[str] = []
    for name in tree.listdir(base):
        child = f"{base}/{name}" if base else name
        host = _locate(tree, child)
        if host is not None and host.is_dir() and not host.is_symlink():
            out += [child, *_subdirs(tree, child)]
    return out


def _locate(tree: SourceTree, path: str) -> Path | None:
    if isinstance(tree, LayeredTree):
        return tree.locate(tree.resolve(path))  # /bin/sh in a merged-/usr image is /usr/bin/sh
    return tree.locate(path)


def plan_copy(
    *,
    tree: SourceTree,
    sources: list[str],
    dest: str,
    image: LayeredTree,
    owner: Ownership,
    extract_archives: bool = False,
    heredocs: dict[str, bytes] | None = None,
    downloads: dict[str, Path] | None = None,
    parents: bool = False,
    exclude: DockerIgnore | None = None,
) -> list[CopyItem]:
    """Flatten a COPY/ADD into the entries it creates (absolute image paths, sorted).

    `parents` (COPY --parents) keeps each source's path below the destination (from a `/./` in
    the source on, when it has one); `exclude` (--exclude) leaves out what its patterns match,
    relative to a directory source, or a file source's name.
    """
    heredocs = heredocs or {}
    downloads = downloads or {}
    many = len(sources) > 1 or any(_has_magic(s) for s in sources) or parents
    dest_is_dir = dest.endswith("/") or many
    if many and not dest.endswith("/") and not parents:
        raise CopyPlanError(
            f"with several sources or a wildcard the destination must be a directory ending "
            f"in '/': write '{dest}/'"
        )
    dest_path = "/" + image.resolve(dest)
    existing = image.locate(dest_path)
    if existing is not None and existing.is_dir():
        dest_is_dir = True
    uid = owner.uid if owner.uid is not None else 0
    gid = owner.gid if owner.gid is not None else 0
    items: list[CopyItem] = []

    def add_dir(path: str, mode: int) -> None:
        items.append(CopyItem("dir", path, mode if owner.chmod is None else owner.chmod, uid, gid))

    def target_for(name: str) -> str:
        return posixpath.join(dest_path, name) if dest_is_dir else dest_path

    for source in sources:
        if source in heredocs:
            mode = owner.chmod if owner.chmod is not None else 0o644
            items.append(
                CopyItem("data", target_for(source), mode, uid, gid, data=heredocs[source])
            )
            continue
        if source in downloads:
            mode = owner.chmod if owner.chmod is not None else 0o600
            host = downloads[source]
            items.append(CopyItem("file", target_for(host.name), mode, uid, gid, host=host))
            continue
        pivot = ""
        trimmed = source
        while trimmed.startswith("./"):
            trimmed = trimmed[2:]
        if parents and "/./" in "/" + trimmed:
            head, _, _tail = ("/" + trimmed).partition("/./")
            pivot = posixpath.normpath(head.lstrip("/") or ".").lstrip(".").strip("/")
        matches = _glob(tree, source, globstar=parents)
        if not matches:
            if isinstance(tree, ContextTree):
                raise CopyPlanError(_missing_from_context(tree, source, globstar=parents))
            raise CopyPlanError(f"'{source}' was not found in the source image")
        for match in matches:
            found = _locate(tree, match)
            assert found is not None
            host = _follow_top(tree, match, found)
            st = os.lstat(host)
            base_dest = dest_path
            if parents:
                kept = match[len(pivot) :].lstrip("/") if pivot else match
                base_dest = posixpath.join(dest_path, kept) if kept else dest_path
            if not (
                stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode)
            ):
                raise CopyPlanError(f"'{match}' is not a file or a directory; it cannot be copied")
            if stat.S_ISDIR(st.st_mode):
                if base_dest != dest_path or existing is None or not existing.is_dir():
                    add_dir(base_dest, 0o755)
                _walk(tree, match, base_dest, items, owner, uid, gid, exclude, "")
                continue
            name = posixpath.basename(match)
            if exclude is not None and exclude.excluded(name):
                continue
            if (
                extract_archives
                and isinstance(tree, ContextTree)
                and stat.S_ISREG(st.st_mode)
                and _is_archive(host)
            ):
                items.append(CopyItem("extract", dest_path, 0, uid, gid, host=host))
                continue
            keep = not isinstance(tree, ContextTree)
            target = base_dest if parents else target_for(name)
            items.append(_entry(host, st, target, owner, uid, gid, keep))
    if owner.uid is not None:
        items = [dataclasses.replace(item, parents=(uid, gid)) for item in items]
    items.sort(key=lambda item: item.dest)
    return items


def _missing_from_context(tree: ContextTree, source: str, *, globstar: bool) -> str:
    """Why `source` matched nothing in the context: absent, or what .dockerignore excludes."""
    if _has_magic(source):
        everything = ContextTree(tree.root, DockerIgnore())
        hidden = _glob(everything, source, globstar=globstar)
        if hidden:
            return (
                f"'{source}' matches only paths .dockerignore excludes (such as '{hidden[0]}'), "
                f"which are not in the build context docker build sends; change .dockerignore "
                f"or the {source!r} pattern"
            )
        fixed = []
        for part in _clean(source).split("/"):
            if _has_magic(part):
                break
            fixed.append(part)
        excluded = tree.lookup("/".join(fixed), follow=True).excluded if fixed else ""
        if excluded:
            return _excluded_message(source, excluded)
        return f"'{source}' was not found in the build context (nothing matches it)"
    excluded = tree.lookup(source, follow=True).excluded
    if not excluded:
        return f"'{source}' was not found in the build context"
    return _excluded_message(source, excluded)


def _excluded_message(source: str, excluded: str) -> str:
    cleaned = _clean(source)
    if excluded == cleaned:
        what = f"'{source}' is excluded by .dockerignore"
    elif cleaned.startswith(excluded + "/"):
        what = f"'{source}' is inside '{excluded}', which .dockerignore excludes"
    else:
        what = f"'{source}' resolves through symlinks to '{excluded}', which .dockerignore excludes"
    return (
        f"{what}, so it is not in the build context docker build sends; remove the pattern "
        "from .dockerignore (or add a '!' exception for the path), or copy another path"
    )


def _clean(path: str) -> str:
    return posixpath.normpath("/" + path).lstrip("/")


def _follow_top(tree: SourceTree, logical: str, host: Path) -> Path:
    """A source named explicitly that is a symlink is followed (inside the tree).

    In the context every hop must stay in what .dockerignore keeps (`ContextTree.lookup`);
    one that reaches an excluded entry is a CopyPlanError, as docker build, which never sent
    that entry, fails there. A link leading nowhere is copied as the link.
    """
    if isinstance(tree, ContextTree):
        if not host.is_symlink():
            return host
        found = tree.lookup(logical, follow=True)
        if found.excluded:
            raise CopyPlanError(_excluded_message(logical, found.excluded))
        return host if found.path is None else tree.root / found.path
    for _ in range(20):
        if not host.is_symlink():
            return host
        target = os.readlink(host)
        logical = posixpath.normpath(
            target if target.startswith("/") else posixpath.join(posixpath.dirname(logical), target)
        ).lstrip("/")
        nxt = _locate(tree, logical)
        if nxt is None:
            return host
        host = nxt
    return host


def _walk(
    tree: SourceTree,
    src: str,
    dest: str,
    items: list[CopyItem],
    owner: Ownership,
    uid: int,
    gid: int,
    exclude: DockerIgnore | None = None,
    below: str = "",
) -> None:
    for name in tree.listdir(src):
        child = f"{src}/{name}" if src else name
        rel = f"{below}/{name}" if below else name
        host = _locate(tree, child)
        if host is None:
            continue
        if exclude is not None and exclude.excluded(rel):
            if not (exclude.has_exceptions() and host.is_dir() and not host.is_symlink()):
                continue
            # a later `!pattern` may bring back something below: look inside, add only that
            _walk(tree, child, posixpath.join(dest, name), items, owner, uid, gid, exclude, rel)
            continue
        st = os.lstat(host)
        if not (stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode)):
            continue  # sockets, fifos and devices in a context are not copied
        target = posixpath.join(dest, name)
        keep = not isinstance(tree, ContextTree)
        items.append(_entry(host, st, target, owner, uid, gid, keep))
        if stat.S_ISDIR(st.st_mode):
            _walk(tree, child, target, items, owner, uid, gid, exclude, rel)


def _entry(
    host: Path,
    st: os.stat_result,
    dest: str,
    owner: Ownership,
    uid: int,
    gid: int,
    keep_owner: bool,
) -> CopyItem:
    mode = stat.S_IMODE(st.st_mode) if owner.chmod is None else owner.chmod
    # files from another stage or image keep their owner unless --chown is given
    if owner.uid is None and keep_owner:
        uid, gid = st.st_uid, st.st_gid
    if stat.S_ISDIR(st.st_mode):
        return CopyItem("dir", dest, mode, uid, gid, host=host)
    if stat.S_ISLNK(st.st_mode):
        return CopyItem("link", dest, 0o777, uid, gid, target=os.readlink(host))
    return CopyItem("file", dest, mode, uid, gid, host=host)


def _open_source(host: Path) -> BinaryIO:
    """A planned source file opened for reading; a symlink swapped in since is not followed."""
    return os.fdopen(os.open(host, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC), "rb")


def _is_archive(host: Path) -> bool:
    try:
        with _open_source(host) as f:
            head = f.read(512)
            if head.startswith((b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00")):
                f.seek(0)
                with tarfile.open(fileobj=f) as tar:
                    tar.next()
                return True
    except (tarfile.TarError, OSError, EOFError):
        return False
    return len(head) == 512 and head[257:262] == b"ustar"


def fingerprint(items: list[CopyItem]) -> str:
    """A digest of what the items would write: paths, kinds, modes, owners, contents (no mtimes)."""
    sha = hashlib.sha256()
    for item in items:
        sha.update(f"{item.kind}\0{item.dest}\0{item.mode:o}\0{item.uid}:{item.gid}\0".encode())
        sha.update(f"{item.target}\0".encode())
        if item.data is not None:
            sha.update(hashlib.sha256(item.data).digest())
        elif item.host is not None and item.kind in ("file", "extract"):
            sha.update(_file_digest(item.host))
    return sha.hexdigest()


def _file_digest(path: Path) -> bytes:
    sha = hashlib.sha256()
    with _open_source(path) as f:
        while chunk := f.read(1 << 20):
            sha.update(chunk)
    return sha.digest()


def materialize(
    items: list[CopyItem],
    root: Path,
    image: LayeredTree,
    epoch: int,
) -> None:
    """Write the items under `root` (a layer tree), parent directories as the image has them.

    Every path is resolved inside `root` (`runner.confined`): a symlink an earlier item or an
    extracted archive made (`sub -> /host/path`) leads to `root/host/path`, never to the host.
    """
    try:
        with ConfinedTree(root) as tree:
            for item in items:
                _write_item(tree, item, image)
    except ConfinedPathError as exc:
        raise ArchiveExtractError(str(exc)) from None
    _clamp_mtimes(root, epoch)


def _write_item(tree: ConfinedTree, item: CopyItem, image: LayeredTree) -> None:
    def created(rel: str, fd: int) -> None:
        # a directory made on the way gets the owner and mode the image has there; one the image
        # lacks is new: 0755, owned by --chown's user and group (root without --chown)
        existing = image.locate(rel)
        if existing is not None and existing.is_dir() and not existing.is_symlink():
            st = os.lstat(existing)
            os.fchown(fd, st.st_uid, st.st_gid)
            os.fchmod(fd, stat.S_IMODE(st.st_mode))
        else:
            os.fchown(fd, *item.parents)
            os.fchmod(fd, 0o755)

    dest = item.dest.lstrip("/")
    if not dest:
        if item.kind == "extract":
            assert item.host is not None
            _extract(item.host, tree)
            return
        tree.set_attributes("", item.uid, item.gid, item.mode)
        return
    with tree.parent_of(dest, created=created):
        pass  # parents first, with the image's owners
    if item.kind == "dir":
        present = tree.stat(dest, follow=False)
        if present is not None and not stat.S_ISDIR(present.st_mode):
            tree.remove(dest)
        tree.make_dirs(dest, created=created)
    elif item.kind == "extract":
        assert item.host is not None
        tree.make_dirs(dest, created=created)
        with tree.subtree(dest) as destination:
            _extract(item.host, destination)
        return
    else:
        present = tree.stat(dest, follow=False)
        if present is not None:
            tree.remove(dest)
        if item.kind == "link":
            tree.symlink(dest, item.target)
        else:
            with tree.create_file(dest, 0o600) as out:
                if item.kind == "data":
                    out.write(item.data or b"")
                else:
                    assert item.host is not None
                    with _open_source(item.host) as source:
                        shutil.copyfileobj(source, out, 1 << 20)
    tree.set_attributes(dest, item.uid, item.gid, None if item.kind == "link" else item.mode)


def _extract(archive: Path, dest: ConfinedTree) -> None:
    """Unpack `archive` into `dest` as Docker's ADD does, never writing or linking outside `dest`.

    The extraction runs as root on the host from a tar the repository supplies, so containment
    is what protects the host: every member is written through `runner.confined.extract_tar`,
    which resolves its path (symlinks the archive made included) inside `dest`, as Docker's
    chrooted unpack does. Modes, owners and device nodes are the image's content and are kept
    exactly as Docker keeps them: setuid/setgid/sticky and group/other write bits included
    (`FROM scratch` + `ADD rootfs.tar.gz /` must give a working `su`); stripping them would guard
    nothing, since a RUN step can set them anyway.
    """
    try:
        fd = os.open(archive, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise ArchiveExtractError(f"{archive.name}: cannot read it: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as handle:
        try:
            extract_tar(handle, dest, where=archive.name)
        except ConfinedPathError as exc:
            raise ArchiveExtractError(
                f"{exc} (an archive ADD unpacks must keep every path and hard link inside the "
                "destination)"
            ) from None


def _clamp_mtimes(root: Path, epoch: int) -> None:
    """Files in the layer tree get the mtime the tar will carry, so RUN steps see the same."""
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            mtime = min(int(st.st_mtime), epoch)
            os.utime(path, (mtime, mtime), follow_symlinks=False)
        st = os.lstat(dirpath)
        mtime = min(int(st.st_mtime), epoch)
        os.utime(dirpath, (mtime, mtime))
