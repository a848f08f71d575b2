"""The in-root resolver (`runner.confined`) on hand-made trees: what each operation resolves to.

A tree under `base/root` holds links a job or an image could make (`/`, the host directory,
`..` chains); `base/host` stands for the host. Reads resolve as if the tree were `/`; writes go
through links only inside the tree; nothing under `base/host` ever changes; and every failure is
a `ConfinedPathError` naming the path, never an `OSError`.
"""

from __future__ import annotations

import io
import os
import stat
import tarfile
import threading
from pathlib import Path

import pytest

from runner.artifacts import read_workspace_file
from runner.confined import ConfinedTree, extract_tar
from runner.errors import ConfinedPathError, RunnerError


@pytest.fixture
def world(tmp_path: Path) -> tuple[Path, Path]:
    root, host = tmp_path / "root", tmp_path / "host"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").write_text("tree passwd\n")
    (host / "etc").mkdir(parents=True)
    (host / "etc" / "passwd").write_text("host passwd\n")
    os.symlink("/", root / "hostroot")
    os.symlink(host, root / "hostdir")
    os.symlink("../../../../../../../../..", root / "up")
    os.symlink("/etc/passwd", root / "abs-passwd")
    os.symlink("loop-b", root / "loop-a")
    os.symlink("loop-a", root / "loop-b")
    return root, host


def _host_state(host: Path) -> list[tuple[str, int, bytes]]:
    return sorted(
        (str(p.relative_to(host)), p.lstat().st_mode, p.read_bytes() if p.is_file() else b"")
        for p in host.rglob("*")
    )


def test_reads_resolve_as_if_the_tree_were_root(world: tuple[Path, Path]) -> None:
    root, host = world
    with ConfinedTree(root) as tree:
        assert tree.read_bytes("abs-passwd") == b"tree passwd\n"
        assert tree.read_bytes("up/etc/passwd") == b"tree passwd\n"
        assert tree.read_bytes("hostroot/etc/passwd") == b"tree passwd\n"
        assert tree.resolve(f"hostroot{host}/etc") is None
        assert tree.resolve("hostroot") == ""
        assert tree.resolve("up/etc") == "etc"
        assert tree.resolve("hostdir/etc") is None  # the host dir is not in the tree
        with pytest.raises(ConfinedPathError, match="hostdir/etc/passwd"):
            tree.read_bytes("hostdir/etc/passwd")


def test_writes_follow_links_only_inside_the_tree(world: tuple[Path, Path]) -> None:
    root, host = world
    before = _host_state(host)
    with ConfinedTree(root) as tree:
        for path in ("hostdir/etc/new", "hostroot/etc/new2", "up/up/new3", f"hostroot{host}/new4"):
            with tree.create_file(path) as out:
                out.write(b"x")
        tree.make_dirs("hostdir/made/deeper")
        tree.symlink("hostdir", "/")  # replaces the link itself, not what it names
        tree.set_attributes("etc", 0, 0, 0o700)
    assert _host_state(host) == before
    assert (root / str(host).lstrip("/") / "etc" / "new").read_bytes() == b"x"
    assert (root / "etc" / "new2").read_bytes() == b"x"
    assert (root / "new3").read_bytes() == b"x"
    assert os.readlink(root / "hostdir") == "/"
    assert stat.S_IMODE((root / "etc").stat().st_mode) == 0o700


def test_walking_reports_links_and_never_enters_them(world: tuple[Path, Path]) -> None:
    root, _ = world
    with ConfinedTree(root) as tree:
        seen = {rel: stat.S_IFMT(st.st_mode) for rel, st in tree.walk()}
    assert seen["hostdir"] == stat.S_IFLNK
    assert not any(rel.startswith(("hostdir/", "hostroot/", "up/")) for rel in seen)


def test_copying_keeps_links_and_drops_setid_bits_and_devices(
    world: tuple[Path, Path], tmp_path: Path
) -> None:
    root, _ = world
    (root / "tool").write_bytes(b"#!/bin/sh\n")
    os.chmod(root / "tool", 0o6755)
    os.mkfifo(root / "pipe")
    target = tmp_path / "copy"
    with ConfinedTree(root) as src, ConfinedTree(target, create=True) as dst:
        report = src.copy_into(dst, ["tool", "pipe", "hostdir", "hostdir/etc/passwd"])
    assert report.copied == ["tool", "hostdir"]
    assert [rel for rel, _ in report.skipped] == ["pipe", "hostdir/etc/passwd"]
    assert stat.S_IMODE((target / "tool").stat().st_mode) == 0o755
    assert os.readlink(target / "hostdir") == os.readlink(root / "hostdir")


def test_failures_are_kapal_errors_naming_the_path(
    world: tuple[Path, Path], tmp_path: Path
) -> None:
    root, _ = world
    with ConfinedTree(root) as tree:
        for action in (
            lambda: tree.read_bytes("loop-a"),
            lambda: tree.read_bytes("etc"),
            lambda: tree.create_file("etc/passwd/under-a-file"),
            lambda: tree.create_file("etc"),
            lambda: tree.make_dirs("loop-a/x"),
        ):
            with pytest.raises(RunnerError) as info:
                action()
            assert isinstance(info.value, ConfinedPathError)
            assert str(root) in str(info.value)
    garbage = tmp_path / "garbage.tar"
    garbage.write_bytes(b"not an archive at all" * 100)
    with ConfinedTree(root) as tree, pytest.raises(ConfinedPathError, match=r"garbage\.tar"):
        extract_tar(garbage, tree)


def _tar(*members: tarfile.TarInfo) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for info in members:
            tar.addfile(info, io.BytesIO(b"data") if info.isreg() else None)
    return out.getvalue()


def _member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    info.size = 4 if kind == tarfile.REGTYPE else 0
    return info


@pytest.mark.parametrize(
    ("members", "message"),
    [
        ([_member("../escape")], "points outside the destination"),
        ([_member("a/../../escape")], "points outside the destination"),
        ([_member("hard", tarfile.LNKTYPE, "../../etc/passwd")], "outside the destination"),
        ([_member("hard", tarfile.LNKTYPE, "missing")], "does not hold"),
    ],
)
def test_tar_members_leaving_the_destination_are_refused(
    world: tuple[Path, Path], tmp_path: Path, members: list[tarfile.TarInfo], message: str
) -> None:
    root, host = world
    archive = tmp_path / "x.tar"
    archive.write_bytes(_tar(*members))
    before = _host_state(host)
    with ConfinedTree(root) as tree, pytest.raises(ConfinedPathError, match=message):
        extract_tar(archive, tree)
    assert _host_state(host) == before
    assert not (tmp_path / "escape").exists()


def test_tar_links_are_resolved_inside_the_destination(
    world: tuple[Path, Path], tmp_path: Path
) -> None:
    root, host = world
    archive = tmp_path / "x.tar"
    archive.write_bytes(
        _tar(
            _member("out", tarfile.SYMTYPE, str(host)),
            _member("out/file"),
            _member("rel", tarfile.SYMTYPE, "../../.."),
            _member("rel/etc/file2"),
            _member("h", tarfile.LNKTYPE, "out/file"),
        )
    )
    before = _host_state(host)
    with ConfinedTree(root) as tree:
        extract_tar(archive, tree)
    assert _host_state(host) == before
    assert (root / str(host).lstrip("/") / "file").read_bytes() == b"data"
    assert (root / "etc" / "file2").read_bytes() == b"data"
    assert (root / "h").read_bytes() == b"data"


def test_a_special_file_is_refused_without_being_opened(tmp_path: Path) -> None:
    # a job can mknod in its workspace; opening a device node on the host runs its driver. A
    # fifo shows whether it was opened: its writer wakes up only when a reader opens it.
    root = tmp_path / "ws"
    root.mkdir()
    os.mkfifo(root / "report.xml")
    opened = threading.Event()

    def writer() -> None:
        fd = os.open(root / "report.xml", os.O_WRONLY)  # blocks until a reader opens the fifo
        opened.set()
        os.close(fd)

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    with pytest.raises(ValueError, match="not a regular file"):
        read_workspace_file(root, "report.xml")
    with ConfinedTree(root) as tree, pytest.raises(ConfinedPathError):
        tree.read_bytes("report.xml")
    assert not opened.wait(2)
    os.close(os.open(root / "report.xml", os.O_RDONLY | os.O_NONBLOCK))  # let the writer go
    thread.join()
