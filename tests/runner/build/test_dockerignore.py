""".dockerignore patterns: Go filepath.Match plus `**`, `!` exceptions, last match wins."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from runner.build.dockerignore import DockerIgnore
from runner.build.trees import ContextTree


@pytest.mark.parametrize(
    ("patterns", "path", "excluded"),
    [
        ("*.md", "README.md", True),
        ("*.md", "docs/README.md", False),  # * does not cross /
        ("**/*.md", "docs/deep/README.md", True),
        ("**/*.md", "README.md", True),  # ** matches zero directories
        ("docs", "docs/a/b.txt", True),  # a directory excludes what is under it
        ("/build", "build/x", True),  # leading / is the context root
        ("./build", "build/x", True),
        ("temp?", "temp1", True),
        ("temp?", "temp12", False),
        ("[a-c].txt", "b.txt", True),
        ("[^a-c].txt", "d.txt", True),
        ("[^a-c].txt", "a.txt", False),
        ("*.log\n!keep.log", "keep.log", False),
        ("*.log\n!keep.log", "other.log", True),
        ("!keep.log\n*.log", "keep.log", True),  # last match wins
        ("# comment\n\n  node_modules  ", "node_modules/x/y.js", True),
        ("secret\\*", "secret*", True),
        ("a/**/b", "a/x/y/b", True),
        ("a/**/b", "a/b", True),
        ("*", "anything", True),
        # an exception matching a parent directory re-includes what is beneath it
        ("docs/**\n!docs/public", "docs/public/a.txt", False),
        ("docs/**\n!docs/public", "docs/public/deep/er/b.txt", False),
        ("docs/**\n!docs/public", "docs/public", False),
        ("docs/**\n!docs/public", "docs/private.txt", True),
        ("docs/**\n!docs/public", "docs/publicity/c.txt", True),
        ("docs\n!docs/public\ndocs/public/secret", "docs/public/secret/k", True),
        ("!docs/public\ndocs", "docs/public/a.txt", True),  # the exception came first
        # what Python's re keeps for nested sets and set operations is literal to Go
        ("[[]", "[", True),
        ("[[]", "a", False),
        ("[a&&b]", "&", True),
        ("[a&&b]", "c", False),
        ("[x||y]", "|", True),
        ("[a~~b]", "~", True),
        ("[+--]", ",", True),  # a range from + to -
        ("[+--]", ".", False),
        ("[!a-c]", "d", True),
    ],
)
def test_patterns(patterns: str, path: str, excluded: bool) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # re warns about `[[` and `&&` it would read otherwise
        assert DockerIgnore.parse(patterns).excluded(path) is excluded


def test_exception_inside_excluded_directory_is_walked(tmp_path: Path) -> None:
    (tmp_path / "docs" / "sub").mkdir(parents=True)
    (tmp_path / "docs" / "a.txt").write_text("a")
    (tmp_path / "docs" / "sub" / "keep.md").write_text("k")
    (tmp_path / ".dockerignore").write_text("docs\n!docs/sub/keep.md\n")
    tree = ContextTree(tmp_path, DockerIgnore.load(tmp_path))
    assert tree.locate("docs/a.txt") is None
    assert tree.locate("docs/sub/keep.md") is not None
    assert "docs" in tree.listdir("")
    assert tree.listdir("docs") == ["sub"]


def test_no_dockerignore_means_nothing_excluded(tmp_path: Path) -> None:
    assert DockerIgnore.load(tmp_path).excluded("anything") is False


def test_reincluded_directory_is_sent_whole(tmp_path: Path) -> None:
    for name in ("docs/a.md", "docs/public/index.html", "docs/public/img/logo.png", "src/x.py"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(name)
    (tmp_path / ".dockerignore").write_text("docs/**\n!docs/public\n")
    tree = ContextTree(tmp_path, DockerIgnore.load(tmp_path))
    assert tree.listdir("docs") == ["public"]
    assert tree.listdir("docs/public") == ["img", "index.html"]
    assert tree.locate("docs/public/img/logo.png") is not None
    assert tree.locate("docs/a.md") is None
