"""Workspaces: copying the working tree, cloning at a commit (real git)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from runner.engine.workspace import GitCommitSource, clone_at_commit, copy_working_tree
from runner.errors import WorkspaceError


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.email=t@example.test", "-c", "user.name=t", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    (root / ".gitignore").write_text(".venv/\n")
    (root / "app.py").write_text("v1\n")
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "one")
    return root


def test_copy_takes_uncommitted_files_but_not_ignored_ones(repo: Path, tmp_path: Path) -> None:
    (repo / "app.py").write_text("v2 uncommitted\n")
    (repo / "new.txt").write_text("untracked\n")
    (repo / ".venv").mkdir()
    (repo / ".venv" / "big").write_text("x")
    dest = tmp_path / "ws"
    copy_working_tree(repo, dest)
    assert sorted(p.name for p in dest.iterdir()) == [".gitignore", "app.py", "new.txt"]
    assert (dest / "app.py").read_text() == "v2 uncommitted\n"
    (dest / "app.py").write_text("a job wrote here")
    assert (repo / "app.py").read_text() == "v2 uncommitted\n"  # the user's tree is untouched


def test_copy_of_a_plain_directory(tmp_path: Path) -> None:
    src = tmp_path / "plain"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "f").write_text("x")
    (src / ".git").mkdir()
    assert copy_working_tree(src, tmp_path / "ws") == 1
    assert (tmp_path / "ws" / "sub" / "f").read_text() == "x"


def test_clone_at_a_commit_is_shallow(repo: Path, tmp_path: Path) -> None:
    first = git(repo, "rev-parse", "HEAD")
    (repo / "app.py").write_text("v2\n")
    git(repo, "commit", "-q", "-am", "two")
    clone = clone_at_commit(f"file://{repo}", first, tmp_path / "clone")
    try:
        assert clone.head.commit.hexsha == first
        assert (tmp_path / "clone" / "app.py").read_text() == "v1\n"
        assert git(tmp_path / "clone", "rev-parse", "--is-shallow-repository") == "true"
    finally:
        clone.close()


def test_clone_errors_say_what_is_wrong(repo: Path, tmp_path: Path) -> None:
    with pytest.raises(WorkspaceError, match=r"commit 0{40} is not in"):
        clone_at_commit(str(repo), "0" * 40, tmp_path / "c1")
    with pytest.raises(WorkspaceError, match="cannot reach the git remote"):
        clone_at_commit(str(tmp_path / "nowhere"), "0" * 40, tmp_path / "c2")


def test_git_commit_source_fills_a_workspace(repo: Path, tmp_path: Path) -> None:
    sha = git(repo, "rev-parse", "HEAD")
    GitCommitSource(str(repo), sha)(tmp_path / "ws")
    assert (tmp_path / "ws" / "app.py").read_text() == "v1\n"


def test_submodules_are_fetched_only_when_asked(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # git refuses file:// submodules by default; these are local repositories
    monkeypatch.setenv("GIT_CONFIG_COUNT", "1")
    monkeypatch.setenv("GIT_CONFIG_KEY_0", "protocol.file.allow")
    monkeypatch.setenv("GIT_CONFIG_VALUE_0", "always")
    lib = tmp_path / "lib"
    lib.mkdir()
    git(lib, "init", "-q", "-b", "main")
    (lib / "lib.py").write_text("shared\n")
    git(lib, "add", ".")
    git(lib, "commit", "-q", "-m", "lib")
    git(repo, "submodule", "-q", "add", f"file://{lib}", "vendor/lib")
    git(repo, "commit", "-q", "-m", "add lib")
    sha = git(repo, "rev-parse", "HEAD")

    GitCommitSource(f"file://{repo}", sha)(tmp_path / "without")
    assert not (tmp_path / "without" / "vendor" / "lib" / "lib.py").exists()
    GitCommitSource(f"file://{repo}", sha, submodules=True)(tmp_path / "with")
    assert (tmp_path / "with" / "vendor" / "lib" / "lib.py").read_text() == "shared\n"
