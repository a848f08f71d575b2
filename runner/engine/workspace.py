"""Job workspaces: a copy of the working tree (`kapal run`) or a clone at a commit (server runs)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.records import record
from runner.errors import WorkspaceError

if TYPE_CHECKING:
    import git


def working_tree_files(root: Path) -> list[Path]:
    """Files of the working tree under `root`, relative, committed or not, without `.git`.

    Inside a git repository this is what git would see: tracked files plus untracked ones that
    `.gitignore` does not exclude (so a local `.venv` is not copied). Elsewhere it is every file.
    """
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=root,
            capture_output=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        files: list[Path] = []
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = [d for d in dirnames if d != ".git"]
            base = Path(dirpath).relative_to(root)
            files.extend(base / name for name in filenames)
        return sorted(files)
    seen = {Path(p) for p in listed.decode("utf-8", "surrogateescape").split("\0") if p}
    return sorted(
        p
        for p in seen
        if ".git" not in p.parts and ((root / p).is_symlink() or (root / p).exists())
    )


def copy_working_tree(source: Path, destination: Path) -> int:
    """Copy the working tree at `source` into `destination` (created); return the file count.

    A real copy, not links: a job that writes into its workspace cannot damage the user's tree.
    """
    if not source.is_dir():
        raise WorkspaceError(f"{source}: not a directory; pass the project directory to kapal run")
    files = working_tree_files(source)
    destination.mkdir(parents=True, exist_ok=True)
    try:
        for rel in files:
            src = source / rel
            dst = destination / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            if src.is_symlink():
                os.symlink(os.readlink(src), dst)
            elif src.is_dir():
                # a submodule or nested repository: copy it whole, without its .git
                shutil.copytree(src, dst, symlinks=True, ignore=shutil.ignore_patterns(".git"))
            else:
                shutil.copy2(src, dst)
    except OSError as exc:
        raise WorkspaceError(
            f"cannot copy {source} into the workspace {destination}: {exc}; "
            "check permissions and free space"
        ) from None
    return len(files)


def clone_at_commit(
    url: str, commit: str, destination: Path, *, submodules: bool = False
) -> git.Repo:
    """Clone `url` into `destination` with `commit` checked out, shallow when the remote allows.

    Raises `WorkspaceError` when the remote cannot be reached or has no such commit.
    """
    import git  # GitPython: only a clone needs it (~30 ms to import, more than `kapal run` starts)

    destination.mkdir(parents=True, exist_ok=True)
    repo = git.Repo.init(destination)
    try:
        repo.create_remote("origin", url)
        try:
            repo.git.fetch("--depth", "1", "origin", commit)
        except git.GitCommandError as shallow_exc:
            if _remote_unreachable(shallow_exc):
                raise WorkspaceError(
                    f"cannot reach the git remote {url}: {_git_message(shallow_exc)}; "
                    "check the URL and the network"
                ) from None
            # the remote refuses to serve a commit by id: fetch everything, then look for it
            try:
                repo.git.fetch("origin", "+refs/heads/*:refs/remotes/origin/*", "--tags")
            except git.GitCommandError as exc:
                raise WorkspaceError(
                    f"cannot fetch from the git remote {url}: {_git_message(exc)}"
                ) from None
        try:
            repo.git.checkout("--detach", "--force", commit)
        except git.GitCommandError:
            raise WorkspaceError(
                f"commit {commit} is not in {url}; was it pushed? (a force-push removes commits)"
            ) from None
        if submodules:
            try:
                repo.git.submodule("update", "--init", "--recursive", "--depth", "1")
            except git.GitCommandError as exc:
                raise WorkspaceError(
                    f"cannot fetch the submodules of {url}: {_git_message(exc)}"
                ) from None
    except BaseException:
        repo.close()
        raise
    return repo


def _git_message(exc: git.GitCommandError) -> str:
    stderr = str(exc.stderr or "").strip()
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    text = " ".join(lines).replace("stderr: ", "").strip("' ")
    return text or str(exc)


def _remote_unreachable(exc: git.GitCommandError) -> bool:
    message = str(exc.stderr or "").lower()
    return any(
        marker in message
        for marker in (
            "does not appear to be a git repository",
            "could not resolve host",
            "could not read from remote",
            "connection refused",
            "repository not found",
            "unable to access",
            "failed to connect",
        )
    )


@record
class WorkingTreeSource:
    """A `WorkspaceSource` for `kapal run`: the working tree at `path`, committed or not."""

    path: Path

    def __call__(self, destination: Path) -> None:
        """Copy the working tree into `destination`."""
        copy_working_tree(self.path, destination)


@record
class GitCommitSource:
    """A `WorkspaceSource` for server runs: `url` cloned at `commit` (shallow where possible)."""

    url: str
    commit: str
    submodules: bool = False

    def __call__(self, destination: Path) -> None:
        """Clone into `destination`."""
        clone_at_commit(self.url, self.commit, destination, submodules=self.submodules).close()


@record
class InPlaceTree:
    """The working tree at `path` used as every job's workspace, uncopied (`kapal run
    --in-place`): what jobs write, delete or restore (artifacts, caches) changes the tree."""

    path: Path

    def checked(self) -> Path:
        """The tree's absolute path; `WorkspaceError` when it is not a directory."""
        if not self.path.is_dir():
            raise WorkspaceError(
                f"{self.path}: not a directory; pass the project directory to kapal run"
            )
        return self.path.resolve()
