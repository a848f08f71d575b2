"""Job artifacts: collecting files by glob, the artifact store, and JUnit reports."""

from __future__ import annotations

import os
import re
import shutil
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from runner.recorder import TestCase

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


def collect_paths(root: Path, paths: Sequence[str], exclude: Sequence[str] = ()) -> list[str]:
    """Files under `root` matched by `paths` (a directory means all below it), minus `exclude`.

    Returns POSIX paths relative to `root`, sorted. Patterns leaving `root` match nothing.
    """
    excluded = [glob_regex(p) for p in exclude]
    found: set[str] = set()
    all_files: list[str] | None = None
    for pattern in paths:
        pattern = pattern.strip()
        if pattern.startswith("./"):
            pattern = pattern[2:]
        if not pattern or not _inside(pattern):
            continue
        if _GLOB_CHARS.search(pattern):
            if all_files is None:
                all_files = list(_walk(root))
            regex = glob_regex(pattern)
            for rel in all_files:
                # a matching directory brings everything below it
                if any(regex.match(prefix) for prefix in _prefixes(rel)):
                    found.add(rel)
        else:
            target = root / pattern
            if target.is_dir() and not target.is_symlink():
                found.update(str(PurePosixPath(pattern) / rel) for rel in _walk(target))
            elif target.exists() or target.is_symlink():
                found.add(str(PurePosixPath(pattern)))
    return sorted(
        rel
        for rel in found
        if not any(regex.match(prefix) for regex in excluded for prefix in _prefixes(rel))
    )


def _prefixes(rel: str) -> Iterable[str]:
    parts = rel.split("/")
    for i in range(1, len(parts) + 1):
        yield "/".join(parts[:i])


def _walk(root: Path) -> Iterable[str]:
    for dirpath, dirnames, filenames in os.walk(root):
        base = Path(dirpath).relative_to(root)
        for name in filenames:
            yield (base / name).as_posix()
        for name in dirnames:
            if (Path(dirpath) / name).is_symlink():
                yield (base / name).as_posix()


def copy_files(source: Path, files: Iterable[str], destination: Path) -> int:
    """Copy `files` (relative to `source`) into `destination`, keeping their paths; return bytes."""
    size = 0
    for rel in files:
        src = source / rel
        dst = destination / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if dst.is_symlink() or dst.is_file():
            dst.unlink()
        if src.is_symlink():
            os.symlink(os.readlink(src), dst)
        else:
            shutil.copy2(src, dst)
            size += dst.stat().st_size
    return size


@dataclass(frozen=True)
class StoredArtifacts:
    """The artifacts of one job as kept in the store."""

    job: str
    files: tuple[str, ...]
    size: int


class ArtifactStore:
    """Artifacts of each pipeline's jobs, kept as plain directory trees under `root`.

    Layout: `root/<pipeline id>/<job name>/<files...>`. Safe for jobs of one pipeline saving and
    restoring from several threads (each job writes only its own directory).
    """

    def __init__(self, root: Path) -> None:
        self.root = root

    def _job_dir(self, pipeline_id: int, job: str) -> Path:
        return self.root / str(pipeline_id) / _safe_name(job)

    def save(
        self, pipeline_id: int, job: str, workspace: Path, files: Sequence[str]
    ) -> StoredArtifacts:
        """Copy `files` from `workspace` into the store as `job`'s artifacts (replacing any)."""
        target = self._job_dir(pipeline_id, job)
        if target.exists():
            shutil.rmtree(target)
        target.mkdir(parents=True)
        size = copy_files(workspace, files, target)
        return StoredArtifacts(job=job, files=tuple(files), size=size)

    def has(self, pipeline_id: int, job: str) -> bool:
        """Whether `job` stored artifacts in this pipeline."""
        return self._job_dir(pipeline_id, job).is_dir()

    def restore(self, pipeline_id: int, job: str, workspace: Path) -> list[str]:
        """Copy `job`'s artifacts into `workspace`; return the files restored (none if absent)."""
        source = self._job_dir(pipeline_id, job)
        if not source.is_dir():
            return []
        files = sorted(_walk(source))
        copy_files(source, files, workspace)
        return files

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

    def files(self, pipeline_id: int, job: str) -> list[str]:
        """The files `job` stored, relative to its workspace."""
        source = self._job_dir(pipeline_id, job)
        return sorted(_walk(source)) if source.is_dir() else []


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", name) or "_"


def parse_junit(xml_text: str | bytes) -> list[TestCase]:
    """Test cases of a JUnit XML report (`<testsuites>` or a single `<testsuite>`).

    Raises `ValueError` when the text is not XML.
    """
    try:
        root = ElementTree.fromstring(xml_text)
    except ElementTree.ParseError as exc:
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
