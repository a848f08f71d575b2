"""Faults that leave the store consistent: no space left (a real tiny tmpfs), odd media types."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from runner.errors import MediaTypeError, StoreFullError
from runner.images import ImageStore, Reference, RegistryClient, export_images, import_archive
from runner.images import mediatypes as mt
from tests.support.tars import Entry, write_tar


@pytest.fixture
def tiny_fs(tmp_path: Path) -> Iterator[Path]:
    """A 1.5 MB tmpfs mounted for the test."""
    mount_point = tmp_path / "tiny"
    mount_point.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1536k", "tmpfs", str(mount_point)], check=True
    )
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=True)


def _visible_state(store: ImageStore) -> tuple[list[str], list[str], list[str]]:
    tmp = sorted(p.name for p in store.tmp.iterdir() if not p.name.endswith(".lock"))
    return (
        sorted(t.reference.familiar for t in store.list_images()),
        sorted(store.blobs.digests()),
        tmp,
    )


def test_no_space_while_adding_a_layer(tiny_fs: Path, tmp_path: Path) -> None:
    store = ImageStore(tiny_fs / "store")
    small = store.add_layer(
        write_tar(tmp_path / "s.tar", [Entry("s", data=b"s")]), compressed=False
    )
    store.commit({"config": {}}, [small], ["small:1"])
    before = _visible_state(store)
    big = write_tar(tmp_path / "big.tar", [Entry("big", data=os.urandom(3 << 20))])
    with pytest.raises(StoreFullError) as info:
        store.add_layer(big, compressed=False)
    assert "no space left" in str(info.value) and "kapal image gc" in str(info.value)
    assert _visible_state(store) == before
    assert store.resolve("small:1").layers == (small,)
    [path] = store.unpacked_layers(store.resolve("small:1"))
    assert (path / "s").read_bytes() == b"s"


def test_no_space_while_unpacking(tiny_fs: Path, tmp_path: Path) -> None:
    store = ImageStore(tiny_fs / "store")
    layer = store.add_layer(
        write_tar(tmp_path / "l.tar", [Entry("f", data=os.urandom(900_000))]), compressed=False
    )
    store.commit({"config": {}}, [layer], ["x:1"])
    with pytest.raises(StoreFullError, match="no space left"):
        store.unpacked_layers(store.resolve("x:1"))
    assert list(store.layers_dir.iterdir()) == []
    assert [p for p in store.tmp.iterdir() if not p.name.endswith(".lock")] == []
    assert store.resolve("x:1").layers == (layer,)


def test_no_space_while_importing(tiny_fs: Path, tmp_path: Path) -> None:
    source = ImageStore(tmp_path / "source")
    layer = source.add_layer(
        write_tar(tmp_path / "l.tar", [Entry("f", data=os.urandom(2 << 20))]), compressed=False
    )
    source.commit({"config": {}}, [layer], ["big:1"])
    export_images(source, ["big:1"], tmp_path / "big.tar", "oci")
    store = ImageStore(tiny_fs / "store")
    with pytest.raises(StoreFullError):
        import_archive(store, tmp_path / "big.tar")
    assert _visible_state(store) == ([], [], [])


def test_no_space_while_exporting_leaves_no_file(tiny_fs: Path, tmp_path: Path) -> None:
    source = ImageStore(tmp_path / "source")
    layer = source.add_layer(
        write_tar(tmp_path / "l.tar", [Entry("f", data=os.urandom(3 << 20))]), compressed=False
    )
    source.commit({"config": {}}, [layer], ["big:1"])
    for fmt in ("docker", "oci"):
        out = tiny_fs / f"big-{fmt}.tar"
        with pytest.raises(StoreFullError, match="no space left"):
            export_images(source, ["big:1"], out, fmt)
        assert list(tiny_fs.glob("*big*")) == [], "a failed export leaves no partial archive"


def test_unknown_manifest_media_type_from_a_registry(tmp_path: Path) -> None:
    # docker-registry refuses to store unknown manifest types, so a MockTransport serves one.
    body = json.dumps({"schemaVersion": 1, "mediaType": "application/x-strange"}).encode()

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=body, headers={"Content-Type": "application/x-strange"})

    store = ImageStore(tmp_path / "s")
    with (
        RegistryClient(transport=httpx.MockTransport(handler)) as client,
        pytest.raises(MediaTypeError, match="application/x-strange"),
    ):
        client.pull(Reference.parse("127.0.0.1:9/odd:1"), store)
    assert store.list_images() == []


_LZ4 = "application/vnd.oci.image.layer.v1.tar+lz4"


def test_unknown_layer_media_type_from_a_registry(tmp_path: Path) -> None:
    manifest = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "config": {"mediaType": mt.OCI_CONFIG, "digest": "sha256:" + "0" * 64, "size": 2},
        "layers": [{"mediaType": _LZ4, "digest": "sha256:" + "1" * 64, "size": 9}],
    }

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=manifest, headers={"Content-Type": mt.OCI_MANIFEST})

    with (
        RegistryClient(transport=httpx.MockTransport(handler)) as client,
        pytest.raises(MediaTypeError, match=r"tar\+lz4' is not supported; kapal reads .* zstd"),
    ):
        client.pull(Reference.parse("127.0.0.1:9/lz4:1"), ImageStore(tmp_path / "s"))
