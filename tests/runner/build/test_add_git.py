"""ADD of a git repository (BuildKit's `ADD https://…/repo.git#ref:subdir /dest`), from a real
repository served over HTTP, through the build's network."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from runner.build.gitsource import GitSource, GitSourceError, parse_git_source
from runner.build.trees import LayeredTree
from runner.errors import DockerfileError
from tests.runner.build.conftest import BuildHelper, serve_directory

BASE = "busybox:latest"


def _git(cwd: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.test", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
    )


@pytest.fixture
def served_repository(tmp_path: Path) -> Iterator[str]:
    """A repository (main: README and sub/; tag v1: an older README) served by dumb HTTP."""
    work = tmp_path / "work"
    work.mkdir()
    _git(work, "init", "-q", "-b", "main")
    (work / "README").write_text("v1\n")
    _git(work, "add", ".")
    _git(work, "commit", "-q", "-m", "one")
    _git(work, "tag", "v1")
    (work / "README").write_text("v2\n")
    (work / "sub").mkdir()
    (work / "sub" / "inner.txt").write_text("inner\n")
    (work / "sub" / "link").symlink_to("/etc/passwd")
    _git(work, "add", ".")
    _git(work, "commit", "-q", "-m", "two")
    root = tmp_path / "served"
    root.mkdir()
    _git(root, "clone", "-q", "--bare", str(work), "repo.git")
    _git(root / "repo.git", "update-server-info")

    with serve_directory(root) as port:
        yield f"http://127.0.0.1:{port}/repo.git"


def test_add_git_refs_subdirs_and_keep_git_dir(
    builds: BuildHelper, busybox_image: str, served_repository: str
) -> None:
    url = served_repository
    dockerfile = f"""
        FROM {BASE}
        ADD {url} /src
        ADD {url}#v1 /tagged/
        ADD {url}#main:sub /sub
        ADD --keep-git-dir=true {url}#v1 /kept
        """
    result = builds.build(builds.context(dockerfile), network="host")
    rootfs = LayeredTree(tuple(builds.store.unpacked_layers(result.image)))

    def read(path: str) -> str | None:
        host = rootfs.locate(path)
        return None if host is None else host.read_text()

    assert read("src/README") == "v2\n" and read("src/sub/inner.txt") == "inner\n"
    assert rootfs.locate("src/.git") is None
    assert read("tagged/README") == "v1\n" and rootfs.locate("tagged/sub") is None
    assert read("sub/inner.txt") == "inner\n" and rootfs.locate("sub/README") is None
    link = rootfs.locate("sub/link")
    assert link is not None and link.is_symlink()  # kept as a link, never the host's file
    assert rootfs.locate("kept/.git/HEAD") is not None


def test_add_git_needs_the_network_and_a_ref_that_exists(
    builds: BuildHelper, busybox_image: str, served_repository: str
) -> None:
    ctx = builds.context(f"FROM {BASE}\nADD {served_repository} /src\n")
    with pytest.raises(DockerfileError, match=r"Dockerfile:2: ADD: .*no network"):
        builds.build(ctx, network="none")
    missing = builds.context(f"FROM {BASE}\nADD {served_repository}#nope /src\n")
    with pytest.raises(DockerfileError, match="no branch, tag or commit 'nope'"):
        builds.build(missing, network="host")


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("https://example.test/r.git", GitSource("https://example.test/r.git", "", "")),
        (
            "https://example.test/r.git#v1:a/../b",
            GitSource("https://example.test/r.git", "v1", "b"),
        ),
        ("git://example.test/r#main", GitSource("git://example.test/r", "main", "")),
        ("https://example.test/file.tar.gz", None),
        ("src/", None),
    ],
)
def test_parse_git_source(text: str, parsed: GitSource | None) -> None:
    assert parse_git_source(text) == parsed


@pytest.mark.parametrize(
    "text",
    ["git@example.test:r.git", "ssh://example.test/r.git", "https://e.test/r.git#--upload-pack=x"],
)
def test_unusable_git_sources_are_refused(text: str) -> None:
    with pytest.raises(GitSourceError):
        parse_git_source(text)
