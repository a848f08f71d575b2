"""Removing a job's stored artifacts (what the server's expiry sweep calls): from the directory
store, and from the object store too, idempotent, never following a symlink out of the store."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from runner.artifacts import ArtifactStore, SharedArtifactStore
from tests.runner.objects.test_shared_stores import open_store, store_url

__all__ = ["store_url"]  # the fixture, shared with the shared-store tests


def _workspace(root: Path, outside: Path) -> Path:
    """A job's workspace: a file, a link inside it, and links to a host directory and file."""
    workspace = root / "workspace"
    (workspace / "dist").mkdir(parents=True)
    (workspace / "dist" / "app.bin").write_bytes(b"built")
    (workspace / "dist" / "current").symlink_to("app.bin")
    (workspace / "dist" / "host-dir").symlink_to(outside)
    (workspace / "dist" / "host-file").symlink_to(outside / "precious")
    return workspace


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A host directory no removal may touch."""
    path = tmp_path / "host"
    path.mkdir()
    (path / "precious").write_text("host data")
    return path


def test_remove_takes_the_jobs_tree_and_nothing_it_links_to(tmp_path: Path, outside: Path) -> None:
    store = ArtifactStore(tmp_path / "artifacts")
    workspace = _workspace(tmp_path, outside)
    store.save(7, "build", workspace, ["dist/app.bin", "dist/current", "dist/host-dir"])
    store.save(7, "test job", workspace, ["dist/host-file"])

    assert store.remove(7, "build")
    assert not store.has(7, "build")
    assert store.files(7, "test job") == ["dist/host-file"]  # the other job's stay
    assert store.remove(7, "test job")
    assert not (tmp_path / "artifacts" / "7").exists()  # the empty pipeline directory too
    assert (outside / "precious").read_text() == "host data"
    assert not store.remove(7, "build")  # idempotent
    assert not ArtifactStore(tmp_path / "never-made").remove(1, "build")


def test_a_job_directory_swapped_for_a_symlink_is_removed_as_a_link(
    tmp_path: Path, outside: Path
) -> None:
    store = ArtifactStore(tmp_path / "artifacts")
    store.save(3, "build", _workspace(tmp_path, outside), ["dist/app.bin"])
    job_dir = store.job_dir(3, "build")
    for entry in job_dir.iterdir():
        os.rename(entry, tmp_path / f"moved-{entry.name}")
    job_dir.rmdir()
    job_dir.symlink_to(outside)

    assert store.remove(3, "build")
    assert not os.path.lexists(job_dir)
    assert (outside / "precious").read_text() == "host data"


def test_the_shared_store_removes_the_packed_copy_too(
    store_url: str, request: pytest.FixtureRequest, tmp_path: Path, outside: Path
) -> None:
    objects = open_store(store_url, request)
    store = SharedArtifactStore(tmp_path / "artifacts", objects, scratch=tmp_path / "scratch")
    store.save(12, "build", _workspace(tmp_path, outside), ["dist/app.bin", "dist/host-dir"])
    key = SharedArtifactStore.object_key(12, "build")
    assert objects.exists(key)

    assert store.remove(12, "build")
    assert not objects.exists(key)
    assert not (tmp_path / "artifacts" / "12").exists()
    assert (outside / "precious").read_text() == "host data"

    # another worker, which never had a local copy: the blob is gone, and removing is harmless
    other = SharedArtifactStore(tmp_path / "other", objects, scratch=tmp_path / "other-scratch")
    assert not other.remove(12, "build")
    assert not other.has(12, "build")
