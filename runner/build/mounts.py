"""RUN --mount: BuildKit's bind, cache, secret and tmpfs mounts for one RUN step.

Semantics follow BuildKit's Dockerfile reference:
- `type=bind` (the default type): `source` (default: the root) of `from` (a stage or an image;
  default: the build context, .dockerignore applied) at `target`, read-only unless `rw`; writes
  made through an `rw` mount are discarded. kapal copies the source into the step's work directory
  through the in-root resolver (`runner.confined`) and binds that copy, so a symlink in the
  context or the stage never reaches a host path; its content is part of the step's cache key.
- `type=cache`: a directory kept between builds, one per `id` (default: the target), created
  with `mode` (default 0755), `uid` and `gid` (default 0) and optionally seeded from
  `from`/`source`; `sharing=shared` (default) lets concurrent steps use it together, `locked`
  waits for the other user, `private` gives a fresh directory when another step holds it. Cache
  directories live under the build cache's `mounts/<owner>/` (the image store's owner, so one
  repository's pipelines never see another's), named by a hash of the id: an id is never a path.
  The content never enters the layer nor the cache key.
- `type=secret`: the secret `id` (default: the target's base name) at `target` (default
  `/run/secrets/<id>`, mode 0400, `uid`/`gid` 0) or in the variable `env`; a missing secret is
  skipped unless `required`. Secrets come from `kapal build --secret` or a pipeline's secret
  variables; their values are in no layer, no history and no cache key.
- `type=tmpfs`: an empty tmpfs at `target` (`size` in bytes, default unlimited), gone afterwards.
- `type=ssh` is refused: kapal forwards no SSH agent into builds.

Mount points the runtime had to create for a target the image lacks are removed from the layer
afterwards (`drop_mount_stubs`), as BuildKit does.

Lifecycle: `parse_mount` each `--mount` value, `plan_mount` it against its source tree (bind and
seeded cache), take `mount_key` of the plans for the step's cache key; only on a cache miss enter
`mounted(plans, ...)`, which prepares the host side, yields the runtime mounts and the extra
environment, and cleans up (locks released, tmpfs unmounted) on exit.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import os
import posixpath
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from runner.build import copying
from runner.build.trees import ContextTree, LayeredTree, SourceTree
from runner.confined import (
    RESOLVE_BENEATH,
    RESOLVE_NO_MAGICLINKS,
    RESOLVE_NO_SYMLINKS,
    ConfinedTree,
    openat2,
)
from runner.errors import ConfinedPathError
from runner.owners import DEFAULT_OWNER, owner_slug

if TYPE_CHECKING:
    from runner.runtime.backend import Mount

__all__ = [
    "MountError",
    "PlannedMount",
    "RunMount",
    "drop_mount_stubs",
    "mount_key",
    "mounted",
    "parse_mount",
    "plan_mount",
]

_TYPES = ("bind", "cache", "tmpfs", "secret", "ssh")
_SHARING = ("shared", "private", "locked")
_KEYS = {
    "type",
    "target",
    "dst",
    "destination",
    "source",
    "src",
    "from",
    "ro",
    "readonly",
    "rw",
    "readwrite",
    "id",
    "sharing",
    "mode",
    "uid",
    "gid",
    "required",
    "size",
    "env",
}
_NO_CLAMP = 1 << 62  # materialize() clamps mtimes to an epoch; bind mounts keep theirs


class MountError(ValueError):
    """A `--mount` value cannot be used (the caller adds file:line)."""


@dataclass(frozen=True)
class RunMount:
    """One parsed `RUN --mount`: its type, absolute target and options."""

    kind: str
    target: str
    source: str = ""
    source_from: str | None = None
    read_only: bool = True
    id: str = ""
    sharing: str = "shared"
    mode: int | None = None
    uid: int | None = None
    gid: int | None = None
    required: bool = False
    size: int | None = None
    env: str | None = None


@dataclass
class PlannedMount:
    """A mount with what it copies planned (bind sources, a cache's seed)."""

    spec: RunMount
    items: list[copying.CopyItem] = field(default_factory=list)
    file_name: str | None = None  # a bind of a single file: its name in the copy


def _bool(key: str, value: str | None) -> bool:
    if value is None or value.lower() == "true":
        return True
    if value.lower() == "false":
        return False
    raise MountError(f"{key}={value}: give true or false")


def _number(key: str, value: str | None, base: int = 10) -> int:
    if value is None or not value.strip():
        raise MountError(f"{key} needs a value")
    try:
        number = int(value, base)
    except ValueError:
        kind = "an octal mode such as 0755" if base == 8 else "a whole number"
        raise MountError(f"{key}={value}: give {kind}") from None
    if number < 0 or number > (0o7777 if base == 8 else 2**32 - 1):
        raise MountError(f"{key}={value} is out of range")
    return number


def parse_mount(value: str, workdir: str) -> RunMount:
    """Parse one `--mount` value (BuildKit's CSV `key=value` fields); relative targets are under
    `workdir`."""
    try:
        rows = list(csv.reader([value], skipinitialspace=False))
    except csv.Error as exc:
        raise MountError(f"--mount={value}: {exc}") from None
    fields: dict[str, str | None] = {}
    for item in rows[0] if rows else []:
        if not item:
            continue
        key, eq, val = item.partition("=")
        key = key.strip().lower()
        if key not in _KEYS:
            raise MountError(
                f"--mount: unknown option '{key}' (options: {', '.join(sorted(_KEYS))})"
            )
        fields[key] = val if eq else None
    kind = (fields.pop("type", None) or "bind").lower()
    if kind not in _TYPES:
        raise MountError(f"--mount type={kind}: the types are bind, cache, tmpfs and secret")
    if kind == "ssh":
        raise MountError(
            "--mount=type=ssh is not supported: kapal forwards no SSH agent into builds; fetch "
            "private sources before the build, or pass a deploy key as a secret "
            "(--mount=type=secret) and use it in the step"
        )
    target = None
    for name in ("target", "dst", "destination"):
        if name in fields:
            target = fields.pop(name)
    identifier = fields.pop("id", None) or ""
    if kind == "secret" and not target and not identifier:
        raise MountError("--mount=type=secret needs id=NAME (or a target)")
    if kind == "secret" and not target and "env" not in fields:
        target = f"/run/secrets/{identifier}"
    if kind != "secret" and not target:
        raise MountError(f"--mount=type={kind} needs target=PATH (where it appears in the step)")
    full = ""
    if target:
        full = posixpath.normpath(posixpath.join(workdir or "/", target))
        if full == "/":
            raise MountError(f"--mount target={target}: a mount may not cover the root")
    if kind == "secret" and not identifier:
        identifier = posixpath.basename(full)
    source = ""
    for name in ("source", "src"):
        if name in fields:
            source = fields.pop(name) or ""
    read_only = kind in ("bind", "secret")
    for name in ("ro", "readonly"):
        if name in fields:
            read_only = _bool(name, fields.pop(name))
    for name in ("rw", "readwrite"):
        if name in fields:
            read_only = not _bool(name, fields.pop(name))
    sharing = (fields.pop("sharing", None) or "shared").lower()
    if sharing not in _SHARING:
        raise MountError(f"--mount sharing={sharing}: give shared, private or locked")
    mode = _number("mode", fields.pop("mode"), 8) if "mode" in fields else None
    uid = _number("uid", fields.pop("uid")) if "uid" in fields else None
    gid = _number("gid", fields.pop("gid")) if "gid" in fields else None
    size = _size(fields.pop("size")) if "size" in fields else None
    required = _bool("required", fields.pop("required")) if "required" in fields else False
    env = fields.pop("env", None) if "env" in fields else None
    source_from = fields.pop("from", None) if "from" in fields else None
    allowed = {
        "bind": {"source_from"},
        "cache": {"source_from", "mode", "uid", "gid", "sharing", "id"},
        "tmpfs": {"size"},
        "secret": {"mode", "uid", "gid", "required", "env", "id"},
    }[kind]
    given = {
        "source_from": source_from is not None or (bool(source) and kind != "bind"),
        "mode": mode is not None,
        "uid": uid is not None,
        "gid": gid is not None,
        "sharing": sharing != "shared",
        "id": bool(identifier) and kind not in ("cache", "secret"),
        "size": size is not None,
        "required": required,
        "env": env is not None,
    }
    wrong = sorted(name for name, present in given.items() if present and name not in allowed)
    if wrong:
        shown = ", ".join("from/source" if n == "source_from" else n for n in wrong)
        raise MountError(f"--mount=type={kind} takes no {shown}")
    if kind == "cache" and not identifier:
        identifier = full
    if env is not None and not env.replace("_", "a").isalnum():
        raise MountError(f"--mount env={env}: not a variable name")
    return RunMount(
        kind,
        full,
        source=source,
        source_from=source_from,
        read_only=read_only,
        id=identifier,
        sharing=sharing,
        mode=mode,
        uid=uid,
        gid=gid,
        required=required,
        size=size,
        env=env,
    )


def _size(value: str | None) -> int:
    text = (value or "").strip().lower()
    units = {"k": 1024, "m": 1024**2, "g": 1024**3}
    factor = 1
    if text[-1:] in units:
        factor = units[text[-1]]
        text = text[:-1]
    elif text.endswith("b"):
        text = text[:-1]
    if not text.isdigit():
        raise MountError(f"--mount size={value}: give bytes, or a number with k, m or g")
    return int(text) * factor


def plan_mount(spec: RunMount, tree_for: Callable[[str | None], SourceTree]) -> PlannedMount:
    """Plan what a bind mount (or a cache's seed) copies out of its source tree."""
    planned = PlannedMount(spec)
    if spec.kind == "bind" or (spec.kind == "cache" and spec.source_from is not None):
        tree = tree_for(spec.source_from)
        source = posixpath.normpath("/" + (spec.source or "/"))
        if isinstance(tree, LayeredTree):
            source = "/" + tree.resolve(source, follow_last=True)
        elif isinstance(tree, ContextTree) and source != "/":
            # symlinks in the context are followed inside it, as `docker build` follows them,
            # through entries .dockerignore keeps only (the context docker build sends)
            found = tree.lookup(source, follow=True)
            if found.excluded:
                raise MountError(
                    f"--mount source={spec.source}: .dockerignore excludes '{found.excluded}', "
                    "so it is not in the build context docker build sends; change .dockerignore "
                    "or the source"
                )
            source = "/" + found.path if found.path is not None else source
        host = tree.locate(source.lstrip("/")) if source != "/" else Path("/")
        if host is None:
            where = "the build context" if isinstance(tree, ContextTree) else "the source"
            raise MountError(f"--mount source={spec.source or '/'} was not found in {where}")
        is_dir = source == "/" or (host.is_dir() and not host.is_symlink())
        if not is_dir and (host.is_symlink() or not host.is_file()):
            raise MountError(
                f"--mount source={spec.source}: a symlink or special file cannot be mounted; "
                "name the file or directory it points to"
            )
        if is_dir:
            planned.items = _plan(tree, source, "/")
        else:
            planned.file_name = posixpath.basename(source)
            planned.items = _plan(tree, source, "/" + planned.file_name)
    return planned


def _plan(tree: SourceTree, source: str, dest: str) -> list[copying.CopyItem]:
    try:
        return copying.plan_copy(
            tree=tree,
            sources=[source.lstrip("/") or "."],
            dest=dest,
            image=LayeredTree(()),
            owner=copying.Ownership(),
        )
    except copying.CopyPlanError as exc:
        raise MountError(f"--mount source: {exc}") from None


def mount_key(plans: list[PlannedMount]) -> list[object]:
    """What the step's cache key holds of its mounts: options, and bind sources' content."""
    out: list[object] = []
    for plan in plans:
        spec = plan.spec
        options = [spec.kind, spec.target, spec.read_only, spec.id, spec.sharing, spec.env]
        options += [spec.mode, spec.uid, spec.gid, spec.size, spec.required]
        if spec.kind == "bind":
            options.append(copying.fingerprint(plan.items))
        out.append(options)
    return out


def cache_dir(root: Path, owner: str | None, identifier: str) -> Path:
    """The host directory of cache mount `identifier` for `owner` (the id is hashed)."""
    digest = hashlib.sha256(identifier.encode("utf-8", "surrogatepass")).hexdigest()
    return root / owner_slug(owner or DEFAULT_OWNER) / digest[:40]


@contextlib.contextmanager
def mounted(
    plans: list[PlannedMount],
    *,
    work: Path,
    cache_root: Path,
    owner: str | None,
    secrets: Mapping[str, bytes],
) -> Iterator[tuple[list[Mount], dict[str, str]]]:
    """Prepare the host side of `plans`; yield the runtime mounts and extra environment."""
    from runner.runtime.backend import Mount

    mounts: list[Mount] = []
    env: dict[str, str] = {}
    with contextlib.ExitStack() as stack:
        for index, plan in enumerate(plans):
            spec = plan.spec
            if spec.kind == "bind":
                copy = work / f"bind-{index}"
                copy.mkdir()
                _materialize(plan.items, copy)
                source = copy / plan.file_name if plan.file_name else copy
                mounts.append(Mount(source, spec.target, read_only=spec.read_only))
            elif spec.kind == "cache":
                path = stack.enter_context(_cache(plan, cache_root, owner, work / f"cache-{index}"))
                mounts.append(Mount(path, spec.target, read_only=spec.read_only))
            elif spec.kind == "tmpfs":
                path = stack.enter_context(_tmpfs(work / f"tmpfs-{index}", spec.size))
                mounts.append(Mount(path, spec.target))
            else:
                value = secrets.get(spec.id)
                if value is None:
                    if spec.required:
                        raise MountError(
                            f"--mount=type=secret,id={spec.id} is required but no secret "
                            f"'{spec.id}' was given: pass kapal build --secret id={spec.id},"
                            "src=FILE (or define a secret variable of that name)"
                        )
                    continue
                if spec.env is not None:
                    env[spec.env] = value.decode("utf-8", "surrogateescape")
                if spec.target:
                    holder = work / f"secret-{index}"
                    holder.mkdir(mode=0o700)
                    secret = holder / "secret"
                    fd = os.open(secret, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                    with os.fdopen(fd, "wb") as out:
                        out.write(value)
                    os.chown(secret, spec.uid or 0, spec.gid or 0)
                    os.chmod(secret, spec.mode if spec.mode is not None else 0o400)
                    mounts.append(Mount(secret, spec.target, read_only=True))
        # a mount inside another one goes after it
        mounts.sort(key=lambda m: m.target.count("/"))
        yield mounts, env


def _materialize(items: list[copying.CopyItem], root: Path) -> None:
    try:
        copying.materialize(items, root, LayeredTree(()), _NO_CLAMP)
    except copying.ArchiveExtractError as exc:
        raise MountError(f"--mount source: {exc}") from None


@contextlib.contextmanager
def _cache(plan: PlannedMount, root: Path, owner: str | None, spare: Path) -> Iterator[Path]:
    """The cache directory to mount, created on first use and held as `sharing` says."""
    from filelock import FileLock, Timeout

    spec = plan.spec
    path = cache_dir(root, owner, spec.id)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.is_dir():
        fresh = Path(tempfile.mkdtemp(dir=path.parent, prefix=".new-"))
        try:
            _prepare_cache(plan, fresh)
            os.rename(fresh, path)
        except OSError:
            if not path.is_dir():
                raise
        finally:
            if fresh.exists():
                shutil.rmtree(fresh, ignore_errors=True)
    with contextlib.suppress(OSError):
        os.utime(path)  # last use, for pruning least recently used first (cache_prune)
    lock = FileLock(str(path) + ".lock")
    if spec.sharing == "shared":
        yield path
    elif spec.sharing == "locked":
        with lock:
            yield path
    else:
        try:
            lock.acquire(timeout=0)
        except Timeout:  # another step holds it: this one gets a directory of its own
            spare.mkdir()
            _prepare_cache(plan, spare)
            yield spare
            return
        try:
            yield path
        finally:
            lock.release()


def _prepare_cache(plan: PlannedMount, path: Path) -> None:
    spec = plan.spec
    if plan.items:
        _materialize(plan.items, path)
    os.chown(path, spec.uid or 0, spec.gid or 0)
    os.chmod(path, spec.mode if spec.mode is not None else 0o755)


@contextlib.contextmanager
def _tmpfs(path: Path, size: int | None) -> Iterator[Path]:
    from runner.runtime.syscalls import mount, umount

    path.mkdir()
    options = "mode=1777" + (f",size={size}" if size else "")
    try:
        mount("tmpfs", str(path), "tmpfs", _MS_NOSUID | _MS_NODEV, options)
    except OSError as exc:
        raise MountError(f"--mount=type=tmpfs: cannot create the tmpfs: {exc}") from None
    try:
        yield path
    finally:
        umount(str(path), _MNT_DETACH)


_MS_NOSUID = 2
_MS_NODEV = 4
_MNT_DETACH = 2
_BENEATH_NO_LINKS = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS


def drop_mount_stubs(upper: Path, image: LayeredTree, targets: list[str]) -> None:
    """Remove from a RUN step's upper dir the mount points made for targets the image lacks.

    The upper dir is what the step wrote (untrusted): it is only touched through the in-root
    resolver, and only empty entries the image did not have (or has the same) are removed.
    """
    try:
        with ConfinedTree(upper) as tree:
            for target in sorted(targets, key=lambda t: -t.count("/")):
                rel = image.resolve(target).strip("/")
                while rel:
                    if not _drop_if_stub(tree, rel, image):
                        break
                    rel = posixpath.dirname(rel)
    except ConfinedPathError:
        return  # the step replaced a stub with something else: it stays, as the step wrote it


def _drop_if_stub(tree: ConfinedTree, rel: str, image: LayeredTree) -> bool:
    st = tree.stat(rel, follow=False)
    if st is None:
        return True  # nothing here: look at the parent
    empty_dir = stat.S_ISDIR(st.st_mode) and not tree.listdir(rel)
    empty_file = stat.S_ISREG(st.st_mode) and st.st_size == 0
    if not (empty_dir or empty_file):
        return False
    lower = image.locate(rel)
    if lower is not None:
        if not empty_dir or lower.is_symlink() or not lower.is_dir():
            return False
        theirs = os.lstat(lower)
        if (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) != (
            stat.S_IMODE(theirs.st_mode),
            theirs.st_uid,
            theirs.st_gid,
        ):
            return False
        if _is_opaque(tree, rel):
            return False
    tree.remove(rel)
    return True


def _is_opaque(tree: ConfinedTree, rel: str) -> bool:
    """Whether overlayfs marked the directory opaque (the step replaced the image's directory)."""
    try:  # no symlink followed anywhere on the way: one there means "keep it"
        fd = openat2(tree.fd, rel, os.O_RDONLY | os.O_DIRECTORY, _BENEATH_NO_LINKS)
    except OSError:
        return True
    try:
        return os.getxattr(f"/proc/self/fd/{fd}", "trusted.overlay.opaque") == b"y"
    except OSError:
        return False
    finally:
        os.close(fd)
