"""The image store: commit/resolve/tag/remove, unpacking for overlayfs, gc, concurrency, faults."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from runner.errors import (
    ArchiveError,
    CorruptBlobError,
    ImageNotFoundError,
    MediaTypeError,
)
from runner.images import ImageStore, LayerDescriptor
from tests.support.tars import Entry, write_tar

BASE_CONFIG = {"config": {"Env": ["PATH=/bin"], "Cmd": ["sh"]}}


def make_image(store: ImageStore, tmp: Path, name: str, files: dict[str, bytes], tag: str) -> str:
    """Commit a one-layer image holding `files`; return its manifest digest."""
    layer = store.add_layer(
        write_tar(tmp / f"{name}.tar", [Entry(k, data=v) for k, v in files.items()]),
        compressed=False,
    )
    return store.commit(BASE_CONFIG, [layer], [tag]).digest


def test_busybox_fixture_resolves_and_unpacks(image_store: ImageStore, busybox_image: str) -> None:
    image = image_store.resolve(busybox_image)
    assert image_store.resolve("docker.io/library/busybox:latest").digest == image.digest
    assert image.config["config"]["Cmd"] == ["sh"]
    assert image.config["os"] == "linux" and image.config["architecture"] == "amd64"
    [layer] = image_store.unpacked_layers(image)
    assert (layer / "bin" / "busybox").is_file()
    assert os.readlink(layer / "bin" / "sh") == "/bin/busybox"
    assert stat.S_IMODE((layer / "tmp").stat().st_mode) == 0o1777
    out = subprocess.run(
        ["chroot", str(layer), "/bin/sh", "-c", "echo hi from $(cat /etc/hostname)"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout == "hi from busybox\n"


def test_commit_resolve_by_tag_and_digest(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "store")
    digest = make_image(store, tmp_path, "a", {"hello.txt": b"hello"}, "app:1")
    by_tag = store.resolve("app:1")
    by_digest = store.resolve(f"docker.io/library/app@{digest}")
    assert by_tag == by_digest
    assert by_tag.digest == digest
    [layer] = by_tag.layers
    assert layer.diff_id == layer.digest  # uncompressed
    assert by_tag.config["rootfs"]["diff_ids"] == [layer.diff_id]
    store.tag(by_tag, "127.0.0.1:5000/team/app:v2")
    assert [t.reference.familiar for t in store.list_images()] == [
        "127.0.0.1:5000/team/app:v2",
        "app:1",
    ]
    inspected = store.inspect("app:1")
    assert inspected["RepoTags"] == ["127.0.0.1:5000/team/app:v2", "app:1"]
    assert inspected["Layers"][0]["DiffID"] == layer.diff_id


def test_missing_image_error_says_how_to_get_it(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "store")
    with pytest.raises(ImageNotFoundError) as info:
        store.resolve("nosuch:1")
    message = str(info.value)
    assert "'nosuch:1'" in message
    for how in ("kapal image pull nosuch:1", "kapal image import", "kapal image bootstrap"):
        assert how in message


def test_compressed_layer_digest_and_diff_id(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "store")
    entries = [Entry("f", data=b"x" * 1000)]
    plain = store.add_layer(write_tar(tmp_path / "p.tar", entries), compressed=False)
    packed = store.add_layer(write_tar(tmp_path / "p.tgz", entries, compress=True), compressed=True)
    assert packed.diff_id == plain.diff_id
    assert packed.digest != plain.digest
    assert packed.media_type.endswith("tar+gzip")
    image = store.commit(BASE_CONFIG, [packed], ["gz:1"])
    [path] = store.unpacked_layers(image)
    assert (path / "f").read_bytes() == b"x" * 1000


def test_unpack_keeps_metadata_and_converts_whiteouts(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "store")
    entries = [
        Entry("etc", tarfile.DIRTYPE, mode=0o755),
        Entry("etc/.wh.hostname"),
        Entry("usr", tarfile.DIRTYPE, mode=0o755),
        Entry("usr/.wh..wh..opq"),
        Entry("usr/kept", data=b"k"),
        Entry("bin", tarfile.DIRTYPE, mode=0o755),
        Entry("bin/suid", data=b"#!/bin/sh\n", mode=0o4755, uid=1234, gid=5678),
        Entry("bin/hard", tarfile.LNKTYPE, linkname="bin/suid"),
        Entry("dev", tarfile.DIRTYPE, mode=0o755),
        Entry("dev/null", tarfile.CHRTYPE, mode=0o666, devmajor=1, devminor=3),
        Entry("tagged", data=b"t", xattrs={"user.kapal": "yes"}),
        Entry("link", tarfile.SYMTYPE, linkname="usr/kept"),
    ]
    layer = store.add_layer(write_tar(tmp_path / "w.tar", entries), compressed=False)
    [root] = store.unpacked_layers(store.commit(BASE_CONFIG, [layer], ["w:1"]))
    hostname = (root / "etc" / "hostname").lstat()
    assert stat.S_ISCHR(hostname.st_mode) and hostname.st_rdev == 0
    assert not (root / "etc" / ".wh.hostname").exists()
    assert os.getxattr(root / "usr", "trusted.overlay.opaque") == b"y"
    assert not (root / "usr" / ".wh..wh..opq").exists()
    assert (root / "usr" / "kept").read_bytes() == b"k"
    suid = (root / "bin" / "suid").stat()
    assert (suid.st_uid, suid.st_gid, stat.S_IMODE(suid.st_mode)) == (1234, 5678, 0o4755)
    assert (root / "bin" / "hard").stat().st_ino == suid.st_ino
    null = (root / "dev" / "null").lstat()
    assert stat.S_ISCHR(null.st_mode) and os.major(null.st_rdev) == 1
    assert os.getxattr(root / "tagged", "user.kapal") == b"yes"
    assert os.readlink(root / "link") == "usr/kept"


def test_unpacked_layers_work_as_overlay_lowerdirs(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "store")
    bottom = store.add_layer(
        write_tar(
            tmp_path / "b.tar",
            [
                Entry("etc", tarfile.DIRTYPE, mode=0o755),
                Entry("etc/gone", data=b"1"),
                Entry("etc/stay", data=b"2"),
                Entry("opt", tarfile.DIRTYPE, mode=0o755),
                Entry("opt/old", data=b"3"),
            ],
        ),
        compressed=False,
    )
    top = store.add_layer(
        write_tar(
            tmp_path / "t.tar",
            [
                Entry("etc", tarfile.DIRTYPE, mode=0o755),
                Entry("etc/.wh.gone"),
                Entry("opt", tarfile.DIRTYPE, mode=0o755),
                Entry("opt/.wh..wh..opq"),
                Entry("opt/new", data=b"4"),
            ],
        ),
        compressed=False,
    )
    lowers = store.unpacked_layers(store.commit(BASE_CONFIG, [bottom, top], ["o:1"]))
    merged = tmp_path / "merged"
    merged.mkdir()
    lowerdir = ":".join(str(p) for p in reversed(lowers))
    subprocess.run(
        ["mount", "-t", "overlay", "overlay", "-o", f"lowerdir={lowerdir}", str(merged)],
        check=True,
    )
    try:
        assert sorted(os.listdir(merged / "etc")) == ["stay"]
        assert sorted(os.listdir(merged / "opt")) == ["new"]
    finally:
        subprocess.run(["umount", str(merged)], check=True)


@pytest.mark.parametrize(
    ("entries", "complaint"),
    [
        ([Entry("../evil", data=b"x")], "outside the layer"),
        ([Entry("a/../../evil", data=b"x")], "outside the layer"),
        (
            [Entry("lnk", tarfile.SYMTYPE, linkname="/etc"), Entry("lnk/passwd", data=b"x")],
            "under the symlink",
        ),
        ([Entry("h", tarfile.LNKTYPE, linkname="../../etc/shadow")], "outside the layer"),
        (
            [
                Entry("s", tarfile.SYMTYPE, linkname="/etc"),
                Entry("h", tarfile.LNKTYPE, linkname="s/shadow"),
            ],
            "under the symlink",
        ),
    ],
)
def test_unsafe_layers_are_refused(tmp_path: Path, entries: list[Entry], complaint: str) -> None:
    store = ImageStore(tmp_path / "store")
    with pytest.raises(ArchiveError, match=complaint):
        store.add_layer(write_tar(tmp_path / "bad.tar", entries), compressed=False)
    assert list(store.blobs.digests()) == []


@pytest.mark.parametrize("compress", [False, True])
def test_truncated_layer_is_refused(tmp_path: Path, compress: bool) -> None:
    store = ImageStore(tmp_path / "store")
    path = write_tar(tmp_path / "l.tar", [Entry("big", data=os.urandom(50_000))], compress=compress)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ArchiveError, match="truncated"):
        store.add_layer(path, compressed=compress)
    assert list(store.blobs.digests()) == []
    assert list(store.tmp.iterdir()) == []


def test_corrupt_blobs_are_reported_and_not_unpacked(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "store")
    make_image(store, tmp_path, "a", {"f": b"original"}, "c:1")
    image = store.resolve("c:1")
    blob = store.blobs.path(image.layers[0].digest)
    blob.write_bytes(blob.read_bytes().replace(b"original", b"tampered"))
    with pytest.raises(CorruptBlobError, match="kapal image rm"):
        store.unpacked_layers(image)
    assert list(store.layers_dir.iterdir()) == []
    config = store.blobs.path(image.config_digest)
    config.write_bytes(config.read_bytes().replace(b"PATH", b"HTAP"))
    with pytest.raises(CorruptBlobError, match=image.config_digest):
        store.resolve("c:1")


def test_unknown_layer_media_type(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "store")
    layer = store.add_layer(write_tar(tmp_path / "l.tar", [Entry("f")]), compressed=False)
    weird = LayerDescriptor(layer.digest, layer.diff_id, layer.size, "application/x-weird")
    with pytest.raises(MediaTypeError, match="application/x-weird"):
        store.commit(BASE_CONFIG, [weird], ["m:1"])
    assert store.list_images() == []


def test_remove_and_gc_keep_shared_layers(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "store")
    shared = store.add_layer(
        write_tar(tmp_path / "s.tar", [Entry("s", data=b"s")]), compressed=False
    )
    only_a = store.add_layer(
        write_tar(tmp_path / "a.tar", [Entry("a", data=b"a")]), compressed=False
    )
    a = store.commit({"config": {"Cmd": ["a"]}}, [shared, only_a], ["a:1"])
    b = store.commit({"config": {"Cmd": ["b"]}}, [shared], ["b:1"])
    store.unpacked_layers(a)
    store.remove("a:1")
    assert not store.exists("a:1")
    assert not store.blobs.has(a.digest) and not store.blobs.has(only_a.digest)
    assert store.blobs.has(shared.digest)
    assert not store.layer_path(only_a.diff_id).exists()
    assert store.layer_path(shared.diff_id).is_dir()
    assert [p.name for p in store.unpacked_layers(store.resolve("b:1"))] == [
        shared.diff_id.split(":")[1]
    ]
    assert store.resolve("b:1") == b
    report = store.gc()
    assert (report.blobs, report.layers) == (0, 0)


def test_gc_keeps_layers_of_mounted_overlays(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "store")
    make_image(store, tmp_path, "a", {"f": b"x"}, "m:1")
    [lower] = store.unpacked_layers(store.resolve("m:1"))
    merged, upper, work = tmp_path / "merged", tmp_path / "upper", tmp_path / "work"
    for d in (merged, upper, work):
        d.mkdir()
    options = f"lowerdir={lower},upperdir={upper},workdir={work}"
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o", options, str(merged)], check=True)
    try:
        store.untag("m:1")
        report = store.gc()
        assert report.layers == 0 and lower.is_dir()
    finally:
        subprocess.run(["umount", str(merged)], check=True)
    assert store.gc().layers == 1
    assert not lower.exists()


def test_gc_waits_for_sessions(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "store")
    with store.session():
        store.add_layer(write_tar(tmp_path / "l.tar", [Entry("f")]), compressed=False)
        assert store.gc(wait=False).blobs == 0
        assert len(list(store.blobs.digests())) == 1
    assert store.gc(wait=False).blobs == 1


CONCURRENT_WRITER = """
import sys
from pathlib import Path
from runner.images import ImageStore
store = ImageStore(Path(sys.argv[1]))
with store.session():
    layer = store.add_layer(Path(sys.argv[2]), compressed=False)
    image = store.commit({"config": {"Cmd": ["x"]}}, [layer], [f"w:{sys.argv[3]}"])
print(store.unpacked_layers(image)[0])
"""


def test_concurrent_processes_share_blobs_and_layers(tmp_path: Path) -> None:
    root = tmp_path / "store"
    tar = write_tar(tmp_path / "l.tar", [Entry(f"f{i}", data=os.urandom(4096)) for i in range(300)])
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", CONCURRENT_WRITER, str(root), str(tar), str(i)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for i in range(6)
    ]
    outputs = [p.communicate()[0].strip() for p in processes]
    assert [p.returncode for p in processes] == [0] * 6
    store = ImageStore(root)
    assert len(set(outputs)) == 1
    assert sorted(t.reference.familiar for t in store.list_images()) == [f"w:{i}" for i in range(6)]
    assert len(list(store.layers_dir.iterdir())) == 1
    assert len(os.listdir(outputs[0])) == 300
    assert [p for p in store.tmp.iterdir() if not p.name.endswith(".lock")] == []
    tags = json.loads((root / "tags.json").read_text())
    assert len(tags) == 6
