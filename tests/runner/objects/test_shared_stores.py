"""Two workers with no disk in common pass artifacts and caches through the object store.

Each "worker" here has its own data directory and its own store object (its own client); the
only thing they share is the bucket on the S3 server (or, for the directory store, the store's
directory, as a network file system would be).
"""

from __future__ import annotations

import io
import os
import secrets
import tarfile
from pathlib import Path

import pytest

from runner.artifacts import SharedArtifactStore
from runner.cache import SharedCacheStore
from runner.errors import ConfinedPathError, ObjectStoreError
from runner.objects import ObjectStore, open_object_store
from tests.support.s3 import S3Server, make_bucket

BUCKET = "kapal-workers"


@pytest.fixture(params=["s3", "directory"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where both workers' object store lives (a fresh prefix of the test bucket)."""
    if request.param == "directory":
        return str(tmp_path / "shared-store")
    server: S3Server = request.getfixturevalue("s3_server")
    make_bucket(server, BUCKET)
    return f"s3://{BUCKET}/run-{secrets.token_hex(6)}"


def open_store(url: str, request: pytest.FixtureRequest, **changes: str) -> ObjectStore:
    """A new store object (a worker's own) for `url`."""
    if not url.startswith("s3://"):
        return open_object_store(url)
    server: S3Server = request.getfixturevalue("s3_server")
    return server.store(url, **changes)


def worker_dir(tmp_path: Path, name: str) -> Path:
    """The data dir of one worker (nothing in it is seen by the other)."""
    path = tmp_path / name
    path.mkdir()
    return path


def workspace_with_build(root: Path) -> Path:
    """A job's workspace with a build output, a link inside it and a link to the host."""
    workspace = root / "workspace"
    (workspace / "dist").mkdir(parents=True)
    (workspace / "dist" / "app.bin").write_bytes(b"\x7fELF" + os.urandom(100_000))
    (workspace / "dist" / "current").symlink_to("app.bin")
    (workspace / "dist" / "host").symlink_to("/etc")
    return workspace


def test_an_artifact_saved_on_one_worker_is_restored_on_another(
    store_url: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    a, b = worker_dir(tmp_path, "a"), worker_dir(tmp_path, "b")
    producer = SharedArtifactStore(
        a / "artifacts", open_store(store_url, request), scratch=a / "scratch"
    )
    workspace = workspace_with_build(a)
    stored = producer.save(
        41, "build app", workspace, ["dist/app.bin", "dist/current", "dist/host"]
    )
    assert stored.files == ("dist/app.bin", "dist/current", "dist/host")
    assert producer.job_dir(41, "build app").is_dir()  # the local tree the recorder reads

    consumer = SharedArtifactStore(
        b / "artifacts", open_store(store_url, request), scratch=b / "scratch"
    )
    assert consumer.has(41, "build app")
    assert not consumer.has(41, "never ran")
    assert consumer.files(41, "build app") == ["dist/app.bin", "dist/current", "dist/host"]
    target = b / "workspace"
    target.mkdir()
    restored = consumer.restore(41, "build app", target)
    assert sorted(restored) == ["dist/app.bin", "dist/current", "dist/host"]
    assert (target / "dist" / "app.bin").read_bytes() == (
        workspace / "dist" / "app.bin"
    ).read_bytes()
    assert os.readlink(target / "dist" / "current") == "app.bin"
    assert os.readlink(target / "dist" / "host") == "/etc"  # a link, never followed
    assert not (b / "artifacts").exists()  # nothing of worker a's disk was needed
    consumer.close()
    assert not (b / "scratch" / "artifacts").exists()


def hostile(path: Path, link_to: Path, names: tuple[str, ...]) -> Path:
    """An archive with a link `out -> link_to`, then a file at each of `names`."""
    with tarfile.open(path, "w:gz") as tar:
        link = tarfile.TarInfo("out")
        link.type, link.linkname = tarfile.SYMTYPE, str(link_to)
        tar.addfile(link)
        for name in names:
            planted = tarfile.TarInfo(name)
            planted.size = 5
            tar.addfile(planted, io.BytesIO(b"pwned"))
    return path


def test_a_hostile_archive_in_the_bucket_writes_nothing_outside_the_workspace(
    store_url: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    host = tmp_path / "host-dir"
    host.mkdir()
    objects = open_store(store_url, request)
    objects.put_file(
        SharedArtifactStore.object_key(7, "evil"),
        hostile(tmp_path / "evil.tar.gz", host, ("out/pwned",)),
    )
    objects.put_file(
        SharedArtifactStore.object_key(7, "climber"),
        hostile(tmp_path / "climber.tar.gz", host, ("../../pwned-above",)),
    )
    b = worker_dir(tmp_path, "b")
    consumer = SharedArtifactStore(b / "artifacts", objects, scratch=b / "scratch")
    workspace = b / "workspace"
    workspace.mkdir()

    # the link is restored as a link; the file "through" it lands inside the workspace
    assert sorted(consumer.restore(7, "evil", workspace)) == [
        "out",
        f"{str(host).lstrip('/')}/pwned",
    ]
    assert os.readlink(workspace / "out") == str(host)
    assert (workspace / str(host).lstrip("/") / "pwned").read_bytes() == b"pwned"
    with pytest.raises(ConfinedPathError, match="outside the destination"):
        consumer.restore(7, "climber", workspace)
    assert list(host.iterdir()) == []
    assert not (tmp_path / "pwned-above").exists()
    assert not (b / "pwned-above").exists()


def test_a_failing_upload_fails_the_save_with_the_stores_reason(
    s3_server: S3Server, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    make_bucket(s3_server, BUCKET)
    objects = open_store(f"s3://{BUCKET}/x", request, secret_key="not-the-secret")
    a = worker_dir(tmp_path, "a")
    producer = SharedArtifactStore(a / "artifacts", objects, scratch=a / "scratch")
    with pytest.raises(ObjectStoreError, match="KAPAL_S3_SECRET_KEY"):
        producer.save(1, "build", workspace_with_build(a), ["dist/app.bin"])
    assert list((a / "scratch").iterdir()) == []  # the packed archive is gone too


def test_a_cache_saved_on_one_worker_is_restored_on_another_of_its_scope(
    store_url: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    a, b = worker_dir(tmp_path, "a"), worker_dir(tmp_path, "b")
    workspace = workspace_with_build(a)
    saver = SharedCacheStore(open_store(store_url, request), "repo:1", scratch=a / "scratch")
    assert saver.save("deps", workspace, ["dist/"]) == [
        "dist/app.bin",
        "dist/current",
        "dist/host",
    ]

    def restored(scope: str, *, protected: bool = False) -> list[str]:
        target = b / f"ws-{secrets.token_hex(4)}"
        target.mkdir()
        store = SharedCacheStore(
            open_store(store_url, request), scope, scratch=b / "scratch", protected=protected
        )
        return sorted(store.restore("deps", target))

    assert restored("repo:1") == ["dist/app.bin", "dist/current", "dist/host"]
    assert restored("repo:2") == []  # another repository never sees it
    assert restored("repo:1", protected=True) == []  # nor does a protected ref's job
    assert list((a / "scratch").iterdir()) == []
    assert list((b / "scratch").iterdir()) == []
