"""Build memos: a `kapal build` with nothing changed answered without loading the builder.

A warm rebuild takes the builder a few milliseconds, but importing it (Dockerfile parser, layer
writer, image store, copying) takes far longer than that: most of what a person waits for
(issue 11). So after every build the command line records, per context and Dockerfile, what
went in and what came out, and the next build compares before importing anything heavy:

- inputs: the Dockerfile's and the .dockerignore's text, the build settings (build args,
  target, network, epoch, compression), and the metadata of every entry of the context the
  builder can see (path, type, mode, owner, size, mtime, ctime, inode, link target), read with
  lstat only (nothing is opened or followed). What .dockerignore excludes is left out, decided
  by the builder's own matcher (`runner.build.dockerignore`) as the builder's context view
  (`runner.build.trees.ContextTree`) decides it, so `git status`, a commit or an editor's swap
  file in an excluded path leaves the memo answering (see `_scan` for the symlink and `!` cases
  where everything is kept instead). A directory's size and times are not inputs: what changes
  them is its list of names, which its entries are, and no build copies them;
- what the build looked up: each base image name and the digest the tag index gave it, and the
  build-cache entries (key file, blob, tree) of its layer steps;
- the result: the image's manifest and config digests, and the steps as the build printed them.

A memo answers only when the inputs are equal, every base name still points where it did,
every cache entry and the image are still there, and every requested tag already points at the
image; anything else is a miss and the builder runs (and records a new memo). A change to a
file always changes its ctime, which no one can set back. What a memo cannot see it is never
written for: ADD of a URL or a git repository, builds whose context has more than `MAX_ENTRIES`
entries, and contexts with an entry changed less than `RACY_NS` before the snapshot (a change
within the same clock tick could leave the same ctime, as in git's "racy" index). Every build
the command runs records (or forgets) the memo, `--no-cache` ones too, so a memo always answers
what the builder's cache would: the image of the last build of the same inputs. `--secret`
values are not inputs, as they are not part of any step's cache key.

Layout: `<build cache>/memo/<crc32 of context and Dockerfile paths>.json`, written by rename.
Lifecycle: `snapshot()` before the build → `lookup()` (a hit ends the command) → on a miss, the
build → `record()` with the snapshot taken before it (or `forget()` when it cannot be memoized).
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import time
import zlib
from pathlib import Path
from typing import Any

from runner.build.dockerignore import DockerIgnore

__all__ = ["MAX_ENTRIES", "RACY_NS", "Snapshot", "forget", "lookup", "record", "snapshot"]

FORMAT = 2
MAX_ENTRIES = 100_000
RACY_NS = 100_000_000  # far more than a clock tick of the file timestamps (1-10 ms)
_MAX_DOCKERFILE = 4 * 1024 * 1024


class Snapshot:
    """The inputs of one build as read before it ran, and whether any was too fresh to trust."""

    __slots__ = ("inputs", "memo_path", "racy", "tags_index")

    def __init__(
        self, inputs: dict[str, Any], memo_path: Path, racy: bool, tags_index: dict[str, str]
    ) -> None:
        self.inputs = inputs
        self.memo_path = memo_path
        self.racy = racy
        self.tags_index = tags_index


def snapshot(
    *,
    cache_root: Path,
    images_root: Path,
    context: Path,
    dockerfile: Path,
    settings: dict[str, Any],
) -> Snapshot | None:
    """Read the build's inputs (None when they cannot be memoized: an unreadable context or
    Dockerfile, more than `MAX_ENTRIES` entries)."""
    started = time.time_ns()
    try:
        context = Path(os.path.realpath(context))
        dockerfile = Path(os.path.realpath(dockerfile))
        text = _read_dockerfile(dockerfile)
        ignore, ignore_text = _read_dockerignore(context)
        tree, newest = _scan(context, ignore)
        tags_index = _read_tags(images_root)
    except (OSError, ValueError):
        return None
    if text is None or tree is None:
        return None
    inputs = {
        "format": FORMAT,
        "context": str(context),
        "dockerfile": str(dockerfile),
        "dockerfile_text": text,
        "dockerignore_text": ignore_text,
        "settings": settings,
        "tree": tree,
    }
    where = f"{context}\0{dockerfile}".encode()
    name = f"{zlib.crc32(where):08x}.json"
    racy = newest > started - RACY_NS
    return Snapshot(inputs, cache_root / "memo" / name, racy, tags_index)


def lookup(snap: Snapshot, *, cache_root: Path, images_root: Path, tags: list[str]) -> Any:
    """The recorded result (a dict) when nothing the build depends on changed, else None."""
    try:
        memo = json.loads(snap.memo_path.read_bytes())
    except (OSError, ValueError):
        return None
    if not isinstance(memo, dict) or memo.get("inputs") != snap.inputs:
        return None
    result = memo.get("result")
    if not isinstance(result, dict):
        return None
    try:
        fresh = _still_valid(result, snap.tags_index, cache_root, images_root, tags)
    except (KeyError, TypeError, ValueError, AttributeError):
        return None
    return result if fresh else None


def _still_valid(
    result: dict[str, Any],
    tags_index: dict[str, str],
    cache_root: Path,
    images_root: Path,
    tags: list[str],
) -> bool:
    blobs = images_root / "blobs" / "sha256"
    image = str(result["image"])
    for digest in (image, str(result["config"])):
        if not (blobs / digest.partition(":")[2]).is_file():
            return False
    for name, digest in dict(result["bases"]).items():
        if "@" in name:  # pinned by digest: the blob must still be there
            if not (blobs / name.rpartition("@")[2].partition(":")[2]).is_file():
                return False
        elif tags_index.get(name) != digest:
            return False
    tag_keys = dict(result["tag_keys"])
    for tag in tags:
        if tag not in tag_keys or tags_index.get(tag_keys[tag]) != image:
            return False
    keys = []
    for key, blob, tree in result["cache"]:
        key_file = cache_root / "keys" / f"{key}.json"
        if not (key_file.is_file() and Path(blob).is_file() and Path(tree).is_dir()):
            return False
        keys.append(key_file)
    for key_file in keys:
        with contextlib.suppress(OSError):
            os.utime(key_file)  # a hit is a use, as the builder's cache lookup counts it
    return True


def record(snap: Snapshot, result: dict[str, Any]) -> None:
    """Write the memo of a build that ran with the inputs of `snap` (skipped when racy)."""
    if snap.racy:
        forget(snap)
        return
    bases = {}
    for name in result["bases"]:
        if "@" not in name:
            digest = snap.tags_index.get(name)
            if digest is None:  # tagged while the build ran: what it resolved is unknown
                forget(snap)
                return
            bases[name] = digest
        else:
            bases[name] = ""
    memo = {"inputs": snap.inputs, "result": {**result, "bases": bases}}
    directory = snap.memo_path.parent
    tmp = directory / f".{snap.memo_path.name}.{os.getpid()}.tmp"
    try:
        directory.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(memo, separators=(",", ":")))
        os.replace(tmp, snap.memo_path)
    except OSError:
        forget(snap)  # a memo only saves time: the build itself succeeded
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


def forget(snap: Snapshot) -> None:
    """Remove the memo for the context and Dockerfile of `snap` (a build it cannot answer)."""
    with contextlib.suppress(OSError):
        snap.memo_path.unlink()


def _read_small_file(path: Path, *, follow: bool = True) -> bytes | None:
    """A regular file's bytes, None when it is not one (a fifo would block, a device never end)
    or holds more than `_MAX_DOCKERFILE`; OSError when it cannot be opened (with `follow`
    False, a symlink among them). The builder reads the file again."""
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | (0 if follow else os.O_NOFOLLOW)
    fd = os.open(path, flags)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > _MAX_DOCKERFILE:
            return None
        data = os.read(fd, _MAX_DOCKERFILE + 1)
    finally:
        os.close(fd)
    return None if len(data) > _MAX_DOCKERFILE else data


def _read_dockerfile(path: Path) -> str | None:
    data = _read_small_file(path)
    try:
        return None if data is None else data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _read_dockerignore(root: Path) -> tuple[DockerIgnore | None, str | None]:
    """The context's .dockerignore (its patterns and text); (None, None) when it is not a plain
    file the memo can read without following anything: then no entry is left out."""
    try:
        raw = _read_small_file(root / ".dockerignore", follow=False)
    except FileNotFoundError:
        return DockerIgnore(), None
    except OSError:
        return None, None  # a symlink (ELOOP) or unreadable: the builder decides what it means
    if raw is None:
        return None, None
    text = raw.decode("utf-8", errors="replace")  # as DockerIgnore.load decodes it
    return DockerIgnore.parse(text), text


def _scan(root: Path, ignore: DockerIgnore | None) -> tuple[list[list[Any]] | None, int]:
    """The entries of the context the builder can see, sorted, and the newest mtime or ctime of
    a non-directory among them (lstat only: nothing is followed or opened).

    An entry is [path, mode, uid, gid, size, mtime, ctime, ino, dev, extra]; a directory's
    size and times are 0 (what changes them, its list of names, is the entries below it; the
    builder never copies a directory's times). Entries `ignore` excludes are left out as the
    builder leaves them out (`runner.build.trees.ContextTree`): an excluded directory is not
    even read unless a `!` pattern may bring back something below it, and then it stays only
    when something below it is included. Where the builder could see through a symlink what
    the patterns exclude, nothing is left out: a symlink anywhere when there are `!`
    patterns, or one that leads to a directory or through an excluded path.
    """
    top = os.lstat(root)
    if not stat.S_ISDIR(top.st_mode):
        return None, 0
    if ignore is not None and not ignore.patterns:
        ignore = None
    exceptions = ignore is not None and ignore.has_exceptions()
    entries: dict[str, list[Any]] = {"": _entry("", top, "")}
    excluded: set[str] = set()
    links: list[str] = []
    pending = [""]
    while pending:
        relative = pending.pop()
        with os.scandir(os.path.join(root, relative) if relative else root) as listing:
            for item in listing:
                path = f"{relative}/{item.name}" if relative else item.name
                info = item.stat(follow_symlinks=False)
                if ignore is not None and ignore.excluded(path):
                    if not exceptions:
                        continue  # nothing below can come back: not even read
                    excluded.add(path)
                extra = ""
                if stat.S_ISDIR(info.st_mode):
                    pending.append(path)
                elif stat.S_ISLNK(info.st_mode):
                    extra = os.readlink(item.path)
                    links.append(path)
                elif stat.S_ISCHR(info.st_mode) or stat.S_ISBLK(info.st_mode):
                    extra = str(info.st_rdev)
                entries[path] = _entry(path, info, extra)
                if len(entries) > MAX_ENTRIES:
                    return None, 0
    if ignore is not None and links and (exceptions or not _links_stay_inside(entries, ignore)):
        return _scan(root, None)  # the builder may see excluded paths: keep every entry
    if excluded:
        _drop_excluded(entries, excluded)
    newest = max(
        (max(e[5], e[6]) for e in entries.values() if not stat.S_ISDIR(e[1])),
        default=0,
    )
    return sorted(entries.values(), key=lambda entry: str(entry[0])), newest


def _drop_excluded(entries: dict[str, list[Any]], excluded: set[str]) -> None:
    """Remove the excluded entries, but an excluded directory with an included entry below
    (a `!` pattern), which the builder lists, copies and walks through."""
    needed: set[str] = set()
    for path in entries:
        if path in excluded:
            continue
        parent = path.rpartition("/")[0]
        while parent and parent not in needed:
            needed.add(parent)
            parent = parent.rpartition("/")[0]
    for path in excluded - needed:
        del entries[path]


def _links_stay_inside(entries: dict[str, list[Any]], ignore: DockerIgnore) -> bool:
    """Whether every symlink among `entries` (none excluded) resolves, component by component
    as `runner.confined` resolves it, through included entries only, ending at a non-directory
    or nowhere: then no path the builder looks up reaches an excluded entry."""
    for path, entry in entries.items():
        if not stat.S_ISLNK(entry[1]):
            continue
        target = str(entry[9])
        parts = [] if target.startswith("/") else path.split("/")[:-1]
        names = [name for name in target.split("/") if name not in ("", ".")]
        if not names:
            return False  # the directory it is in, or the root
        for index, name in enumerate(names):
            last = index == len(names) - 1
            if name == "..":
                if parts:
                    parts.pop()
                if last:
                    return False  # a directory
                continue
            parts.append(name)
            here = "/".join(parts)
            found = entries.get(here)
            if found is None:
                if ignore.excluded(here):
                    return False
                continue  # absent: the lookup ends here (followed on, to be safe)
            mode = found[1]
            if stat.S_ISLNK(mode) and not last:
                return False  # its own target is checked as an entry; what follows is not
            if stat.S_ISDIR(mode) and last:
                return False  # a directory: paths below the link alias paths below it
    return True


def _entry(path: str, info: os.stat_result, extra: str) -> list[Any]:
    directory = stat.S_ISDIR(info.st_mode)
    return [
        path,
        info.st_mode,
        info.st_uid,
        info.st_gid,
        0 if directory else info.st_size,
        0 if directory else info.st_mtime_ns,
        0 if directory else info.st_ctime_ns,
        info.st_ino,
        info.st_dev,
        extra,
    ]


def _read_tags(images_root: Path) -> dict[str, str]:
    try:
        data = json.loads((images_root / "tags.json").read_bytes())
    except FileNotFoundError:
        return {}
    if not isinstance(data, dict):
        raise ValueError("tags.json is not an object")
    return {str(k): str(v) for k, v in data.items()}
