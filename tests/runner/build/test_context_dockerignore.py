"""COPY, ADD and bind mounts see the build context as `docker build` sends it: what .dockerignore
excludes is absent, also when a path reaches it through a symlink.

Docker's client walks the context (symlinks not followed), leaves out what .dockerignore
excludes (an excluded directory is still sent when a `!` pattern brings back something in it,
holding only that), and the builder resolves COPY sources in what it received. So with
`alias -> src` and `src/ex -> ../one` excluded, `COPY alias/ex/f /f` fails in Docker ("not
found"), while a reader of the context in place would copy `one/f`. The builds here are real
(busybox base, the embedded builder); the hypothesis test compares the builder's view of a
context with a plain view of a copy made as Docker's client makes the context it sends.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from runner.build.dockerignore import DockerIgnore
from runner.build.trees import ContextTree
from runner.errors import DockerfileError
from runner.images import ImageStore
from tests.runner.build.conftest import BuildHelper
from tests.security import hostfiles
from tests.security.hostfiles import HostDir, contains_secret

host_dir = hostfiles.host_dir


def layer_files(store: ImageStore, digest: str) -> dict[str, str]:
    """Path in the image -> content (files), `-> target` (symlinks) or `/` (directories)."""
    found: dict[str, str] = {}
    image = store.get(digest)
    for tree in store.unpacked_layers(image):
        for dirpath, dirnames, filenames in os.walk(tree):
            for name in dirnames + filenames:
                path = os.path.join(dirpath, name)
                shown = "/" + os.path.relpath(path, tree)
                if os.path.islink(path):
                    found[shown] = "-> " + os.readlink(path)
                elif os.path.isdir(path):
                    found[shown] = "/"
                else:
                    found[shown] = Path(path).read_text(errors="replace")
    return found


def below(files: dict[str, str], top: str) -> dict[str, str]:
    return {k[len(top) :]: v for k, v in files.items() if k.startswith(top + "/")}


@pytest.fixture
def leaky(builds: BuildHelper) -> Path:
    """The issue's context: `alias -> src`, `src/ex -> ../one` excluded, a secret excluded."""
    ctx = builds.context(
        "FROM busybox:latest\n",
        {
            ".dockerignore": "src/ex\nsecret.txt\nconf\n",
            "one/f": "one\n",
            "src/x": "x\n",
            "a.txt": "a\n",
            "secret.txt": "do-not-ship-4f1c\n",
            "conf/app.ini": "conf-pw-9a7e\n",
        },
    )
    (ctx / "alias").symlink_to("src")
    (ctx / "src" / "ex").symlink_to("../one")
    (ctx / "to-secret").symlink_to("secret.txt")
    (ctx / "to-conf").symlink_to("/conf")
    return ctx


def build_fails(builds: BuildHelper, ctx: Path, dockerfile: str) -> str:
    (ctx / "Dockerfile").write_text(dockerfile)
    with pytest.raises(DockerfileError) as caught:
        builds.build(ctx)
    return str(caught.value)


@pytest.mark.parametrize(
    ("instruction", "said"),
    [
        ("COPY alias/ex/f /f", "'alias/ex/f' resolves through symlinks to 'src/ex', which"),
        ("ADD alias/ex/f /f", "'alias/ex/f' resolves through symlinks to 'src/ex', which"),
        ("COPY alias/ex/ /d/", "'alias/ex/' resolves through symlinks to 'src/ex', which"),
        ("COPY src/ex/f /f", "'src/ex/f' is inside 'src/ex', which .dockerignore excludes"),
        ("COPY a.txt secret.txt /d/", "'secret.txt' is excluded by .dockerignore"),
        ("COPY ./conf/app.ini /c", "'./conf/app.ini' is inside 'conf', which"),
        ("COPY to-secret /s", "'to-secret' resolves through symlinks to 'secret.txt', which"),
        ("COPY to-conf/app.ini /c", "'to-conf/app.ini' resolves through symlinks to 'conf',"),
        ("COPY secret.* /d/", "'secret.*' matches only paths .dockerignore excludes"),
        ("COPY conf/*.ini /d/", "'conf/*.ini' matches only paths .dockerignore excludes"),
    ],
)
def test_a_source_that_is_or_reaches_an_excluded_entry_fails_clearly(
    builds: BuildHelper, leaky: Path, busybox_image: str, instruction: str, said: str
) -> None:
    message = build_fails(builds, leaky, f"FROM {busybox_image}\n{instruction}\n")
    assert f"Dockerfile:2: {instruction.split()[0]}: " in message
    assert said in message
    assert ".dockerignore" in message
    assert "do-not-ship-4f1c" not in message and "conf-pw-9a7e" not in message


def test_a_bind_mount_through_an_excluded_symlink_fails_clearly(
    builds: BuildHelper, leaky: Path, busybox_image: str
) -> None:
    message = build_fails(
        builds,
        leaky,
        f"FROM {busybox_image}\nRUN --mount=type=bind,source=alias/ex,target=/m cat /m/f\n",
    )
    assert "Dockerfile:2: RUN: " in message
    assert "source=alias/ex: .dockerignore excludes 'src/ex'" in message


def test_wildcards_and_directories_leave_excluded_entries_out(
    builds: BuildHelper, leaky: Path, busybox_image: str, image_store: ImageStore
) -> None:
    (leaky / "Dockerfile").write_text(
        f"FROM {busybox_image}\n"
        "COPY *.txt alias/* /glob/\n"
        "COPY alias/ /tree/\n"
        "COPY . /all/\n"
        "RUN --mount=type=bind,source=alias,target=/m ls -a /m > /mounted\n"
    )
    files = layer_files(image_store, builds.build(leaky).image.digest)
    assert below(files, "/glob") == {"/a.txt": "a\n", "/x": "x\n"}
    assert below(files, "/tree") == {"/x": "x\n"}
    everything = below(files, "/all")
    assert "/src/ex" not in everything and "/secret.txt" not in everything
    assert not any(path.startswith("/conf") for path in everything)
    # links among what is sent are copied as links, whatever they point to (as Docker does)
    assert everything["/alias"] == "-> src" and everything["/to-secret"] == "-> secret.txt"
    assert files["/mounted"].split() == [".", "..", "x"]
    assert not [v for v in files.values() if "do-not-ship-4f1c" in v or "conf-pw-9a7e" in v]


def test_files_a_pattern_brings_back_still_copy(
    builds: BuildHelper, busybox_image: str, image_store: ImageStore
) -> None:
    ctx = builds.context(
        f"""
        FROM {busybox_image}
        COPY docs /docs/
        COPY docs/*.md /md/
        COPY d/keep.md d/sub/deep.txt /via-link/
        """,
        {
            ".dockerignore": "docs\n!docs/keep.md\n!docs/sub/deep.txt\n",
            "docs/keep.md": "keep\n",
            "docs/drop.md": "drop\n",
            "docs/sub/deep.txt": "deep\n",
            "docs/sub/other.txt": "other\n",
        },
    )
    (ctx / "d").symlink_to("docs")
    files = layer_files(image_store, builds.build(ctx).image.digest)
    assert below(files, "/docs") == {"/keep.md": "keep\n", "/sub": "/", "/sub/deep.txt": "deep\n"}
    assert below(files, "/md") == {"/keep.md": "keep\n"}
    assert below(files, "/via-link") == {"/keep.md": "keep\n", "/deep.txt": "deep\n"}
    message = build_fails(builds, ctx, f"FROM {busybox_image}\nCOPY d/drop.md /x\n")
    assert "'d/drop.md' resolves through symlinks to 'docs/drop.md', which" in message


def test_symlinks_among_included_paths_work_as_before_and_excluded_ones_do_not_key_the_cache(
    builds: BuildHelper, busybox_image: str, image_store: ImageStore
) -> None:
    ctx = builds.context(
        f"""
        FROM {busybox_image}
        COPY rel/a.txt abs/a.txt link.txt /t/
        COPY rel/ /dir/
        COPY . /all/
        """,
        {"real/a.txt": "in the context\n", ".dockerignore": "other/hidden\n", "other/b": "b\n"},
    )
    (ctx / "rel").symlink_to("real")
    (ctx / "abs").symlink_to("/real")  # from the context's root, as in docker build
    (ctx / "link.txt").symlink_to("rel/a.txt")
    (ctx / "other" / "hidden").symlink_to("../real")
    first = builds.build(ctx)
    files = layer_files(image_store, first.image.digest)
    assert below(files, "/t") == {"/a.txt": "in the context\n", "/link.txt": "in the context\n"}
    assert below(files, "/dir") == {"/a.txt": "in the context\n"}
    assert files["/all/rel"] == "-> real" and files["/all/link.txt"] == "-> rel/a.txt"
    assert "/all/other/hidden" not in files and files["/all/other/b"] == "b\n"
    (ctx / "other" / "hidden").unlink()
    (ctx / "other" / "hidden").symlink_to("/elsewhere")  # excluded: not an input of any step
    again = builds.build(ctx)
    assert again.image.digest == first.image.digest
    assert len(builds.reporter.cached_steps) == 3


@pytest.mark.parametrize(
    "source",
    [
        "ex/secret.txt",
        "via/ex/secret.txt",
        "via/ex/",
        "ex/*",
        "via/ex/sub/note.txt",
        "hop/note.txt",
    ],
)
@pytest.mark.parametrize("exception", ["", "!ex/secret.txt\n!ex/sub\n"])
def test_a_link_out_of_the_context_through_an_excluded_path_reads_nothing_outside(
    builds: BuildHelper,
    busybox_image: str,
    image_store: ImageStore,
    host_dir: HostDir,
    source: str,
    exception: str,
) -> None:
    # `ex -> <host dir>` names the context's own copy of that path (never the host's); it is
    # excluded, so every route through it fails, and `!` patterns below a link bring nothing
    # back (Docker's client never walks into a link)
    ctx = builds.context(
        f"FROM {busybox_image}\nCOPY {source} /t/\nCOPY . /all/\n",
        {".dockerignore": f"ex\nhop\n{exception}", "mirror": "context\n"},
    )
    mirror = ctx / host_dir.path.relative_to("/")  # what `ex` names in the context
    (mirror / "sub").mkdir(parents=True)
    (mirror / "secret.txt").write_text("the context's own\n")
    (mirror / "sub" / "note.txt").write_text("the context's own\n")
    (ctx / "ex").symlink_to(host_dir.path)
    (ctx / "via").symlink_to(".")
    (ctx / "hop").symlink_to(f"{host_dir.path}/sub")
    (ctx / "etc").symlink_to("/etc")  # included, resolved in the context: nothing there
    with pytest.raises(DockerfileError) as caught:
        builds.build(ctx)
    message = str(caught.value)
    assert ".dockerignore excludes" in message
    assert host_dir.secret not in message
    (ctx / "Dockerfile").write_text(f"FROM {busybox_image}\nCOPY . /all/\nCOPY via/ /via/\n")
    result = builds.build(ctx)
    files = layer_files(image_store, result.image.digest)
    assert "/all/ex" not in files and "/via/ex" not in files and files["/all/etc"] == "-> /etc"
    for tree in image_store.unpacked_layers(result.image):
        assert contains_secret(tree, host_dir.secret) == []


# --- the builder's view against the context Docker's client would send, for random trees ---

NAMES = ["a", "b", "x.log", "keep"]
TARGETS = ["a", "b", "..", "../a", "/a", "/b/keep", "a/b", "keep", "/", "../../b"]
PATTERNS = ["a", "b", "*.log", "**/keep", "a/b", "b/a", "*/keep", "a/**", "[ab]/a"]


def sent_copy(ctx: Path, ignore: DockerIgnore, out: Path) -> None:
    """Copy `ctx` as Docker's client sends it: walked without following links, excluded entries
    left out, an excluded directory kept when an entry below it is included."""

    def keep(rel: str, path: Path) -> bool:
        if not ignore.excluded(rel):
            return True
        if path.is_symlink() or not path.is_dir():
            return False
        return any(keep(f"{rel}/{name}", path / name) for name in os.listdir(path))

    out.mkdir()
    for dirpath, dirnames, filenames in os.walk(ctx):
        base = os.path.relpath(dirpath, ctx)
        for name in sorted(dirnames + filenames):
            rel = name if base == "." else f"{base}/{name}"
            path = ctx / rel
            if not keep(rel, path):
                if name in dirnames:
                    dirnames.remove(name)
                continue
            if path.is_symlink():
                (out / rel).symlink_to(os.readlink(path))
                if name in dirnames:
                    dirnames.remove(name)
            elif path.is_dir():
                (out / rel).mkdir()
            else:
                shutil.copyfile(path, out / rel)


def kind(host: Path | None) -> str:
    if host is None:
        return "absent"
    mode = os.lstat(host).st_mode
    if stat.S_ISLNK(mode):
        return "-> " + os.readlink(host)
    return "dir" if stat.S_ISDIR(mode) else Path(host).read_text()


relpaths = st.lists(st.sampled_from(NAMES), min_size=1, max_size=3).map("/".join)


@example(
    files=["one/f", "src/x"],
    links=[("src/ex", "../one"), ("alias", "src")],
    lines=["src/ex"],
    probes=["alias/ex/f", "alias/ex", "alias/x"],
)
@example(files=["a/b/keep", "a/a"], links=[("b", "a")], lines=["a", "!a/b/keep"], probes=["b/b"])
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    files=st.lists(relpaths, max_size=8),
    links=st.lists(st.tuples(relpaths, st.sampled_from(TARGETS)), max_size=4),
    lines=st.lists(
        st.builds(
            lambda bang, p: ("!" if bang else "") + p, st.booleans(), st.sampled_from(PATTERNS)
        ),
        max_size=4,
    ),
    probes=st.lists(relpaths, min_size=1, max_size=6),
)
def test_the_builder_sees_what_docker_would_send(
    files: list[str], links: list[tuple[str, str]], lines: list[str], probes: list[str]
) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        ctx = Path(scratch) / "ctx"
        ctx.mkdir()
        for path in files:
            with contextlib.suppress(OSError):  # a file or link in the way
                (ctx / path).parent.mkdir(parents=True, exist_ok=True)
                if not os.path.lexists(ctx / path):
                    (ctx / path).write_text(path)
        for path, target in links:
            parents = [ctx.joinpath(*path.split("/")[:i]) for i in range(1, path.count("/") + 1)]
            if any(parent.is_symlink() for parent in parents):
                continue  # never create a link through a link (it could lead out to the host)
            with contextlib.suppress(OSError):
                (ctx / path).parent.mkdir(parents=True, exist_ok=True)
                (ctx / path).symlink_to(target)
        ignore = DockerIgnore.parse("\n".join(lines))
        sent = Path(scratch) / "sent"
        sent_copy(ctx, ignore, sent)
        ours, docker = ContextTree(ctx, ignore), ContextTree(sent, DockerIgnore())
        for probe in [*probes, *(p for p, _ in links), *files, ""]:
            assert kind(ours.locate(probe)) == kind(docker.locate(probe)), probe
            assert ours.listdir(probe) == docker.listdir(probe), probe
            mine, theirs = ours.lookup(probe, follow=True), docker.lookup(probe, follow=True)
            assert mine.path == theirs.path, probe
            if mine.path is not None:
                assert not mine.excluded, probe
            elif ContextTree(ctx, DockerIgnore()).lookup(probe, follow=True).path is not None:
                assert mine.excluded, probe  # there, but not sent: the error names why
