"""Fuzzing the in-root resolver (`runner.confined`) with trees of symlinks, `..` and long names.

Hypothesis builds a tree under `base/root` whose symlinks point anywhere (absolute paths, chains
of `..`, the directory beside the root, each other, long names), then resolves, writes and
extracts tars through it. Properties: nothing outside `root` ever changes, every resolved path
is inside `root`, and the kernel's `RESOLVE_IN_ROOT` and the write path's step-by-step resolution
agree on every directory both reach.
"""

from __future__ import annotations

import io
import os
import stat
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.repofiles import open_in_repository
from runner.confined import ConfinedTree, extract_tar
from runner.errors import ConfinedPathError

LONG = "L" * 255
NAMES = st.sampled_from(["a", "b", "c", "..", ".", LONG])
PARTS = st.lists(NAMES, min_size=1, max_size=6)
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@dataclass(frozen=True)
class Link:
    """A symlink target: `kind` picks absolute, outside, relative or the chain form."""

    kind: str
    parts: tuple[str, ...]

    def render(self, base: Path) -> str:
        body = "/".join(self.parts)
        if self.kind == "absolute":
            return "/" + body
        if self.kind == "outside":
            return f"{base}/outside/{body}"
        if self.kind == "parent":
            return f"{base}/{body}"
        if self.kind == "climb":
            return "../" * 8 + body
        return body


LINKS = st.builds(
    Link,
    st.sampled_from(["absolute", "outside", "parent", "climb", "relative"]),
    st.lists(NAMES, max_size=5).map(tuple),
)
ENTRY = st.tuples(PARTS, st.sampled_from(["dir", "file", "link"]), LINKS)
# a query starts with the path of one of the generated entries (so it meets their links) or not
QUERY = st.tuples(st.integers(0, 30), st.booleans(), st.lists(NAMES, max_size=4))


def _queries(
    entries: list[tuple[list[str], str, Link]], drawn: list[tuple[int, bool, list[str]]]
) -> list[str]:
    out = []
    for index, from_entry, suffix in drawn:
        prefix = entries[index % len(entries)][0] if entries and from_entry else []
        out.append("/".join([*prefix, *suffix]) or ".")
    return out


@contextmanager
def _world() -> Iterator[tuple[Path, Path]]:
    with tempfile.TemporaryDirectory(prefix="kapal-fuzz-") as tmp:
        base = Path(tmp)
        root = base / "root"
        root.mkdir()
        # directories beside the root (what an escape would reach) and a few inside it, so that
        # generated links often sit below the top
        for rel in ("outside/a/b", "outside/c", "a/b", "b", "root/a/b", "root/c"):
            (base / rel).mkdir(parents=True, exist_ok=True)
        (base / "outside" / "secret").write_text("outside\n")
        yield base, root


def _plain_parent(root: Path, parts: list[str]) -> Path | None:
    """`root/parts[:-1]` when each step is a real directory made by the test (never a link)."""
    here = root
    for name in parts[:-1]:
        if name in ("..", "."):
            return None
        here = here / name
        try:
            if not stat.S_ISDIR(os.lstat(here).st_mode):
                return None
        except OSError:
            return None
    return here


def _build(root: Path, base: Path, entries: list[tuple[list[str], str, Link]]) -> None:
    # directories and files first, links last, and never through a link: the test itself must
    # not write outside while making the tree
    for kinds in (("dir",), ("file",), ("link",)):
        for parts, kind, link in entries:
            if kind not in kinds or parts[-1] in ("..", "."):
                continue
            parent = _plain_parent(root, parts)
            if parent is None:
                continue
            path = parent / parts[-1]
            try:
                if kind == "dir":
                    path.mkdir()
                elif kind == "file":
                    path.write_text("inside\n")
                else:
                    os.symlink(link.render(base), path)
            except OSError:
                continue


def _outside(base: Path) -> dict[str, tuple[int, int, bytes]]:
    """Everything under `base` but `root`: type, size and content."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(base):
        if Path(dirpath) == base:
            dirnames[:] = [d for d in dirnames if d != "root"]
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st_ = os.lstat(path)
            data = Path(path).read_bytes() if stat.S_ISREG(st_.st_mode) else b""
            found[os.path.relpath(path, base)] = (stat.S_IFMT(st_.st_mode), st_.st_size, data)
    return found


def _step_resolution(tree: ConfinedTree, query: str) -> str | None:
    try:
        fd = tree._dir_fd(query, create=False)
    except ConfinedPathError:
        return None
    try:
        return tree._relative(fd)
    finally:
        os.close(fd)


@FUZZ
@given(entries=st.lists(ENTRY, max_size=14), drawn=st.lists(QUERY, min_size=1, max_size=8))
def test_resolving_stays_inside_and_matches_the_kernel(
    entries: list[tuple[list[str], str, Link]], drawn: list[tuple[int, bool, list[str]]]
) -> None:
    with _world() as (base, root):
        _build(root, base, entries)
        top = os.path.realpath(root)
        with ConfinedTree(root) as tree:
            for query in _queries(entries, drawn):
                try:
                    kernel = tree.resolve(query)
                except ConfinedPathError as exc:
                    assert "outside the tree" not in str(exc), exc
                    continue
                if kernel is None:
                    continue
                assert ".." not in kernel.split("/")
                assert os.path.realpath(os.path.join(top, kernel)).startswith(top)
                st_ = tree.stat(query)
                if st_ is not None and stat.S_ISDIR(st_.st_mode):
                    assert _step_resolution(tree, query) == kernel, query


@FUZZ
@given(entries=st.lists(ENTRY, max_size=14), drawn=st.lists(QUERY, min_size=1, max_size=8))
def test_writing_never_changes_anything_outside(
    entries: list[tuple[list[str], str, Link]], drawn: list[tuple[int, bool, list[str]]]
) -> None:
    with _world() as (base, root):
        _build(root, base, entries)
        before = _outside(base)
        with ConfinedTree(root) as tree:
            for index, query in enumerate(_queries(entries, drawn)):
                try:
                    if index % 3 == 0:
                        tree.symlink(query, "/outside/secret")
                    elif index % 3 == 1:
                        tree.make_dirs(query)
                    else:
                        with tree.create_file(query) as out:
                            out.write(b"written\n")
                except ConfinedPathError:
                    continue
        assert _outside(base) == before


# member names mostly end in a real name, so extraction gets past most of them
MEMBER_PARTS = st.tuples(
    st.lists(NAMES, max_size=5), st.sampled_from(["a", "b", "c", LONG, ".."])
).map(lambda both: [*both[0], both[1]])
MEMBER = st.tuples(
    MEMBER_PARTS,
    st.sampled_from(["dir", "file", "symlink", "hardlink"]),
    LINKS,
    st.integers(0, 0o7777),
)


def _tar(base: Path, members: list[tuple[list[str], str, Link, int]]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for parts, kind, link, mode in members:
            info = tarfile.TarInfo("/".join(parts))
            info.mode = mode
            data = b""
            if kind == "dir":
                info.type = tarfile.DIRTYPE
            elif kind == "symlink":
                info.type = tarfile.SYMTYPE
                info.linkname = link.render(base)
            elif kind == "hardlink":
                info.type = tarfile.LNKTYPE
                info.linkname = "/".join(link.parts)
            else:
                data = b"from the archive\n"
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


@FUZZ
@given(entries=st.lists(ENTRY, max_size=8), members=st.lists(MEMBER, min_size=1, max_size=14))
def test_extracting_a_tar_never_changes_anything_outside(
    entries: list[tuple[list[str], str, Link]], members: list[tuple[list[str], str, Link, int]]
) -> None:
    with _world() as (base, root):
        _build(root, base, entries)
        before = _outside(base)
        with tempfile.TemporaryDirectory(prefix="kapal-fuzz-tars-") as tars:
            # one archive per member, so a refused member does not stop the ones after it
            for index, member in enumerate(members):
                archive = Path(tars) / f"{index}.tar"
                archive.write_bytes(_tar(base, [member]))
                with ConfinedTree(root) as tree, suppress(ConfinedPathError):
                    extract_tar(archive, tree)
        assert _outside(base) == before


@FUZZ
@given(entries=st.lists(ENTRY, max_size=14), drawn=st.lists(QUERY, min_size=1, max_size=8))
def test_the_pipeline_resolver_agrees_with_the_kernel(
    entries: list[tuple[list[str], str, Link]], drawn: list[tuple[int, bool, list[str]]]
) -> None:
    # pipeline/ cannot import runner/: its own resolver for include files must give the same
    with _world() as (base, root):
        _build(root, base, entries)
        with ConfinedTree(root) as tree:
            for query in _queries(entries, drawn):
                try:
                    kernel = tree.resolve(query)
                except ConfinedPathError:
                    kernel = None
                try:
                    fd = open_in_repository(root, query)
                except OSError:
                    assert kernel is None or tree.stat(query) is None or _unreadable(root, kernel)
                    continue
                try:
                    assert tree._relative(fd) == kernel, query
                finally:
                    os.close(fd)


def _unreadable(root: Path, rel: str) -> bool:
    """Whether the kernel-resolved entry is one O_RDONLY cannot open (a dangling link...)."""
    try:
        os.close(os.open(root / rel, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW))
    except OSError:
        return True
    return False
