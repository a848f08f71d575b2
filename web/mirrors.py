"""Per-repository bare git mirrors: fetch a pushed commit, read its pipeline files safely.

The repository is hostile: its tree may hold symlinks to host files, paths with `..`, a file
and a directory of the same name. Nothing here follows a symlink of the tree or writes outside
the directory it was given: files are created through directory descriptors opened with
`O_NOFOLLOW`, each new file with `O_EXCL`, and symlinks are recreated as symlinks, unread.

Lifecycle of a `RepositoryMirror` (one per delivery or task; cheap to make)::

    with RepositoryMirror(data_dir, name="acme/shop", clone_url=url) as mirror:
        sha = mirror.fetch(trigger.sha, refs=[trigger.fetch_ref])  # clone or fetch, locked
        files = mirror.changed_files(sha, before=trigger.before_sha, base_branch="main")
        with mirror.planning_tree(sha) as tree:                      # a temporary directory
            document = tree.load()                                   # None: no pipeline file
            the_plan = pipeline.plan(document, context)
    # closing stops the git processes the mirror kept for reading

`fetch` holds a file lock per repository (`<mirror>.lock`), so concurrent deliveries for one
repository fetch one after the other; reads take no lock, since git objects never change.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from urllib.parse import urlsplit, urlunsplit

import git
from filelock import FileLock, Timeout

import pipeline
from pipeline.document import PIPELINE_FILE_NAMES, read_text
from pipeline.errors import LoadError, Location
from web.errors import (
    CommitNotFoundError,
    MirrorBusyError,
    RepositoryUnreachableError,
    UnsafeTreeError,
)
from web.hooks.context import CommitFacts
from web.hooks.trigger import COMMIT_ID

MIRRORS_DIR = "mirrors"
FETCH_TIMEOUT = 600.0  # seconds a clone or fetch may take before it is killed
LOCK_TIMEOUT = 900.0  # seconds to wait for another process's fetch of the same repository
MAX_TREE_ENTRIES = 500_000
MAX_MATERIALISED_BYTES = 512 * 1024 * 1024
PLANNING_SUFFIXES = (".yml", ".yaml")
# A URL needing credentials fails instead of waiting for someone to type them; the operator's
# own git and ssh configuration (credential helpers, keys, proxies) still applies.
GIT_ENV = {
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_SSH_COMMAND": os.environ.get("GIT_SSH_COMMAND", "ssh -o BatchMode=yes"),
}

_MODE_SYMLINK = "120000"
_MODE_SUBMODULE = "160000"
_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class TreeEntry:
    """One path of a commit's tree: git mode ("100644", "120000"...), kind, object id, path."""

    mode: str
    kind: str
    object_id: str
    path: str


@dataclass(frozen=True)
class PlanningTree:
    """A commit's files written out for planning, and which pipeline file it has.

    `root` is a temporary directory (removed when the `planning_tree` block ends);
    `pipeline_file` the regular file `.kapal.yml` (else `.gitlab-ci.yml`) under it, or None;
    `files` every path of the commit, for `rules: exists` (`TriggerContext.project_files`).
    """

    root: Path
    pipeline_file: Path | None
    files: tuple[str, ...]

    def load(self) -> pipeline.Document | None:
        """The pipeline file loaded, named as in the repository (`.kapal.yml:3:5` in messages),
        with `include: local` resolved under `root`; None when the commit has none."""
        if self.pipeline_file is None:
            return None
        shown = self.pipeline_file.name
        return pipeline.loads(read_text(self.pipeline_file, shown), shown, root_dir=self.root)


def mirror_path(data_dir: Path, name: str, clone_url: str) -> Path:
    """Where the mirror of `clone_url` lives: `<data_dir>/mirrors/<name>-<hash of url>.git`."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip(".-")[:60] or "repository"
    digest = hashlib.sha256(clone_url.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    return Path(data_dir) / MIRRORS_DIR / f"{slug}-{digest}.git"


def shown_url(url: str) -> str:
    """`url` without a password or token, for messages."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.password is None and "@" not in parts.netloc:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    user = f"{parts.username}@" if parts.username else ""
    return urlunsplit((parts.scheme, user + host, parts.path, parts.query, parts.fragment))


def _git_message(exc: git.GitCommandError, url: str) -> str:
    lines = [line.strip() for line in str(exc.stderr or "").splitlines() if line.strip()]
    text = " ".join(line.removeprefix("stderr: ").strip("' ") for line in lines).strip()
    if not text:
        text = f"git exited with status {exc.status}"
    return text.replace(url, shown_url(url))


class RepositoryMirror:
    """A bare mirror of one repository under the data dir, fetched as deliveries arrive.

    See the module docstring for the lifecycle. `name` (the repository's full name) and
    `clone_url` (the one the operator registered, never a payload's) choose the directory.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        name: str,
        clone_url: str,
        fetch_timeout: float = FETCH_TIMEOUT,
        lock_timeout: float = LOCK_TIMEOUT,
    ) -> None:
        self.clone_url = clone_url
        self.path = mirror_path(data_dir, name, clone_url)
        self.fetch_timeout = fetch_timeout
        self.lock_timeout = lock_timeout
        self._repo: git.Repo | None = None

    def __enter__(self) -> RepositoryMirror:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stop the git processes kept for reading objects."""
        if self._repo is not None:
            self._repo.close()
            self._repo = None

    # fetching ----------------------------------------------------------------------------------
    def fetch(self, sha: str, refs: Iterable[str] = ()) -> str:
        """Make `sha` (and `refs`, e.g. the pushed ref) present; return the commit's id.

        Clones the repository on first use; later fetches only `refs`, then the commit by id,
        then everything, stopping as soon as the commit is there (when it already is, only the
        `refs` the mirror lacks are fetched). A tag object is peeled to its commit. Raises
        `RepositoryUnreachableError`, `CommitNotFoundError`, `MirrorBusyError`.
        """
        sha = _checked_sha(sha)
        wanted = [ref for ref in refs if _checked_ref(ref)]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(self.path) + ".lock", timeout=self.lock_timeout)
        try:
            with lock:
                if not (self.path / "HEAD").is_file():
                    self._clone()
                elif self._commit(sha) is None:
                    self._try_fetch(*(f"+{ref}:{ref}" for ref in wanted))
                else:  # a redelivery, or another pipeline of the commit: only what is missing
                    missing = [ref for ref in wanted if self._commit(ref) is None]
                    if missing:
                        self._try_fetch(*(f"+{ref}:{ref}" for ref in missing))
                found = self._commit(sha)
                if found is None and self._try_fetch(sha) is None:
                    found = self._commit(sha)
                if found is None:
                    failure = self._try_fetch()
                    if failure is not None:
                        raise RepositoryUnreachableError(
                            f"cannot fetch from {shown_url(self.clone_url)}: {failure}; "
                            "check the repository's clone URL, the network and credentials"
                        )
                    found = self._commit(sha)
        except Timeout:
            raise MirrorBusyError(
                f"the mirror {self.path} stayed locked for {self.lock_timeout:.0f}s by another "
                "fetch of the same repository; retry the delivery later"
            ) from None
        if found is None:
            raise CommitNotFoundError(
                f"commit {sha} is not in {shown_url(self.clone_url)} (fetched "
                f"{', '.join(wanted) or 'every ref'}); was it force-pushed away?"
            )
        return found

    def _clone(self) -> None:
        url = self.clone_url
        if url.startswith("-") or url.lower().startswith(("ext::", "fd::")):
            raise RepositoryUnreachableError(
                f"clone URL {shown_url(url)!r} is refused: use an https://, ssh:// or file URL"
            )
        partial = self.path.with_name(self.path.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        repo = git.Repo.init(partial, bare=True, mkdir=True)
        try:
            with repo.config_writer() as config:
                config.set_value('remote "origin"', "url", url)
                config.set_value('remote "origin"', "fetch", "+refs/*:refs/*")
                config.set_value('remote "origin"', "mirror", "true")
                config.set_value("gc", "auto", "0")  # objects of old deliveries stay readable
            repo.git.update_environment(**GIT_ENV)
            try:
                repo.git.fetch("origin", kill_after_timeout=self.fetch_timeout)
            except git.GitCommandError as exc:
                raise RepositoryUnreachableError(
                    f"cannot clone {shown_url(url)}: {_git_message(exc, url)}; check the "
                    "repository's clone URL, the network and the credentials"
                ) from None
        except BaseException:
            repo.close()
            shutil.rmtree(partial, ignore_errors=True)
            raise
        repo.close()
        shutil.rmtree(self.path, ignore_errors=True)  # what a crash mid-replace left, if anything
        os.replace(partial, self.path)

    def _try_fetch(self, *what: str) -> str | None:
        """Fetch `what` from origin (everything when empty); git's message when it fails."""
        try:
            self._git().fetch("origin", *what, kill_after_timeout=self.fetch_timeout)
        except git.GitCommandError as exc:
            return _git_message(exc, self.clone_url)
        return None

    # reading -----------------------------------------------------------------------------------
    def _git(self) -> git.Git:
        return self._repository().git

    def _repository(self) -> git.Repo:
        if self._repo is None:
            try:
                self._repo = git.Repo(self.path)
            except (git.NoSuchPathError, git.InvalidGitRepositoryError):
                raise CommitNotFoundError(
                    f"no mirror of {shown_url(self.clone_url)} yet; fetch a commit first"
                ) from None
            self._repo.git.update_environment(**GIT_ENV)
        return self._repo

    def _commit(self, rev: str) -> str | None:
        try:
            out = self._git().rev_parse("--verify", "--quiet", f"{rev}^{{commit}}")
        except git.GitCommandError:
            return None
        return out.strip() or None

    def has_commit(self, sha: str) -> bool:
        """True when the mirror holds the commit `sha` (no fetch)."""
        return (self.path / "HEAD").is_file() and self._commit(_checked_sha(sha)) is not None

    def commit_facts(self, sha: str) -> CommitFacts:
        """The message, author ("Name <email>") and committer date (ISO 8601) of `sha`."""
        out = self._git().show(
            "-s",
            "--format=%an%x00%ae%x00%cI%x00%B",
            _checked_sha(sha),
            strip_newline_in_stdout=False,
        )
        name, email, when, message = ([*out.split("\x00", 3), "", "", "", ""])[:4]
        author = f"{name} <{email}>" if email else name
        return CommitFacts(message=message.rstrip("\n"), author=author, timestamp=when)

    def tree(self, sha: str) -> list[TreeEntry]:
        """Every entry of the commit's tree, recursively, checked to be safe to write out."""
        try:
            raw = self._git().ls_tree(
                "-r", "-z", "--full-tree", _checked_sha(sha), stdout_as_string=False
            )
        except git.GitCommandError as exc:
            raise UnsafeTreeError(
                f"cannot list the tree of commit {sha}: {_git_message(exc, self.clone_url)}"
            ) from None
        entries = []
        for record in raw.split(b"\0"):
            if not record:
                continue
            meta, _, name = record.partition(b"\t")
            try:
                mode, kind, object_id = meta.decode("ascii").split(" ")
            except ValueError:  # not the "mode kind id" git lists for a sound tree
                raise UnsafeTreeError(f"commit {sha} has a malformed tree entry") from None
            path = os.fsdecode(name)
            _check_path(path)
            entries.append(TreeEntry(mode, kind, object_id, path))
            if len(entries) > MAX_TREE_ENTRIES:
                raise UnsafeTreeError(
                    f"commit {sha} has more than {MAX_TREE_ENTRIES} files; kapal does not "
                    "write out trees that large"
                )
        return entries

    def files(self, sha: str) -> tuple[str, ...]:
        """The paths of the commit's files and symlinks (for `rules: exists`)."""
        return tuple(e.path for e in self.tree(sha) if e.kind == "blob")

    def merge_base(self, sha: str, branch: str) -> str | None:
        """The best common ancestor of `sha` and the mirror's `branch`, None without one."""
        ref = f"refs/heads/{branch}"
        _checked_ref(ref)
        try:
            out = self._git().merge_base(_checked_sha(sha), ref)
        except git.GitCommandError:
            return None
        return out.strip() or None

    def changed_files(
        self, sha: str, *, before: str | None = None, base_branch: str | None = None
    ) -> tuple[str, ...]:
        """Paths changed by a push of `sha`, for `rules: changes`.

        Against `before` when the mirror has it (an existing branch moved on); else, for a new
        branch or a merge request, against the merge base with `base_branch` (the default or
        target branch); else the commit alone, against its first parent. Renames count as
        a deletion and an addition, so both paths are listed.
        """
        sha = _checked_sha(sha)
        base: str | None = None
        if before is not None and before.strip("0") and COMMIT_ID.fullmatch(before.lower()):
            base = self._commit(before.lower())
        if base is None and base_branch:
            found = self.merge_base(sha, base_branch)
            base = found if found != sha else None
        if base is None:
            parents = self._git().rev_list("--parents", "-n", "1", sha).split()[1:]
            if not parents:
                out = self._git().diff_tree(
                    "--root",
                    "-r",
                    "-z",
                    "--name-only",
                    "--no-commit-id",
                    sha,
                    stdout_as_string=False,
                )
                return _names(out)
            base = parents[0]
        out = self._git().diff(
            "--name-only", "-z", "--no-renames", base, sha, "--", stdout_as_string=False
        )
        return _names(out)

    # writing out -------------------------------------------------------------------------------
    def materialise(
        self, sha: str, destination: Path, *, select: Callable[[str], bool] | None = None
    ) -> int:
        """Write the commit's files (those `select` keeps, and every symlink) into the existing
        empty directory `destination`; return how many entries were written.

        Symlinks are recreated with their target as committed and never followed; a path that
        would pass through a symlink, collide with another, or leave `destination` raises
        `UnsafeTreeError`. Submodules become empty directories.
        """
        return self._materialise(sha, self.tree(sha), destination, select)

    def _materialise(
        self,
        sha: str,
        entries: list[TreeEntry],
        destination: Path,
        select: Callable[[str], bool] | None,
    ) -> int:
        odb = self._repository().odb
        root_fd = os.open(destination, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        written = total = 0
        try:
            for entry in entries:
                is_link = entry.mode == _MODE_SYMLINK
                parts = entry.path.split("/")
                if entry.mode == _MODE_SUBMODULE:
                    os.close(_open_dirs(root_fd, parts, entry.path))
                    continue
                if entry.kind != "blob" or not (is_link or select is None or select(entry.path)):
                    continue
                object_id = bytes.fromhex(entry.object_id)
                try:
                    total += odb.info(object_id).size
                except ValueError:  # git says "missing"
                    raise UnsafeTreeError(
                        f"commit {sha} names {entry.path[:200]!r} but its object is missing"
                    ) from None
                if total > MAX_MATERIALISED_BYTES:
                    raise UnsafeTreeError(
                        f"commit {sha} holds more than {MAX_MATERIALISED_BYTES} bytes of files "
                        "to write out; kapal refuses trees that large"
                    )
                parent = _open_dirs(root_fd, parts[:-1], entry.path)
                stream = odb.stream(object_id)
                try:
                    if is_link:
                        os.symlink(stream.read(), os.fsencode(parts[-1]), dir_fd=parent)
                    else:
                        _write_file(parent, parts[-1], entry.mode, stream.read)
                except FileExistsError:
                    raise UnsafeTreeError(
                        f"commit {sha} lists {entry.path[:200]!r} twice; kapal refuses such trees"
                    ) from None
                except (OSError, ValueError) as exc:  # a name too long, a NUL in a link target
                    reason = exc.strerror if isinstance(exc, OSError) else str(exc)
                    raise UnsafeTreeError(
                        f"cannot write the commit's path {entry.path[:200]!r}: {reason}"
                    ) from None
                finally:
                    # git's batch reader must see the whole object consumed before the next one
                    while stream.read(_CHUNK):
                        pass
                    os.close(parent)
                written += 1
        finally:
            os.close(root_fd)
        return written

    @contextmanager
    def planning_tree(self, sha: str, *, everything: bool = False) -> Iterator[PlanningTree]:
        """The commit's pipeline files (every `.yml`/`.yaml` file and symlink, or `everything`)
        in a temporary directory removed afterwards.

        A pipeline file that is a symlink is refused with a `pipeline.errors.LoadError` (record
        it as the pipeline's failure): its target, maybe a host file, is never read.
        """
        entries = self.tree(sha)
        pipeline_file = _pipeline_file(entries)
        select = None if everything else _planning_file
        with tempfile.TemporaryDirectory(prefix="kapal-plan-") as temporary:
            root = Path(temporary)
            self._materialise(sha, entries, root, select)
            yield PlanningTree(
                root=root,
                pipeline_file=root / pipeline_file if pipeline_file is not None else None,
                files=tuple(e.path for e in entries if e.kind == "blob"),
            )


def _planning_file(path: str) -> bool:
    return path.endswith(PLANNING_SUFFIXES)


def _pipeline_file(entries: list[TreeEntry]) -> str | None:
    top = {e.path: e for e in entries if "/" not in e.path}
    for name in PIPELINE_FILE_NAMES:
        entry = top.get(name)
        if entry is None or entry.kind != "blob":
            continue
        if entry.mode == _MODE_SYMLINK:
            raise LoadError(
                f"{name} is a symbolic link; kapal reads the pipeline file only as a regular "
                "file committed at the repository's root (commit the file itself)",
                Location(name),
            )
        return name
    return None


def _checked_sha(sha: str) -> str:
    lowered = sha.lower()
    if not COMMIT_ID.fullmatch(lowered):
        raise CommitNotFoundError(f"{sha[:80]!r} is not a commit id of 40 hexadecimal digits")
    return lowered


def _checked_ref(ref: str) -> bool:
    if not ref.startswith("refs/") or ".." in ref or any(c in ref for c in " ~^:?*[\\\0"):
        raise CommitNotFoundError(f"{ref[:80]!r} is not a full git ref name (refs/...)")
    return True


def _check_path(path: str) -> None:
    parts = path.split("/")
    if any(part in ("", ".", "..") or part.lower() == ".git" for part in parts):
        raise UnsafeTreeError(
            f"the commit's tree holds the path {path[:200]!r}, which kapal refuses to write "
            "(an empty, '.', '..' or '.git' component)"
        )


def _names(raw: bytes) -> tuple[str, ...]:
    return tuple(os.fsdecode(name) for name in raw.split(b"\0") if name)


def _open_dirs(root_fd: int, parts: list[str], shown: str) -> int:
    """A descriptor of the directory `parts` under `root_fd`, created as needed, never
    through a symlink."""
    fd = os.dup(root_fd)
    try:
        for part in parts:
            with suppress(FileExistsError):
                os.mkdir(part, 0o755, dir_fd=fd)
            try:
                child = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            except OSError:
                raise UnsafeTreeError(
                    f"the commit's path {shown[:200]!r} passes through {part!r}, which is a "
                    "symlink or a file; kapal refuses such trees"
                ) from None
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


def _write_file(parent: int, name: str, mode: str, read: Callable[[int], bytes]) -> None:
    permissions = 0o755 if mode == "100755" else 0o644
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
    fd = os.open(name, flags, permissions, dir_fd=parent)
    with os.fdopen(fd, "wb") as handle:
        while chunk := read(_CHUNK):
            handle.write(chunk)
