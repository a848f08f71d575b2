"""zstd layers: built by `kapal build --compression zstd`, read by the image store from any source.

zstd blobs made by the `zstd` program (another implementation than the `zstandard` package kapal
writes with), several frames back to back as some tools write them, are checked to unpack and run.
"""

from __future__ import annotations

import io
import subprocess
import tarfile
from pathlib import Path

import pytest

from runner.errors import ArchiveError
from runner.images import ImageStore
from runner.images import mediatypes as mt
from runner.images.archives import export_images, import_archive
from runner.images.reference import Reference
from tests.runner.build.conftest import BuildHelper

BASE = "busybox:latest"


def test_zstd_build_is_reproducible_and_runs_after_a_round_trip(
    builds: BuildHelper, busybox_image: str, tmp_path: Path
) -> None:
    dockerfile = f"""
        FROM {BASE}
        COPY app.txt /app/
        RUN echo built-with-zstd > /app/out
        """
    ctx = builds.context(dockerfile, {"app.txt": "app\n"})
    first = builds.build(ctx, compression="zstd", cache_dir=tmp_path / "c1", tags=("zs:1",))
    second = builds.build(ctx, compression="zstd", cache_dir=tmp_path / "c2")
    assert first.image.digest == second.image.digest
    base = len(builds.store.resolve(Reference.parse(BASE)).layers)
    media = [layer.media_type for layer in first.image.layers]
    assert media[base:] == [mt.OCI_LAYER_ZSTD, mt.OCI_LAYER_ZSTD]
    blob = builds.store.blobs.path(first.image.layers[-1].digest)
    assert blob.read_bytes()[:4] == b"\x28\xb5\x2f\xfd"  # the zstd frame magic
    # the gzip build of the same Dockerfile is another image with the same content
    gzip = builds.build(ctx)
    assert gzip.image.digest != first.image.digest
    assert [x.diff_id for x in gzip.image.layers] == [x.diff_id for x in first.image.layers]
    # an OCI layout keeps zstd blobs; a fresh store unpacks them itself (no cache to borrow from)
    layout = tmp_path / "zs.oci.tar"
    export_images(builds.store, ["zs:1"], layout, "oci")
    other = ImageStore(tmp_path / "other-store")
    (image,) = import_archive(other, layout)
    assert [x.media_type for x in image.layers][base:] == [mt.OCI_LAYER_ZSTD] * 2
    trees = other.unpacked_layers(image)
    assert (trees[-1] / "app" / "out").read_text() == "built-with-zstd\n"
    # a docker archive holds plain tars: the zstd layers are decompressed for it
    archive = tmp_path / "zs.docker.tar"
    export_images(builds.store, ["zs:1"], archive, "docker")
    third = ImageStore(tmp_path / "third-store")
    (loaded,) = import_archive(third, archive)
    assert [x.diff_id for x in loaded.layers] == [x.diff_id for x in first.image.layers]


def _layer_tar(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def _zstd(data: bytes) -> bytes:
    return subprocess.run(["zstd", "-q", "-c"], input=data, capture_output=True, check=True).stdout


def test_store_reads_multi_frame_zstd_layers_from_another_tool(tmp_path: Path) -> None:
    tar = _layer_tar({"etc/greeting": b"hello from zstd\n", "bin/tool": b"x" * 200_000})
    half = len(tar) // 2
    blob = tmp_path / "layer.tar.zst"
    blob.write_bytes(_zstd(tar[:half]) + _zstd(tar[half:]))  # two frames, one stream
    store = ImageStore(tmp_path / "store")
    layer = store.add_layer(blob, compressed="zstd")
    assert layer.media_type == mt.OCI_LAYER_ZSTD
    image = store.commit({"config": {}}, [layer], ["zstd-import:1"])
    (tree,) = store.unpacked_layers(image)
    assert (tree / "etc" / "greeting").read_bytes() == b"hello from zstd\n"
    assert (tree / "bin" / "tool").stat().st_size == 200_000


def test_truncated_zstd_layer_is_a_clear_error(tmp_path: Path) -> None:
    tar = _layer_tar({"f": b"y" * 100_000})
    blob = tmp_path / "cut.tar.zst"
    blob.write_bytes(_zstd(tar)[:-20])
    with pytest.raises(ArchiveError, match="truncated or malformed"):
        ImageStore(tmp_path / "store").add_layer(blob, compressed="zstd")


def test_compression_flag_is_checked(kapal_env: dict[str, str], tmp_path: Path) -> None:
    from tests.runner.build.test_cli import KAPAL

    (tmp_path / "Dockerfile").write_text(f"FROM {BASE}\n")
    result = subprocess.run(
        [KAPAL, "build", "--compression", "lz4", str(tmp_path)],
        env=kapal_env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2
    assert "--compression 'lz4': use gzip or zstd" in result.stderr
