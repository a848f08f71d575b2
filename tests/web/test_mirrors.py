"""Per-repository mirrors on real git repositories: a bare origin in tmp_path, pushed to."""

from __future__ import annotations

import io
import os
import subprocess
import tempfile
import threading
from pathlib import Path

import git as gitpython
import pytest
from gitdb import IStream
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import pipeline
from pipeline.errors import LoadError
from web.errors import (
    CommitNotFoundError,
    RepositoryUnreachableError,
    UnsafeTreeError,
)
from web.mirrors import RepositoryMirror, mirror_path, shown_url

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Ada Lovelace",
    "GIT_AUTHOR_EMAIL": "ada@example.com",
    "GIT_COMMITTER_NAME": "Ada Lovelace",
    "GIT_COMMITTER_EMAIL": "ada@example.com",
    "GIT_AUTHOR_DATE": "2026-11-30T09:20:03+01:00",
    "GIT_COMMITTER_DATE": "2026-11-30T09:20:03+01:00",
    "GIT_CONFIG_NOSYSTEM": "1",
    "HOME": "/nonexistent",
}


def git(cwd: Path, *args: str, stdin: bytes | None = None) -> str:
    done = subprocess.run(
        ["git", "-c", "init.defaultBranch=main", *args],
        cwd=cwd,
        env={**os.environ, **GIT_ENV},
        input=stdin,
        capture_output=True,
        check=True,
    )
    return done.stdout.decode().strip()


class Project:
    """A bare origin repository and a working clone that commits and pushes to it."""

    def __init__(self, root: Path) -> None:
        self.origin = root / "origin.git"
        self.work = root / "work"
        self.origin.mkdir(parents=True)
        git(self.origin, "init", "--bare", "-q")
        self.work.mkdir()
        git(self.work, "init", "-q")
        git(self.work, "remote", "add", "origin", str(self.origin))

    def commit(self, files: dict[str, str | None], message: str = "change") -> str:
        """Write (or with None delete) files, commit them, return the commit id."""
        for name, text in files.items():
            path = self.work / name
            if text is None:
                path.unlink()
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        git(self.work, "add", "-A")
        git(self.work, "commit", "-q", "-m", message)
        return git(self.work, "rev-parse", "HEAD")

    def push(self, ref: str = "HEAD:refs/heads/main", *flags: str) -> None:
        git(self.work, "push", "-q", *flags, "origin", ref)


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return Project(tmp_path / "repos")


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


def mirror_of(project: Project, data_dir: Path) -> RepositoryMirror:
    return RepositoryMirror(data_dir, name="acme/shop", clone_url=str(project.origin))


PIPELINE_V1 = "test:\n  script: [echo one]\n"
PIPELINE_V2 = "test:\n  script: [echo two]\n"


def test_reads_the_pipeline_file_at_the_pushed_commit_after_the_branch_moved_on(
    project: Project, data_dir: Path
) -> None:
    first = project.commit({".kapal.yml": PIPELINE_V1})
    project.push()
    project.commit({".kapal.yml": PIPELINE_V2})
    project.push()
    with mirror_of(project, data_dir) as mirror:
        assert mirror.fetch(first, refs=["refs/heads/main"]) == first
        with mirror.planning_tree(first) as tree:
            document = tree.load()
            assert document is not None
            plan = pipeline.plan(document, pipeline.TriggerContext(branch="main"))
            assert plan.jobs[0].script == ("echo one",)
            assert tree.files == (".kapal.yml",)
            root = tree.root
        assert not root.exists()  # the temporary directory is gone


def test_fetches_a_commit_pushed_after_the_mirror_was_made(
    project: Project, data_dir: Path
) -> None:
    first = project.commit({".kapal.yml": PIPELINE_V1})
    project.push()
    with mirror_of(project, data_dir) as mirror:
        mirror.fetch(first, refs=["refs/heads/main"])
        second = project.commit({".kapal.yml": PIPELINE_V2})
        project.push()
        assert not mirror.has_commit(second)
        assert mirror.fetch(second, refs=["refs/heads/main"]) == second
        with mirror.planning_tree(second) as tree:
            assert tree.pipeline_file is not None
            assert tree.pipeline_file.read_text() == PIPELINE_V2
    assert mirror.path == mirror_path(data_dir, "acme/shop", str(project.origin))
    assert mirror.path.parent == data_dir / "mirrors"


def test_a_present_commit_fetches_only_the_refs_the_mirror_lacks(
    project: Project, data_dir: Path
) -> None:
    sha = project.commit({"a.txt": "1"})
    project.push()
    with mirror_of(project, data_dir) as mirror:
        mirror.fetch(sha, refs=["refs/heads/main"])
        project.push("HEAD:refs/heads/release")  # a new branch at the same commit
        project.commit({"b.txt": "1"})
        project.push()  # main moves on; the mirror's main stays where it was
        assert mirror.fetch(sha, refs=["refs/heads/main", "refs/heads/release"]) == sha
        assert mirror.merge_base(sha, "release") == sha
        assert git(mirror.path, "rev-parse", "refs/heads/main") == sha  # main not refetched


def test_a_tag_is_peeled_to_its_commit(project: Project, data_dir: Path) -> None:
    sha = project.commit({".kapal.yml": PIPELINE_V1})
    git(project.work, "tag", "-a", "v1.0", "-m", "release")
    project.push("refs/tags/v1.0")
    tag_object = git(project.work, "rev-parse", "v1.0")
    assert tag_object != sha
    with mirror_of(project, data_dir) as mirror:
        assert mirror.fetch(tag_object, refs=["refs/tags/v1.0"]) == sha


def test_gitlab_ci_file_when_there_is_no_kapal_file_and_includes(
    project: Project, data_dir: Path
) -> None:
    sha = project.commit(
        {
            ".gitlab-ci.yml": "include:\n  - local: ci/test.yml\nbuild:\n  script: [make]\n",
            "ci/test.yml": "unit:\n  script: [pytest]\n",
            "src/app.py": "print('hi')\n",
        }
    )
    project.push()
    with mirror_of(project, data_dir) as mirror:
        mirror.fetch(sha)
        with mirror.planning_tree(sha) as tree:
            assert tree.pipeline_file == tree.root / ".gitlab-ci.yml"
            assert sorted(tree.files) == [".gitlab-ci.yml", "ci/test.yml", "src/app.py"]
            assert not (tree.root / "src/app.py").exists()  # only pipeline files are written
            document = tree.load()
            assert document is not None and document.path == ".gitlab-ci.yml"
            plan = pipeline.plan(document, pipeline.TriggerContext(branch="main"))
            assert sorted(job.name for job in plan.jobs) == ["build", "unit"]
        with mirror.planning_tree(sha, everything=True) as tree:
            assert (tree.root / "src/app.py").read_text() == "print('hi')\n"


def test_include_errors_name_the_file_as_committed(project: Project, data_dir: Path) -> None:
    sha = project.commit({".kapal.yml": "include: missing.yml\nt:\n  script: [x]\n"})
    project.push()
    with mirror_of(project, data_dir) as mirror:
        mirror.fetch(sha)
        with mirror.planning_tree(sha) as tree:
            document = tree.load()
            assert document is not None
            with pytest.raises(pipeline.PipelineError) as caught:
                pipeline.plan(document, pipeline.TriggerContext(branch="main"))
    assert str(caught.value).startswith(".kapal.yml:1:")
    assert "'missing.yml' not found in the repository" in str(caught.value)
    assert str(tree.root) not in str(caught.value)  # the server's planning dir is not shown


def test_commit_without_a_pipeline_file(project: Project, data_dir: Path) -> None:
    sha = project.commit({"README.md": "hello\n"})
    project.push()
    with mirror_of(project, data_dir) as mirror:
        mirror.fetch(sha)
        with mirror.planning_tree(sha) as tree:
            assert tree.pipeline_file is None and tree.load() is None


def test_symlinked_pipeline_file_is_refused_without_reading_its_target(
    project: Project, data_dir: Path
) -> None:
    (project.work / ".kapal.yml").symlink_to("/etc/passwd")
    (project.work / "ci").mkdir()
    (project.work / "ci/escape.yml").symlink_to("../../../../../../etc/passwd")
    sha = project.commit({"README.md": "x\n"})
    project.push()
    with mirror_of(project, data_dir) as mirror:
        mirror.fetch(sha)
        with pytest.raises(LoadError) as caught, mirror.planning_tree(sha):
            pass
        assert str(caught.value) == (
            ".kapal.yml: .kapal.yml is a symbolic link; kapal reads the pipeline file only as a "
            "regular file committed at the repository's root (commit the file itself)"
        )
        assert "root:" not in str(caught.value)
        # written out, symlinks stay symlinks, their targets untouched and unread
        target = data_dir / "out"
        target.mkdir()
        mirror.materialise(sha, target)
        assert os.readlink(target / ".kapal.yml") == "/etc/passwd"
        assert os.readlink(target / "ci/escape.yml") == "../../../../../../etc/passwd"


def test_symlink_to_a_directory_is_not_written_through(project: Project, tmp_path: Path) -> None:
    """A crafted tree holding `a` as a symlink to a host directory and `a/evil` as a file."""
    outside = tmp_path / "outside"
    outside.mkdir()
    link = git(project.work, "hash-object", "-w", "--stdin", stdin=str(outside).encode())
    evil = git(project.work, "hash-object", "-w", "--stdin", stdin=b"pwned\n")
    subtree = git(project.work, "mktree", stdin=f"100644 blob {evil}\tevil\n".encode())
    # two entries named `a`: git's own tools never make this, a hostile server can
    raw = b"120000 a\0" + bytes.fromhex(link) + b"40000 a\0" + bytes.fromhex(subtree)
    tree = git(project.work, "hash-object", "-w", "-t", "tree", "--literally", "--stdin", stdin=raw)
    sha = git(project.work, "commit-tree", tree, "-m", "hostile")
    git(project.work, "update-ref", "refs/heads/main", sha)
    project.push("refs/heads/main")
    with RepositoryMirror(tmp_path / "data", name="x", clone_url=str(project.origin)) as mirror:
        mirror.fetch(sha)
        destination = tmp_path / "dest"
        destination.mkdir()
        with pytest.raises(UnsafeTreeError) as caught:
            mirror.materialise(sha, destination)
        assert caught.value.status == 422
        assert "passes through 'a', which is a symlink or a file" in str(caught.value)
    assert list(outside.iterdir()) == []


def test_dot_dot_in_a_tree_is_refused(project: Project, tmp_path: Path) -> None:
    blob = git(project.work, "hash-object", "-w", "--stdin", stdin=b"pwned\n")
    raw = b"100644 ..\0" + bytes.fromhex(blob)
    tree = git(project.work, "hash-object", "-w", "-t", "tree", "--literally", "--stdin", stdin=raw)
    sha = git(project.work, "commit-tree", tree, "-m", "hostile")
    git(project.work, "update-ref", "refs/heads/main", sha)
    project.push("refs/heads/main")
    with RepositoryMirror(tmp_path / "data", name="x", clone_url=str(project.origin)) as mirror:
        mirror.fetch(sha)
        with pytest.raises(UnsafeTreeError) as caught, mirror.planning_tree(sha):
            pass
    assert "'..'" in str(caught.value)


def test_changed_files_between_before_and_after(project: Project, data_dir: Path) -> None:
    before = project.commit({"a.txt": "1", "b.txt": "1", "old.txt": "x"})
    project.push()
    project.commit({"a.txt": "2"})
    git(project.work, "mv", "old.txt", "new.txt")
    after = project.commit({})
    project.push()
    with mirror_of(project, data_dir) as mirror:
        mirror.fetch(after, refs=["refs/heads/main"])
        assert sorted(mirror.changed_files(after, before=before)) == ["a.txt", "new.txt", "old.txt"]


def test_changed_files_of_a_new_branch_against_the_default_branch(
    project: Project, data_dir: Path
) -> None:
    project.commit({"a.txt": "1"})
    project.push()
    git(project.work, "checkout", "-q", "-b", "feature")
    project.commit({"b.txt": "1"})
    sha = project.commit({"c.txt": "1"})
    project.push("HEAD:refs/heads/feature")
    with mirror_of(project, data_dir) as mirror:
        mirror.fetch(sha, refs=["refs/heads/feature", "refs/heads/main"])
        zero = "0" * 40
        assert mirror.changed_files(sha, before=zero, base_branch="main") == ("b.txt", "c.txt")
        # without a base branch: the commit alone
        assert mirror.changed_files(sha, before=zero) == ("c.txt",)
        # an unknown before (force-pushed away) falls back the same way
        assert mirror.changed_files(sha, before="1" * 40, base_branch="main") == (
            "b.txt",
            "c.txt",
        )
        assert mirror.merge_base(sha, "main") == git(project.work, "rev-parse", "main")


def test_changed_files_of_the_first_commit(project: Project, data_dir: Path) -> None:
    sha = project.commit({"a.txt": "1", "dir/b.txt": "2"})
    project.push()
    with mirror_of(project, data_dir) as mirror:
        mirror.fetch(sha)
        assert mirror.changed_files(sha, before="0" * 40) == ("a.txt", "dir/b.txt")


def test_commit_facts(project: Project, data_dir: Path) -> None:
    sha = project.commit({"a.txt": "1"}, message="Fix the prices\n\nRounding was off.")
    project.push()
    with mirror_of(project, data_dir) as mirror:
        mirror.fetch(sha)
        facts = mirror.commit_facts(sha)
    assert facts.message == "Fix the prices\n\nRounding was off."
    assert facts.author == "Ada Lovelace <ada@example.com>"
    assert facts.timestamp == "2026-11-30T09:20:03+01:00"


def test_unknown_commit_is_422(project: Project, data_dir: Path) -> None:
    project.commit({"a.txt": "1"})
    project.push()
    with mirror_of(project, data_dir) as mirror, pytest.raises(CommitNotFoundError) as caught:
        mirror.fetch("1234567890" * 4, refs=["refs/heads/main"])
    assert caught.value.status == 422
    assert str(caught.value) == (
        f"commit {'1234567890' * 4} is not in {project.origin} (fetched refs/heads/main); "
        "was it force-pushed away?"
    )


def test_unreachable_clone_url_is_502_and_leaves_no_mirror(tmp_path: Path) -> None:
    url = f"file://{tmp_path}/no-such-repository.git"
    with RepositoryMirror(tmp_path / "data", name="acme/shop", clone_url=url) as mirror:
        with pytest.raises(RepositoryUnreachableError) as caught:
            mirror.fetch("a" * 40)
        assert caught.value.status == 502
        assert str(caught.value).startswith(f"cannot clone {url}: ")
        assert "does not appear to be a git repository" in str(caught.value)
        assert not mirror.path.exists()


def test_credentials_in_the_clone_url_stay_out_of_messages() -> None:
    url = "https://kapal:glpat-SECRET@127.0.0.1:1/acme/shop.git"
    assert shown_url(url) == "https://kapal@127.0.0.1:1/acme/shop.git"
    with RepositoryMirror(Path("/nonexistent"), name="x", clone_url=url) as mirror:
        assert "SECRET" not in str(mirror.path)


def test_credentials_are_not_in_a_clone_error(tmp_path: Path) -> None:
    url = "https://kapal:glpat-SECRET@127.0.0.1:9/acme/shop.git"  # nothing listens on port 9
    mirror = RepositoryMirror(tmp_path / "data", name="x", clone_url=url, fetch_timeout=60)
    with mirror, pytest.raises(RepositoryUnreachableError) as caught:
        mirror.fetch("a" * 40)
    assert "SECRET" not in str(caught.value)
    assert "https://kapal@127.0.0.1:9/acme/shop.git" in str(caught.value)


def test_option_like_clone_url_is_refused(tmp_path: Path) -> None:
    mirror = RepositoryMirror(tmp_path / "d", name="x", clone_url="--upload-pack=touch /tmp/x")
    with mirror, pytest.raises(RepositoryUnreachableError) as caught:
        mirror.fetch("a" * 40)
    assert "is refused" in str(caught.value)


def test_concurrent_deliveries_fetch_one_after_the_other(project: Project, data_dir: Path) -> None:
    shas = [project.commit({"a.txt": str(n), ".kapal.yml": PIPELINE_V1}) for n in range(3)]
    project.push()
    errors: list[BaseException] = []
    results: list[str] = []

    def deliver(sha: str) -> None:
        try:
            with mirror_of(project, data_dir) as mirror:
                results.append(mirror.fetch(sha, refs=["refs/heads/main"]))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=deliver, args=(sha,)) for sha in shas * 2]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(results) == sorted(shas * 2)


# Hostile trees, written straight into the mirror's object store: names git's own tools never
# make ("..", ".git", "a/b", duplicates), symlinks out of the destination, missing objects.
NAMES = [b"a", b"b", b"c.yml", b".kapal.yml", b"..", b".", b".git", b"", b"a/b"]
LINK_TARGETS = ["OUTSIDE", "../outside", "../../outside", "a", "/", ".", "a/../../outside"]
Node = tuple[bytes, bytes, object]  # (mode, name, content: bytes | list[Node] | None)

nodes = st.recursive(
    st.tuples(st.just(b"100644"), st.sampled_from(NAMES), st.binary(max_size=8))
    | st.tuples(st.just(b"100755"), st.sampled_from(NAMES), st.binary(max_size=8))
    | st.tuples(st.just(b"120000"), st.sampled_from(NAMES), st.sampled_from(LINK_TARGETS))
    | st.tuples(st.just(b"160000"), st.sampled_from(NAMES), st.none())
    | st.tuples(st.just(b"100644"), st.sampled_from(NAMES), st.just("MISSING")),
    lambda children: st.tuples(
        st.just(b"40000"), st.sampled_from(NAMES), st.lists(children, max_size=4)
    ),
    max_leaves=8,
)


def _store(repo: gitpython.Repo, kind: bytes, data: bytes) -> bytes:
    return repo.odb.store(IStream(kind, len(data), io.BytesIO(data))).binsha  # type: ignore[no-any-return]


def _tree(repo: gitpython.Repo, entries: list[Node], outside: Path) -> bytes:
    raw = b""
    for mode, name, content in entries:
        if mode == b"40000":
            object_id = _tree(repo, content, outside)  # type: ignore[arg-type]
        elif mode == b"160000" or content == "MISSING":
            object_id = bytes(range(20))
        elif mode == b"120000":
            object_id = _store(
                repo, b"blob", str(content).replace("OUTSIDE", str(outside)).encode()
            )
        else:
            object_id = _store(repo, b"blob", content)  # type: ignore[arg-type]
        raw += mode + b" " + name + b"\0" + object_id
    return _store(repo, b"tree", raw)


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(entries=st.lists(nodes, max_size=6))
@example(  # a symlink out, then a directory of the same name holding a file
    entries=[(b"120000", b"a", "OUTSIDE"), (b"40000", b"a", [(b"100644", b"evil", b"x")])]
)
@example(entries=[(b"40000", b"..", [(b"100644", b"evil", b"x")])])
@example(
    entries=[(b"40000", b"a", [(b"40000", b"..", [(b"40000", b"..", [(b"100644", b"e", b"")])])])]
)
@example(entries=[(b"120000", b"a", "../outside"), (b"100644", b"a/evil", b"x")])
@example(entries=[(b"40000", b".git", [(b"100644", b"config", b"[core]\n")])])
def test_a_hostile_tree_is_written_inside_its_directory_or_refused(
    project: Project, tmp_path: Path, entries: list[Node]
) -> None:
    if not (project.work / "README.md").exists():  # the first example makes the origin
        project.commit({"README.md": "x\n"})
        project.push()
    sha = git(project.work, "rev-parse", "HEAD")
    work = Path(tempfile.mkdtemp(dir=tmp_path))
    outside = work / "outside"
    outside.mkdir()
    (outside / "canary").write_text("untouched\n")
    destination = work / "destination"
    destination.mkdir()
    with mirror_of(project, tmp_path / "data") as mirror:
        mirror.fetch(sha)
        repo = gitpython.Repo(mirror.path)
        try:
            tree = _tree(repo, entries, outside).hex()
            stamp = b"author A <a@example.com> 0 +0000\ncommitter A <a@example.com> 0 +0000\n"
            commit = _store(repo, b"commit", f"tree {tree}\n".encode() + stamp + b"\nhostile\n")
        finally:
            repo.close()
        try:
            mirror.materialise(commit.hex(), destination)
            with mirror.planning_tree(commit.hex()) as planned:
                assert planned.root.is_dir()
        except (UnsafeTreeError, LoadError):
            pass
    assert sorted(p.name for p in work.iterdir()) == ["destination", "outside"]
    assert sorted(p.name for p in outside.iterdir()) == ["canary"]
    assert (outside / "canary").read_text() == "untouched\n"
    for path in destination.rglob("*"):
        if not path.is_symlink():
            assert path.resolve().is_relative_to(destination.resolve())
