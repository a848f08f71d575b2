"""Deterministic layer tars from directory trees, with overlay whiteouts converted."""

from __future__ import annotations

import gzip
import os
import stat
import tarfile
from pathlib import Path

import pytest

from runner.build.layers import write_layer


def _tree(root: Path) -> Path:
    (root / "b" / "deep").mkdir(parents=True)
    (root / "a.txt").write_text("alpha")
    (root / "b" / "deep" / "f").write_bytes(b"\x00\x01")
    os.chmod(root / "b" / "deep" / "f", 0o750)
    os.chown(root / "b" / "deep" / "f", 1234, 5678)
    os.symlink("../a.txt", root / "b" / "link")
    os.link(root / "a.txt", root / "b" / "hard")
    os.utime(root / "a.txt", (2_000_000_000, 2_000_000_000))
    return root


def _members(path: Path) -> list[tarfile.TarInfo]:
    with tarfile.open(path) as tar:
        return tar.getmembers()


def test_same_input_gives_same_bytes(tmp_path: Path) -> None:
    tree = _tree(tmp_path / "tree")
    one = write_layer(tree, tmp_path / "one.tar.gz", epoch=1_000)
    os.utime(tree / "b" / "deep" / "f", (1_700_000_000, 1_700_000_000))  # mtimes above the clamp
    two = write_layer(tree, tmp_path / "two.tar.gz", epoch=1_000)
    assert (tmp_path / "one.tar.gz").read_bytes() == (tmp_path / "two.tar.gz").read_bytes()
    assert one.digest == two.digest and one.diff_id == two.diff_id
    with gzip.open(tmp_path / "one.tar.gz") as f:
        import hashlib

        assert "sha256:" + hashlib.sha256(f.read()).hexdigest() == one.diff_id


def test_entries_sorted_numeric_owners_clamped_mtimes(tmp_path: Path) -> None:
    tree = _tree(tmp_path / "tree")
    layer = write_layer(tree, tmp_path / "l.tar.gz", epoch=1_000)
    members = _members(layer.path)
    names = [m.name for m in members]
    assert names == ["a.txt", "b", "b/deep", "b/deep/f", "b/hard", "b/link"]
    by = {m.name: m for m in members}
    assert (by["b/deep/f"].uid, by["b/deep/f"].gid) == (1234, 5678)
    assert by["b/deep/f"].mode == 0o750
    assert all(m.uname == "" and m.gname == "" for m in members)
    assert all(m.mtime <= 1_000 for m in members)
    assert by["b/link"].issym() and by["b/link"].linkname == "../a.txt"
    assert by["b/hard"].islnk() and by["b/hard"].linkname == "a.txt"


def test_gzip_header_has_no_mtime_and_no_name(tmp_path: Path) -> None:
    layer = write_layer(_tree(tmp_path / "tree"), tmp_path / "l.tar.gz")
    head = layer.path.read_bytes()[:10]
    assert head[:3] == b"\x1f\x8b\x08"
    assert head[3] & 0x08 == 0  # FNAME flag clear
    assert head[4:8] == b"\x00\x00\x00\x00"  # MTIME 0


def test_overlay_whiteouts_become_oci_whiteouts(tmp_path: Path) -> None:
    upper = tmp_path / "upper"
    (upper / "etc" / "opaque").mkdir(parents=True)
    (upper / "etc" / "opaque" / "new").write_text("n")
    os.mknod(upper / "etc" / "gone", stat.S_IFCHR | 0o000, os.makedev(0, 0))
    try:
        os.setxattr(upper / "etc" / "opaque", "trusted.overlay.opaque", b"y")
    except OSError as exc:  # pragma: no cover - depends on the filesystem under tmp_path
        pytest.skip(f"trusted xattrs unsupported here: {exc}")
    layer = write_layer(upper, tmp_path / "l.tar.gz", whiteouts=True)
    members = {m.name: m for m in _members(layer.path)}
    assert ".wh.gone" not in members and "etc/.wh.gone" in members
    assert members["etc/.wh.gone"].isreg() and members["etc/.wh.gone"].size == 0
    assert "etc/opaque/.wh..wh..opq" in members
    assert "etc/gone" not in members
    without = {m.name for m in _members(write_layer(upper, tmp_path / "raw.tar.gz").path)}
    assert "etc/gone" in without and "etc/opaque/.wh..wh..opq" not in without


def test_empty_tree(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    layer = write_layer(tmp_path / "empty", tmp_path / "l.tar.gz")
    assert layer.empty and _members(layer.path) == []
