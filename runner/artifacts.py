"""Job artifacts: collecting files by glob, the artifact store, and JUnit reports."""

from __future__ import annotations

import os
import re
import shutil
import stat
import tempfile
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path, PurePosixPath

from pipeline.records import record
from runner.confined import ConfinedTree, CopyReport
from runner.engine.recorder import TestCase
from runner.errors import ConfinedPathError
from runner.objects.store import ObjectStore, object_key
from runner.objects.trees import pack_tree, unpack_tree
from runner.reports import ReportError, parse_xml

_GLOB_CHARS = re.compile(r"[*?\[]")


def glob_regex(pattern: str) -> re.Pattern[str]:
    """Compile a GitLab-style path glob (`*`, `?`, `[...]`, `**` across directories)."""
    pattern = pattern.strip()
    if pattern.startswith("./"):
        pattern = pattern[2:]
    out: list[str] = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif char == "*":
            out.append("[^/]*")
            i += 1
        elif char == "?":
            out.append("[^/]")
            i += 1
        elif char == "[":
            end = pattern.find("]", i + 1)
            if end == -1:
                out.append(re.escape(char))
                i += 1
            else:
                body = pattern[i + 1 : end]
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append(f"[{body}]")
                i = end + 1
        else:
            out.append(re.escape(char))
            i += 1
    return re.compile("".join(out).rstrip("/") + r"\Z")


def _inside(pattern: str) -> bool:
    path = PurePosixPath(pattern)
    return not path.is_absolute() and ".." not in path.parts


def collect_paths(
    root: Path,
    paths: Sequence[str],
    exclude: Sequence[str] = (),
    skipped: list[str] | None = None,
) -> list[str]:
    """Entries under `root` matched by `paths` (a directory means all below it), minus `exclude`.

    Returns POSIX paths relative to `root`, sorted: files, and symlinks as links (never followed,
    so `hostroot -> /` is collected as that link, and `hostroot/etc/shadow` matches nothing).
    A named path reached only through a symlink is left out and, when `skipped` is given, listed
    there with the reason. Patterns leaving `root` match nothing.
    """
    excluded = [glob_regex(p) for p in exclude]
    found: set[str] = set()
    all_files: list[str] | None = None
    with ConfinedTree(root) as tree:
        for pattern in paths:
            pattern = pattern.strip()
            if pattern.startswith("./"):
                pattern = pattern[2:]
            pattern = pattern.rstrip("/")
            if not pattern or not _inside(pattern):
                continue
            if _GLOB_CHARS.search(pattern):
                if all_files is None:
                    all_files = _entries(tree, "")
                regex = glob_regex(pattern)
                for rel in all_files:
                    # a matching directory brings everything below it
                    if any(regex.match(prefix) for prefix in _prefixes(rel)):
                        found.add(rel)
                continue
            named = str(PurePosixPath(pattern))
            try:
                opened = tree.open_beneath(named)
            except ConfinedPathError:
                if skipped is not None:
                    skipped.append(
                        f"{named}: reached through a symlink; symlinks are kept as links, "
                        "never followed"
                    )
                continue
            if opened is None:
                continue
            fd, st = opened
            os.close(fd)
            if stat.S_ISDIR(st.st_mode):
                found.update(_entries(tree, named))
            else:
                found.add(named)
    return sorted(
        rel
        for rel in found
        if not any(regex.match(prefix) for regex in excluded for prefix in _prefixes(rel))
    )


def _prefixes(rel: str) -> Iterable[str]:
    parts = rel.split("/")
    for i in range(1, len(parts) + 1):
        yield "/".join(parts[:i])


def _entries(tree: ConfinedTree, path: str) -> list[str]:
    """Everything but directories below `path` in `tree` (symlinks included, not followed)."""
    return [rel for rel, st in tree.walk(path) if not stat.S_ISDIR(st.st_mode)]


def copy_files(source: Path, files: Iterable[str], destination: Path) -> int:
    """Copy `files` (relative to `source`) into `destination`, keeping their paths; return bytes.

    Both trees are confined (`runner.confined`): a source reached through a symlink is not
    read, a destination's symlinked directories resolve inside `destination`, symlinks are
    copied as links, setuid/setgid bits are dropped, device nodes, fifos and sockets are left out.
    """
    return copy_entries(source, files, destination).size


def copy_entries(source: Path, files: Iterable[str], destination: Path) -> CopyReport:
    """`copy_files` with the full report: what was copied and what was left out, and why."""
    with ConfinedTree(source) as src, ConfinedTree(destination, create=True, mode=0o700) as dst:
        return src.copy_into(dst, list(files))


def restore_tree(source: Path, workspace: Path) -> list[str]:
    """Copy all of the stored tree `source` into `workspace` (`copy_entries`); return the files.

    Artifacts and caches are restored through here, from a store's directory or from an archive
    unpacked out of an object store alike.
    """
    with ConfinedTree(source) as tree:
        files = _entries(tree, "")
    return copy_entries(source, files, workspace).copied


def read_workspace_file(workspace: Path, rel: str, limit: int = 64 << 20) -> bytes:
    """Bytes of the file `rel` in `workspace`, symlinks resolved inside it (a JUnit report).

    Raises `ValueError` when it cannot be read there, or is larger than `limit` bytes.
    """
    try:
        with ConfinedTree(workspace) as tree:
            data = tree.read_bytes(rel, limit + 1)
    except ConfinedPathError as exc:
        raise ValueError(str(exc)) from None
    if len(data) > limit:
        raise ValueError(f"{rel}: larger than {limit >> 20} MiB")
    return data


@record
class StoredArtifacts:
    """The artifacts of one job as kept in the store."""

    job: str
    files: tuple[str, ...]
    size: int
    skipped: tuple[str, ...] = ()


class ArtifactStore:
    """Artifacts of each pipeline's jobs, kept as plain directory trees under `root`.

    Layout: `root/<pipeline id>/<job name>/<files...>`, `root` made 0700. Safe for jobs of one
    pipeline saving and restoring from several threads (each job writes only its own directory).
    Saving and restoring go through `runner.confined`: the workspace's symlinks are stored as
    links and never followed out of it, neither when reading nor when writing back.
    """

    def __init__(self, root: Path) -> None:
        self.root = root

    def _job_dir(self, pipeline_id: int, job: str) -> Path:
        return self.root / str(pipeline_id) / _safe_name(job)

    def job_dir(self, pipeline_id: int, job: str) -> Path:
        """Where `job`'s artifacts of pipeline `pipeline_id` are kept (existing or not)."""
        return self._job_dir(pipeline_id, job)

    def save(
        self, pipeline_id: int, job: str, workspace: Path, files: Sequence[str]
    ) -> StoredArtifacts:
        """Copy `files` from `workspace` into the store as `job`'s artifacts (replacing any)."""
        make_private_dir(self.root)
        target = self._job_dir(pipeline_id, job)
        if target.exists():
            shutil.rmtree(target)
        target.mkdir(parents=True)
        report = copy_entries(workspace, files, target)
        return StoredArtifacts(
            job=job,
            files=tuple(report.copied),
            size=report.size,
            skipped=tuple(f"{rel}: {why}" for rel, why in report.skipped),
        )

    def has(self, pipeline_id: int, job: str) -> bool:
        """Whether `job` stored artifacts in this pipeline."""
        return self.job_dir(pipeline_id, job).is_dir()

    def restore(self, pipeline_id: int, job: str, workspace: Path) -> list[str]:
        """Copy `job`'s artifacts into `workspace`; return the files restored (none if absent)."""
        source = self.job_dir(pipeline_id, job)
        return restore_tree(source, workspace) if source.is_dir() else []

    def prune(self, keep: int) -> list[int]:
        """Remove the artifacts of all but the `keep` most recent pipelines; return those removed.

        "Recent" is by pipeline id. Local runs call this so the store does not grow without end.
        """
        if not self.root.is_dir():
            return []
        ids = sorted(int(p.name) for p in self.root.iterdir() if p.name.isdigit())
        removed = ids[: max(0, len(ids) - keep)]
        for pipeline_id in removed:
            shutil.rmtree(self.root / str(pipeline_id), ignore_errors=True)
        return removed

    def remove(self, pipeline_id: int, job: str) -> bool:
        """Remove `job`'s artifacts of pipeline `pipeline_id` (and the pipeline's directory once
        empty); True when there were some here. Idempotent; confined (`runner.confined`): a
        symlink is removed as a link, never followed."""
        if not os.path.isdir(self.root) or os.path.islink(self.root):
            return False
        relative = f"{pipeline_id}/{_safe_name(job)}"
        with ConfinedTree(self.root) as tree:
            if tree.stat(relative, follow=False) is None:
                return False
            tree.remove(relative)
        _remove_if_empty(self.root, str(pipeline_id))
        return True

    def files(self, pipeline_id: int, job: str) -> list[str]:
        """The files `job` stored, relative to its workspace."""
        source = self.job_dir(pipeline_id, job)
        if not source.is_dir():
            return []
        with ConfinedTree(source) as tree:
            return _entries(tree, "")

    def close(self) -> None:
        """Release what this store holds for one attempt (nothing here; see the subclass)."""


class SharedArtifactStore(ArtifactStore):
    """Artifacts kept as `ArtifactStore` keeps them and, packed, in an `ObjectStore` every
    worker reaches: jobs on machines with no disk in common pass artifacts through it.

    Lifecycle: one per job attempt. `save` writes the local tree (the recorder and the web's
    download read it), then uploads it packed as `artifacts/<pipeline id>/<job>.tar.gz`; an
    upload that fails raises `ObjectStoreError`, so the job fails with that reason (nothing is
    lost silently). The first `has`, `restore`, `files` or `job_dir` of another job downloads
    its archive into a folder of this attempt under `scratch` and unpacks it there through
    `runner.confined` (`runner.objects.trees`: the bucket's content is untrusted), then
    `restore` copies from there with the same code as the directory store. `close()` removes
    what was fetched.
    """

    def __init__(self, root: Path, objects: ObjectStore, *, scratch: Path) -> None:
        super().__init__(root)
        self.objects = objects
        self.scratch = scratch
        self._saved: set[tuple[int, str]] = set()
        self._asked: set[tuple[int, str]] = set()  # fetched (or found absent) once
        self._lock = threading.Lock()  # one download of each archive per attempt

    @staticmethod
    def object_key(pipeline_id: int, job: str) -> str:
        """The key of `job`'s packed artifacts in the object store."""
        return artifacts_key(f"{pipeline_id}/{_safe_name(job)}")

    def job_dir(self, pipeline_id: int, job: str) -> Path:
        """This worker's tree of `job`'s artifacts: its own, else the one fetched from the store
        (absent when the store has none)."""
        if (pipeline_id, job) in self._saved:
            return self._job_dir(pipeline_id, job)
        return self._fetched(pipeline_id, job)

    def _fetched(self, pipeline_id: int, job: str) -> Path:
        tree = self.scratch / "artifacts" / str(pipeline_id) / _safe_name(job)
        with self._lock:
            if (pipeline_id, job) not in self._asked:
                fetch_artifacts(self.objects, f"{pipeline_id}/{_safe_name(job)}", tree)
                self._asked.add((pipeline_id, job))
        return tree

    def save(
        self, pipeline_id: int, job: str, workspace: Path, files: Sequence[str]
    ) -> StoredArtifacts:
        """Store `files` locally, then upload them packed; `ObjectStoreError` if that fails."""
        stored = super().save(pipeline_id, job, workspace, files)
        self._saved.add((pipeline_id, job))
        self.scratch.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix="artifacts-", suffix=".tar.gz", dir=self.scratch)
        os.close(fd)
        packed = Path(name)
        try:
            pack_tree(self._job_dir(pipeline_id, job), packed)
            self.objects.put_file(self.object_key(pipeline_id, job), packed)
        finally:
            packed.unlink(missing_ok=True)
        return stored

    def remove(self, pipeline_id: int, job: str) -> bool:
        """Remove `job`'s artifacts from this machine's tree and from the object store; True
        when this machine had them. Idempotent (deleting an absent blob does nothing);
        `ObjectStoreError` when the store refuses."""
        self.objects.delete(self.object_key(pipeline_id, job))
        return super().remove(pipeline_id, job)

    def close(self) -> None:
        """Remove the artifacts fetched for this attempt."""
        shutil.rmtree(self.scratch / "artifacts", ignore_errors=True)


def artifacts_key(relative: str) -> str:
    """The object store key of the artifacts kept locally at `relative` (`<pipeline>/<job>`)."""
    return object_key(f"artifacts/{relative}.tar.gz")


def fetch_artifacts(objects: ObjectStore, relative: str, tree: Path) -> bool:
    """Download the artifacts kept at `relative` (`<pipeline id>/<job>`, as recorded) from
    `objects` and unpack them, untrusted, into the new directory `tree`; False if absent."""
    key = artifacts_key(relative)
    tree.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    archive = tree.with_name(f"{tree.name}.tar.gz")
    try:
        if not objects.get_file(key, archive):
            return False
        unpack_tree(archive, tree, where=f"{key} in {objects.location}")
    finally:
        archive.unlink(missing_ok=True)
    return True


def make_private_dir(path: Path) -> None:
    """Make `path` (and a missing parent, the data dir) readable by its owner only (0700)."""
    for directory in (path.parent, path):
        if not directory.is_dir():
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(directory, 0o700)


def _remove_if_empty(root: Path, name: str) -> None:
    """Remove the directory `name` right under `root` if it is empty (a save may have just
    filled it: then it stays), never through a symlink."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        os.rmdir(name, dir_fd=fd)
    except OSError:
        pass  # not empty, gone already, or not a directory: left as it is
    finally:
        os.close(fd)


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", name) or "_"


def parse_junit(xml_text: str | bytes) -> list[TestCase]:
    """Test cases of a JUnit XML report (`<testsuites>` or a single `<testsuite>`).

    Raises `ValueError` when the text is not XML, or declares entities (refused: see
    `runner.reports.parse_xml`).
    """
    try:
        root = parse_xml(xml_text)
    except ReportError as exc:
        raise ValueError(f"not a JUnit XML report: {exc}") from None
    cases: list[TestCase] = []
    for case in root.iter("testcase"):
        status, message = "passed", ""
        for child in case:
            if child.tag in ("failure", "error"):
                status = "failed" if child.tag == "failure" else "error"
                message = (child.get("message") or child.text or "").strip()
                break
            if child.tag == "skipped":
                status = "skipped"
                message = (child.get("message") or child.text or "").strip()
        try:
            duration = float(case.get("time") or 0.0)
        except ValueError:
            duration = 0.0
        cases.append(
            TestCase(
                name=case.get("name", ""),
                classname=case.get("classname", ""),
                duration=duration,
                status=status,
                message=message,
            )
        )
    return cases
