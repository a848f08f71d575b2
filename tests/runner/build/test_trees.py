"""The merged view of unpacked layers, read without mounting: whiteouts, opaque dirs, symlinks."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from runner.build.trees import LayeredTree


def _whiteout(path: Path) -> None:
    os.mknod(path, stat.S_IFCHR | 0o000, os.makedev(0, 0))


@pytest.fixture
def layers(tmp_path: Path) -> tuple[Path, ...]:
    low, mid, top = (tmp_path / n for n in ("low", "mid", "top"))
    for d in (low, mid, top):
        d.mkdir()
    (low / "usr" / "bin").mkdir(parents=True)
    (low / "usr" / "bin" / "tool").write_text("tool")
    os.symlink("usr/bin", low / "bin")
    (low / "etc" / "conf.d").mkdir(parents=True)
    (low / "etc" / "conf.d" / "old").write_text("old")
    (low / "etc" / "keep").write_text("keep")
    (low / "etc" / "gone").write_text("gone")
    (low / "data" / "inner").mkdir(parents=True)
    (low / "data" / "inner" / "x").write_text("x")
    (mid / "etc" / "conf.d").mkdir(parents=True)
    os.setxattr(mid / "etc" / "conf.d", "trusted.overlay.opaque", b"y")
    (mid / "etc" / "conf.d" / "new").write_text("new")
    _whiteout(mid / "etc" / "gone")
    (top / "data").write_text("now a file")
    return low, mid, top


def test_locate_and_listdir_follow_overlay_rules(layers: tuple[Path, ...]) -> None:
    tree = LayeredTree(layers)
    low, _, top = layers
    assert tree.listdir("etc") == ["conf.d", "keep"]
    assert tree.listdir("etc/conf.d") == ["new"]  # opaque: the lower "old" is hidden
    assert tree.locate("etc/gone") is None
    assert tree.locate("etc/keep") == low / "etc" / "keep"
    assert tree.locate("data") == top / "data"
    assert tree.locate("data/inner/x") is None  # a file replaced the directory above
    assert tree.listdir("data") == []


def test_symlinked_directories_resolve_inside_the_tree(layers: tuple[Path, ...]) -> None:
    tree = LayeredTree(layers)
    assert tree.resolve("/bin/tool") == "usr/bin/tool"
    assert tree.resolve("bin", follow_last=True) == "usr/bin"
    assert tree.listdir("/bin") == ["tool"]
    assert tree.read_text("/bin/tool") == "tool"
    assert tree.resolve("/../../etc/keep") == "etc/keep"  # no way out of the root
