"""Build memos and .dockerignore: what the build cannot see never makes the memo miss.

The context here is what a real project is: a git repository with `.git` in its .dockerignore,
an editor's swap files, a `node_modules` of thousands of files. `git status`, a commit or a
touched ignored file leave the memo answering; a change the build can see (an included file, a
file a `!` pattern brings back, the .dockerignore itself) still misses, and the image is then the
one a `--no-cache` build makes. The hypothesis test compares the memo's entries with the
builder's own view of the context (`ContextTree`) for random trees and patterns.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from runner.build import cli as build_cli
from runner.build import memo
from runner.build.dockerignore import DockerIgnore
from runner.build.trees import ContextTree
from runner.images import ImageStore
from runner.runtime.embedded import EmbeddedBackend
from tests.runner.build.test_memo import Kapal, file_in_image, settle

COPY_ALL = "FROM {base}\nCOPY . /app/\n"


@pytest.fixture
def kapal(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], kapal_data_dir: Path
) -> Kapal:
    return Kapal(monkeypatch, capsys, kapal_data_dir)


def git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=repo,
        check=True,
        capture_output=True,
    )


def write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)


def snapshot_paths(context: Path) -> set[str]:
    """The paths of the entries a memo snapshot of `context` holds."""
    snap = memo.snapshot(
        cache_root=context.parent / "cache",
        images_root=context.parent / "images",
        context=context,
        dockerfile=context / "Dockerfile",
        settings={},
    )
    assert snap is not None
    return {str(entry[0]) for entry in snap.inputs["tree"]}


def test_git_operations_and_ignored_files_leave_the_memo_answering(
    kapal: Kapal, tmp_path: Path, busybox_image: str
) -> None:
    repo = tmp_path / "repo"
    write(
        repo,
        {
            "Dockerfile": COPY_ALL.format(base=busybox_image),
            ".dockerignore": ".git\n**/*.swp\nnode_modules\nbuild/\n",
            "README": "readme\n",
            "src/main.c": "int main(void) { return 0; }\n",
        },
    )
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "first")
    for package in range(30):  # an ignored directory of thousands of files
        write(repo, {f"node_modules/p{package}/f{i}.js": "x\n" for i in range(100)})
    settle()
    first, _ = kapal.build(str(repo))
    assert kapal.builder_runs == 1

    def still_answered(what: str) -> None:
        again, _ = kapal.build(str(repo))
        assert (again, kapal.builder_runs) == (first, 1), what

    still_answered("no change")
    git(repo, "status")  # rewrites .git/index
    still_answered("git status")
    git(repo, "commit", "-q", "--allow-empty", "-m", "empty")
    still_answered("an empty commit")
    (repo / "src" / "util.c").write_text("int util;\n")
    git(repo, "add", "src/util.c")
    git(repo, "commit", "-q", "-m", "util")
    (repo / "src" / "util.c").unlink()  # committed, then gone from the work tree again
    git(repo, "status")
    still_answered("a commit of a file since removed")
    write(repo, {".README.swp": "swap\n", "src/.main.c.swp": "swap\n"})  # an editor's
    still_answered("swap files")
    write(repo, {"build/out.o": "object\n", "node_modules/p3/new.js": "y\n"})
    still_answered("ignored build output")
    os.utime(repo / "node_modules" / "p0" / "f0.js")
    still_answered("a touched ignored file")
    (repo / "README").write_text("changed\n")  # the build sees this one
    git(repo, "commit", "-q", "-am", "readme")
    settle()
    second, _ = kapal.build(str(repo))
    assert kapal.builder_runs == 2
    assert second != first
    fresh, _ = kapal.build("--no-cache", str(repo))
    assert fresh == second  # the image the builder makes from scratch
    assert kapal.build(str(repo))[0] == second
    assert kapal.builder_runs == 3


@pytest.mark.parametrize(
    "change",
    [
        "edit an included file",
        "edit a file a ! pattern brings back",
        "edit the .dockerignore",
        "edit the Dockerfile it excludes",
        "chmod an excluded directory holding an included file",
    ],
)
def test_what_the_build_sees_still_misses(
    kapal: Kapal,
    tmp_path: Path,
    busybox_image: str,
    kapal_data_dir: Path,
    embedded_backend: EmbeddedBackend,
    change: str,
) -> None:
    ctx = tmp_path / "ctx"
    write(
        ctx,
        {
            "Dockerfile": COPY_ALL.format(base=busybox_image),
            # excludes itself and the Dockerfile: Docker (and kapal) still read both
            ".dockerignore": "docs\n!docs/keep.md\n.dockerignore\nDockerfile\n*.log\n",
            "a.txt": "a\n",
            "docs/keep.md": "keep\n",
            "docs/drop.md": "drop\n",
            "docs/more/drop.md": "drop\n",
        },
    )
    settle()
    first, _ = kapal.build(str(ctx))
    write(ctx, {"docs/drop.md": "dropped, changed\n", "x.log": "log\n"})
    (ctx / "docs" / "more").chmod(0o700)
    again, _ = kapal.build(str(ctx))
    assert (again, kapal.builder_runs) == (first, 1)  # excluded: the memo answers
    if change == "edit an included file":
        (ctx / "a.txt").write_text("b\n")
    elif change == "edit a file a ! pattern brings back":
        (ctx / "docs" / "keep.md").write_text("kept, changed\n")
    elif change == "edit the .dockerignore":
        with (ctx / ".dockerignore").open("a") as dockerignore:
            dockerignore.write("a.txt\n")
    elif change == "edit the Dockerfile it excludes":
        (ctx / "Dockerfile").write_text(COPY_ALL.format(base=busybox_image) + "ENV E=1\n")
    else:
        (ctx / "docs").chmod(0o700)  # the builder copies docs/ (for keep.md) with its mode
    settle()
    second, _ = kapal.build(str(ctx))
    assert kapal.builder_runs == 2
    assert second != first
    assert kapal.build("--no-cache", str(ctx))[0] == second
    store = ImageStore(kapal_data_dir / "images")
    kept = file_in_image(store, second, "/app/docs/keep.md", embedded_backend)
    assert kept == ("kept, changed" if "! pattern" in change else "keep")


def test_a_dockerfile_in_an_excluded_directory_is_still_watched(
    kapal: Kapal, tmp_path: Path, busybox_image: str
) -> None:
    ctx = tmp_path / "ctx"
    write(
        ctx,
        {
            "ci/Dockerfile": COPY_ALL.format(base=busybox_image),
            "ci/notes.txt": "notes\n",
            ".dockerignore": "ci\n",
            "a.txt": "a\n",
        },
    )
    settle()
    first, _ = kapal.build("-f", str(ctx / "ci" / "Dockerfile"), str(ctx))
    (ctx / "ci" / "notes.txt").write_text("other notes\n")  # excluded: not an input
    assert kapal.build("-f", str(ctx / "ci" / "Dockerfile"), str(ctx))[0] == first
    assert kapal.builder_runs == 1
    (ctx / "ci" / "Dockerfile").write_text(COPY_ALL.format(base=busybox_image) + "ENV CI=1\n")
    second, _ = kapal.build("-f", str(ctx / "ci" / "Dockerfile"), str(ctx))  # at once
    assert kapal.builder_runs == 2
    assert second != first
    assert kapal.build("--no-cache", "-f", str(ctx / "ci" / "Dockerfile"), str(ctx))[0] == second


def test_a_symlink_into_an_excluded_path_is_absent_for_the_builder_and_the_memo(
    kapal: Kapal,
    tmp_path: Path,
    kapal_data_dir: Path,
    busybox_image: str,
) -> None:
    # `alias -> src` makes `alias/ex/f` a path no pattern excludes, but it resolves through
    # `src/ex`, an excluded symlink docker build never sends: that COPY fails wherever the link
    # points, and a failed build leaves no memo to answer the next one. `COPY alias/ /a/`
    # copies src without `ex`, so retargeting the excluded link leaves the image as it was,
    # whether the memo answers or the builder runs again. (The memo still keeps every entry of
    # a context with a link through an excluded path, which costs a miss, never a wrong hit.)
    ctx = tmp_path / "ctx"
    write(
        ctx,
        {
            "Dockerfile": f"FROM {busybox_image}\nCOPY alias/ /a/\n",
            "through.Dockerfile": f"FROM {busybox_image}\nCOPY alias/ex/f /f\n",
            ".dockerignore": "src/ex\n",
            "one/f": "one\n",
            "two/f": "two\n",
            "src/x": "x\n",
        },
    )
    (ctx / "alias").symlink_to("src")
    (ctx / "src" / "ex").symlink_to("../one")
    settle()
    assert "src/ex" in snapshot_paths(ctx)
    first, _ = kapal.build(str(ctx))
    store = ImageStore(kapal_data_dir / "images")
    layer = store.unpacked_layers(store.get(first))[-1]
    assert sorted(os.listdir(layer / "a")) == ["x"]
    through = ["--network", "none", "-f", str(ctx / "through.Dockerfile"), str(ctx)]
    for target in ["../one", "../two"]:
        runs = kapal.builder_runs
        (ctx / "src" / "ex").unlink()
        (ctx / "src" / "ex").symlink_to(target)
        settle()
        kapal.capsys.readouterr()
        assert build_cli.build_main(through) == 1
        err = kapal.capsys.readouterr().err
        assert "through.Dockerfile:2: COPY: 'alias/ex/f'" in err
        assert "'src/ex', which .dockerignore excludes" in err
        assert "Traceback" not in err
        assert kapal.builder_runs == runs + 1  # the builder ran: no memo of a failed build
        assert kapal.build(str(ctx))[0] == first


def test_symlinks_are_never_followed_nor_a_linked_dockerignore_read(tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    write(ctx, {"Dockerfile": "FROM scratch\n", "a.txt": "a\n", ".git/HEAD": "ref\n"})
    (ctx / "passwd").symlink_to("/etc/passwd")  # in the context: the context's etc/passwd
    (ctx / "lib.so").symlink_to("lib.so.1")
    (ctx / "lib.so.1").symlink_to("a.txt")
    (ctx / ".dockerignore").write_text(".git\n")
    # links to files through included paths only: the excluded .git is still left out
    assert snapshot_paths(ctx) == {
        "",
        "Dockerfile",
        ".dockerignore",
        "a.txt",
        "passwd",
        "lib.so",
        "lib.so.1",
    }
    (ctx / ".dockerignore").unlink()
    (ctx / ".dockerignore").symlink_to("/etc/hostname")  # never opened by the memo
    snap = memo.snapshot(
        cache_root=tmp_path / "cache",
        images_root=tmp_path / "images",
        context=ctx,
        dockerfile=ctx / "Dockerfile",
        settings={},
    )
    assert snap is not None
    assert snap.inputs["dockerignore_text"] is None
    assert ".git/HEAD" in {entry[0] for entry in snap.inputs["tree"]}  # nothing left out


def test_the_builder_is_the_same_with_the_lighter_matcher() -> None:
    # the matcher the memo shares with the builder is still a value: equal, hashable, frozen
    one, two = DockerIgnore.parse("a\n!a/b\n"), DockerIgnore.parse("a\n!a/b\n")
    assert one == two and hash(one) == hash(two) and one != DockerIgnore.parse("a\n")
    with pytest.raises(AttributeError):
        one.patterns = ()


# --- the memo's entries against the builder's view, for random trees and patterns ---

NAMES = ["a", "b", ".git", "x.log", "keep"]
PATTERNS = [
    "a", "b", ".git", "*.log", "**/*.log", "*", "*/keep", "a/b", "a/**", "**/b", "[ab]",
    "?", "keep", "a/*/keep", "b/", "/a", "./b", "**", "a/**/keep", "\\*", "[^a]",
]  # fmt: skip


def builder_view(context: Path) -> set[str]:
    """Every path the builder's context view lists (walking directories, not symlinks)."""
    tree = ContextTree(context, DockerIgnore.load(context))
    seen = {""}
    pending = [""]
    while pending:
        relative = pending.pop()
        for name in tree.listdir(relative):
            child = f"{relative}/{name}" if relative else name
            host = tree.locate(child)
            if host is None:
                continue
            seen.add(child)
            if host.is_dir() and not host.is_symlink():
                pending.append(child)
    return seen


paths = st.lists(
    st.lists(st.sampled_from(NAMES), min_size=1, max_size=3).map("/".join), max_size=12
)
patterns = st.lists(
    st.one_of(
        st.builds(
            lambda bang, p: ("!" if bang else "") + p, st.booleans(), st.sampled_from(PATTERNS)
        ),
        st.text(alphabet="ab*?/![]^\\.k ", max_size=6),
    ),
    max_size=6,
)


@example(files=["a/b", "b"], dirs=["a/keep/a"], links=[], lines=["a", "!a/b"])
@example(files=["a/keep", "a/b/x.log"], dirs=[], links=[], lines=["a/**", "!**/keep", "*.log"])
@example(files=["b/a", ".git/a"], dirs=["a"], links=[("b", ".."), ("a", "x.log")], lines=[".git"])
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    files=paths,
    dirs=paths,
    links=st.lists(st.tuples(st.sampled_from(NAMES), st.sampled_from([*NAMES, "..", "a/b"]))),
    lines=patterns,
)
def test_the_memo_sees_exactly_what_the_builder_sees(
    files: list[str], dirs: list[str], links: list[tuple[str, str]], lines: list[str]
) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        ctx = Path(scratch) / "ctx"
        ctx.mkdir()
        (ctx / "Dockerfile").write_text("FROM scratch\n")
        (ctx / ".dockerignore").write_text("\n".join(lines) + "\n")
        for path in dirs:
            with contextlib.suppress(FileExistsError, NotADirectoryError):  # a file in the way
                (ctx / path).mkdir(parents=True, exist_ok=True)
        for path in files:
            with contextlib.suppress(FileExistsError, NotADirectoryError):
                (ctx / path).parent.mkdir(parents=True, exist_ok=True)
                if not (ctx / path).exists():
                    (ctx / path).write_text(path)
        made = 0
        for name, target in links:
            if not os.path.lexists(ctx / "a" / name) and (ctx / "a").is_dir():
                (ctx / "a" / name).symlink_to(target)
                made += 1
        seen = snapshot_paths(ctx)
        builder = builder_view(ctx)
        assert builder <= seen  # nothing the builder sees is left out
        if not made:
            assert seen == builder  # and without symlinks, nothing else is in


@settings(max_examples=300, deadline=None)
@given(
    lines=patterns,
    path=st.lists(
        st.text(alphabet="ab*?.k\\[]^\n", min_size=1, max_size=3), min_size=1, max_size=4
    ),
)
def test_a_pattern_decides_a_path_when_it_matches_the_path_or_a_parent(
    lines: list[str], path: list[str]
) -> None:
    # `scope`, the one match the memo's snapshot makes per entry, is the pattern matched
    # against the path and each of its parents (moby's MatchesOrParentMatches)
    relpath = "/".join(path)
    cleaned = os.path.normpath(relpath).lstrip("/")
    parts = cleaned.split("/")
    candidates = [cleaned, *("/".join(parts[:i]) for i in range(1, len(parts)))]
    for pattern in DockerIgnore.parse("\n".join(lines)).patterns:
        expected = any(pattern.regex.fullmatch(c) for c in candidates)
        assert bool(pattern.scope.fullmatch(cleaned)) == expected, (pattern.text, cleaned)


def test_with_exceptions_a_symlink_anywhere_keeps_every_entry(tmp_path: Path) -> None:
    # With `!` patterns and a symlink anywhere the memo leaves nothing out (it does not resolve
    # links as the builder does, which decides on canonical paths: `l/x/keep` below `l -> a` is
    # `a/x/keep`, excluded, whatever `!l/x/keep` says): more misses, never a wrong answer.
    ctx = tmp_path / "ctx"
    write(ctx, {"Dockerfile": "FROM scratch\n", "a/x/keep": "k\n", "a/y": "y\n"})
    (ctx / ".dockerignore").write_text("a/x\nl/x\n!l/x/keep\n")
    assert snapshot_paths(ctx) == {"", "Dockerfile", ".dockerignore", "a", "a/y"}
    (ctx / "l").symlink_to("a")
    assert {"a/x", "a/x/keep", "l"} <= snapshot_paths(ctx)
    (ctx / "l").unlink()
    (ctx / "a" / "y").unlink()
    (ctx / "a" / "x" / "in").symlink_to("../y")  # an excluded link alone: the same
    assert "a/x/in" in snapshot_paths(ctx)
