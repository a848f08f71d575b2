"""The cache store: keys, save, restore."""

from __future__ import annotations

from pathlib import Path

from runner.cache import CachePolicy, CacheStore, cache_dir_name


def test_save_replaces_and_restore_copies(tmp_path: Path) -> None:
    store = CacheStore(tmp_path / "caches")
    ws = tmp_path / "ws"
    (ws / ".deps").mkdir(parents=True)
    (ws / ".deps" / "a").write_text("1")
    (ws / ".deps" / "b").write_text("2")
    assert store.save("k", ws, [".deps/"]) == [".deps/a", ".deps/b"]
    (ws / ".deps" / "b").unlink()
    assert store.save("k", ws, [".deps/"]) == [".deps/a"]
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    assert store.restore("k", fresh) == [".deps/a"]
    assert store.restore("missing", fresh) == []
    assert sorted(p.name for p in store.root.iterdir()) == ["k-non_protected"]  # no staging left


def test_keys_become_safe_names() -> None:
    assert cache_dir_name("deps/main:1") == "deps_main_1"
    assert cache_dir_name("..") == "_.."
    assert cache_dir_name("") == "default"


def test_policies() -> None:
    assert CachePolicy("pull").pulls and not CachePolicy("pull").pushes
    assert CachePolicy("push").pushes and not CachePolicy("push").pulls
    assert CachePolicy("pull-push").pulls and CachePolicy("pull-push").pushes
