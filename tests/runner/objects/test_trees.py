"""Trees as blobs: packing keeps files and links; unpacking an archive from the store (which
whoever can write to the bucket controls) writes nothing outside its destination."""

from __future__ import annotations

import contextlib
import io
import os
import stat
import tarfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runner.errors import ConfinedPathError, ObjectStoreError
from runner.objects.trees import pack_tree, unpack_tree


def hostile_archive(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    """A .tar.gz at `path` holding exactly `members` (data for regular files)."""
    with tarfile.open(path, "w:gz") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
    return path


def member(name: str, kind: bytes = tarfile.REGTYPE, **fields: object) -> tarfile.TarInfo:
    """A tar member `name` of `kind` with `fields` set."""
    info = tarfile.TarInfo(name)
    info.type = kind
    for key, value in fields.items():
        setattr(info, key, value)
    return info


def test_a_packed_tree_unpacks_the_same(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "dist" / "sub").mkdir(parents=True)
    (tree / "dist" / "app.bin").write_bytes(os.urandom(3 << 20))
    (tree / "dist" / "sub" / "run.sh").write_text("echo hi\n")
    os.chmod(tree / "dist" / "sub" / "run.sh", 0o755)
    (tree / "dist" / "latest").symlink_to("app.bin")
    (tree / "hostroot").symlink_to("/")  # a job's link: kept as a link, never followed

    size = pack_tree(tree, tmp_path / "t.tar.gz")
    made = unpack_tree(tmp_path / "t.tar.gz", tmp_path / "back", where="test")

    back = tmp_path / "back"
    assert size == (3 << 20) + len("echo hi\n")
    assert sorted(made) == ["dist/app.bin", "dist/latest", "dist/sub/run.sh", "hostroot"]
    assert (back / "dist" / "app.bin").read_bytes() == (tree / "dist" / "app.bin").read_bytes()
    assert os.readlink(back / "dist" / "latest") == "app.bin"
    assert os.readlink(back / "hostroot") == "/"
    assert stat.S_IMODE((back / "dist" / "sub" / "run.sh").stat().st_mode) == 0o755


@pytest.mark.parametrize("name", ["../escaped", "/tmp/escaped", "a/../../escaped"])
def test_members_climbing_out_are_refused(tmp_path: Path, name: str) -> None:
    archive = hostile_archive(tmp_path / "a.tar.gz", [(member(name), b"pwned")])
    with pytest.raises(ConfinedPathError, match="outside the destination"):
        unpack_tree(archive, tmp_path / "dest" / "inner", where="bucket/key")
    assert not (tmp_path / "escaped").exists()
    assert not (tmp_path / "dest" / "escaped").exists()


def test_a_symlinked_directory_resolves_inside_the_destination(tmp_path: Path) -> None:
    host = tmp_path / "host"
    host.mkdir()
    archive = hostile_archive(
        tmp_path / "a.tar.gz",
        [
            (member("out", tarfile.SYMTYPE, linkname=str(host)), None),
            (member("out/planted"), b"pwned"),
            (member("up", tarfile.SYMTYPE, linkname="../../.."), None),
            (member("up/planted2"), b"pwned"),
        ],
    )
    dest = tmp_path / "dest"
    unpack_tree(archive, dest, where="bucket/key")
    assert list(host.iterdir()) == []
    assert (dest / str(host).lstrip("/") / "planted").read_bytes() == b"pwned"
    assert (dest / "planted2").read_bytes() == b"pwned"
    assert not (tmp_path / "planted2").exists()


def test_only_files_directories_and_links_are_made(tmp_path: Path) -> None:
    archive = hostile_archive(
        tmp_path / "a.tar.gz",
        [
            (member("suid", mode=0o6755), b"#!/bin/sh\n"),
            (member("null", tarfile.CHRTYPE, devmajor=1, devminor=3), None),
            (member("fifo", tarfile.FIFOTYPE), None),
            (member("hard", tarfile.LNKTYPE, linkname="/etc/shadow"), None),
        ],
    )
    made = unpack_tree(archive, tmp_path / "dest", where="bucket/key")
    assert made == ["suid"]
    assert sorted(p.name for p in (tmp_path / "dest").iterdir()) == ["suid"]
    assert stat.S_IMODE((tmp_path / "dest" / "suid").stat().st_mode) == 0o755


def test_a_corrupt_archive_is_an_object_store_error(tmp_path: Path) -> None:
    (tmp_path / "a.tar.gz").write_bytes(b"\x1f\x8b this is not gzip")
    with pytest.raises(ObjectStoreError, match="bucket/key: not a readable archive"):
        unpack_tree(tmp_path / "a.tar.gz", tmp_path / "dest", where="bucket/key")


names = st.lists(
    st.text(alphabet=st.sampled_from("ab./"), min_size=1, max_size=12), min_size=1, max_size=6
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(names=names, links=st.lists(st.sampled_from(["/", "..", "../..", "a", "/tmp"]), max_size=3))
def test_no_archive_writes_outside_its_destination(
    tmp_path: Path, names: list[str], links: list[str]
) -> None:
    case = tmp_path / f"case-{os.urandom(4).hex()}"
    case.mkdir()
    members: list[tuple[tarfile.TarInfo, bytes | None]] = [
        (member(f"l{i}", tarfile.SYMTYPE, linkname=target), None) for i, target in enumerate(links)
    ]
    members += [(member(name), b"x") for name in names]
    members += [(member(f"l{i}/{name}"), b"y") for i in range(len(links)) for name in names]
    archive = hostile_archive(case / "a.tar.gz", members)
    dest = case / "dest"
    with contextlib.suppress(ConfinedPathError, ObjectStoreError):  # refusing is fine too
        unpack_tree(archive, dest, where="fuzz")
    assert sorted(p.name for p in case.iterdir()) == ["a.tar.gz", "dest"]
    assert all(p.name.startswith("case-") for p in tmp_path.iterdir())
