"""Import and export: docker-save archives and OCI layouts, read and written by skopeo and umoci."""

from __future__ import annotations

import json
import subprocess
import tarfile
from pathlib import Path

import pytest

from runner.errors import ArchiveError, CorruptBlobError, MediaTypeError
from runner.images import ImageStore, export_images, import_archive
from tests.support.tars import Entry, write_tar


def skopeo(*args: str) -> str:
    """Run skopeo; return its stdout (fail the test with its stderr)."""
    result = subprocess.run(["skopeo", *args], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture
def store(tmp_path: Path) -> ImageStore:
    """A fresh store holding `app:1`: two layers (one gzip), with a config to check."""
    store = ImageStore(tmp_path / "store")
    base = store.add_layer(
        write_tar(tmp_path / "base.tar", [Entry("etc/os", data=b"base\n")]), compressed=False
    )
    top = store.add_layer(
        write_tar(tmp_path / "top.tgz", [Entry("app/run", data=b"#!/bin/sh\n")], compress=True),
        compressed=True,
    )
    config = {"config": {"Env": ["A=1"], "Cmd": ["/app/run"], "WorkingDir": "/app"}}
    store.commit(config, [base, top], ["app:1"])
    return store


def test_oci_archive_is_read_by_skopeo(store: ImageStore, tmp_path: Path) -> None:
    image = store.resolve("app:1")
    out = tmp_path / "app-oci.tar"
    export_images(store, ["app:1"], out, "oci")
    info = json.loads(skopeo("inspect", f"oci-archive:{out}"))
    assert info["Digest"] == image.digest
    assert info["Layers"] == [x.digest for x in image.layers]
    assert info["Os"] == "linux" and info["Architecture"] == "amd64"
    config = json.loads(skopeo("inspect", "--config", f"oci-archive:{out}"))
    assert config["config"]["Cmd"] == ["/app/run"]


def test_oci_layout_is_unpacked_by_umoci(store: ImageStore, tmp_path: Path) -> None:
    layout = tmp_path / "layout"
    export_images(store, ["app:1"], layout, "oci", as_directory=True)
    bundle = tmp_path / "bundle"
    result = subprocess.run(
        ["umoci", "unpack", "--image", f"{layout}:1", str(bundle)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert (bundle / "rootfs" / "etc" / "os").read_text() == "base\n"
    assert (bundle / "rootfs" / "app" / "run").read_text() == "#!/bin/sh\n"
    runtime_config = json.loads((bundle / "config.json").read_text())
    assert runtime_config["process"]["cwd"] == "/app"
    assert "A=1" in runtime_config["process"]["env"]


def test_docker_archive_is_read_by_skopeo_and_round_trips(
    store: ImageStore, tmp_path: Path
) -> None:
    image = store.resolve("app:1")
    out = tmp_path / "app-docker.tar"
    export_images(store, ["app:1"], out, "docker")
    with tarfile.open(out) as tar:
        names = tar.getnames()
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
        repositories = json.load(tar.extractfile("repositories"))  # type: ignore[arg-type]
    assert manifest[0]["RepoTags"] == ["app:1"]
    assert manifest[0]["Config"] == f"{image.config_digest[7:]}.json"
    assert "app" in repositories and "1" in repositories["app"]
    assert all(name in names for name in manifest[0]["Layers"])
    info = json.loads(skopeo("inspect", f"docker-archive:{out}"))
    assert info["Layers"] == [x.diff_id for x in image.layers]  # docker archives are uncompressed
    other = ImageStore(tmp_path / "other")
    [imported] = import_archive(other, out)
    assert imported.config_digest == image.config_digest  # same image id
    assert imported.reference is not None and imported.reference.familiar == "app:1"
    [_, path_top] = other.unpacked_layers(imported)
    assert (path_top / "app" / "run").is_file()


def test_kapal_imports_what_skopeo_writes(store: ImageStore, tmp_path: Path) -> None:
    layout = tmp_path / "layout"
    export_images(store, ["app:1"], layout, "oci", as_directory=True)
    image = store.resolve("app:1")
    skopeo_docker = tmp_path / "sk-docker.tar"
    skopeo_oci = tmp_path / "sk-oci"
    skopeo("copy", "-q", f"oci:{layout}:1", f"docker-archive:{skopeo_docker}:team/app:sk")
    skopeo("copy", "-q", f"oci:{layout}:1", f"oci:{skopeo_oci}:v9")
    skopeo("copy", "-q", f"oci:{layout}:1", f"oci-archive:{tmp_path / 'sk.tar'}:v8")
    other = ImageStore(tmp_path / "other")
    [from_docker] = import_archive(other, skopeo_docker)
    assert from_docker.config_digest == image.config_digest
    [from_oci] = import_archive(other, skopeo_oci, tag="team/app:from-oci")
    assert from_oci.config_digest == image.config_digest
    [from_archive] = import_archive(other, tmp_path / "sk.tar", tag="team/app")
    assert from_archive.reference is not None
    assert str(from_archive.reference) == "docker.io/team/app:v8"  # tag from ref.name
    assert sorted(t.reference.familiar for t in other.list_images()) == [
        "team/app:from-oci",
        "team/app:sk",
        "team/app:v8",
    ]
    lowers = other.unpacked_layers(other.resolve("team/app:sk"))
    assert (lowers[0] / "etc" / "os").read_text() == "base\n"


def test_export_import_oci_archive_round_trip_keeps_digest(
    store: ImageStore, tmp_path: Path
) -> None:
    out = tmp_path / "a.tar"
    export_images(store, ["app:1"], out, "oci")
    other = ImageStore(tmp_path / "other")
    [image] = import_archive(other, out)
    assert image.digest == store.resolve("app:1").digest
    assert other.resolve("app:1") == image


def test_unnamed_layout_asks_for_a_tag(store: ImageStore, tmp_path: Path) -> None:
    layout = tmp_path / "layout"
    skopeo("copy", "-q", "oci:" + str(_export_layout(store, tmp_path)) + ":1", f"oci:{layout}:v1")
    with pytest.raises(ArchiveError, match="--tag NAME:TAG"):
        import_archive(ImageStore(tmp_path / "other"), layout)


def _export_layout(store: ImageStore, tmp_path: Path) -> Path:
    layout = tmp_path / "kapal-layout"
    export_images(store, ["app:1"], layout, "oci", as_directory=True)
    return layout


def test_truncated_archive_imports_nothing(store: ImageStore, tmp_path: Path) -> None:
    out = tmp_path / "a.tar"
    export_images(store, ["app:1"], out, "docker")
    out.write_bytes(out.read_bytes()[: out.stat().st_size * 2 // 3])
    other = ImageStore(tmp_path / "other")
    with pytest.raises(ArchiveError, match="truncated"):
        import_archive(other, out)
    assert other.list_images() == []
    assert list(other.blobs.digests()) == []
    assert [p for p in other.tmp.iterdir() if not p.name.endswith(".lock")] == []


def test_not_an_archive(tmp_path: Path) -> None:
    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"this is not a tar file at all" * 100)
    with pytest.raises(ArchiveError, match="not a tar") as caught:
        import_archive(ImageStore(tmp_path / "s"), junk)
    assert "\n" not in str(caught.value), "one line, not tarfile's list of tried formats"
    with pytest.raises(ArchiveError, match="no such file"):
        import_archive(ImageStore(tmp_path / "s"), tmp_path / "missing.tar")


def test_corrupt_blob_in_layout_is_refused(store: ImageStore, tmp_path: Path) -> None:
    layout = _export_layout(store, tmp_path)
    image = store.resolve("app:1")
    blob = layout / "blobs" / "sha256" / image.layers[0].digest[7:]
    data = blob.read_bytes()
    blob.unlink()  # it is a hard link into the store: replace, do not modify in place
    blob.write_bytes(data.replace(b"base\n", b"BASE\n"))
    other = ImageStore(tmp_path / "other")
    with pytest.raises(CorruptBlobError, match=image.layers[0].digest):
        import_archive(other, layout)
    assert other.list_images() == []


def test_unknown_media_type_in_layout(store: ImageStore, tmp_path: Path) -> None:
    layout = _export_layout(store, tmp_path)
    index = json.loads((layout / "index.json").read_text())
    index["manifests"][0]["mediaType"] = "application/vnd.example.weird+json"
    (layout / "index.json").write_text(json.dumps(index))
    other = ImageStore(tmp_path / "other")
    with pytest.raises(MediaTypeError, match="weird"):
        import_archive(other, layout)
    assert other.list_images() == []


def test_exporting_into_an_existing_layout_keeps_other_images(
    store: ImageStore, tmp_path: Path
) -> None:
    layout = _export_layout(store, tmp_path)  # app:1
    image = store.resolve("app:1")
    second = store.commit({"config": {"Cmd": ["two"]}}, image.layers[:1], ["two:2"])
    export_images(store, ["two:2"], layout, "oci")  # an existing directory: add to it
    index = json.loads((layout / "index.json").read_text())
    assert [m["annotations"]["org.opencontainers.image.ref.name"] for m in index["manifests"]] == [
        "1",
        "2",
    ]
    config = json.loads(skopeo("inspect", "--config", f"oci:{layout}:2"))
    assert config["config"]["Cmd"] == ["two"]
    other = ImageStore(tmp_path / "other")
    imported = import_archive(other, layout)
    assert sorted(i.digest for i in imported) == sorted([image.digest, second.digest])
    assert sorted(t.reference.familiar for t in other.list_images()) == ["app:1", "two:2"]
