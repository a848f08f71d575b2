"""Base images made offline: busybox from busybox-static, Debian with mmdebstrap."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from runner.errors import BootstrapError
from runner.images import ImageStore, bootstrap_busybox, bootstrap_debian
from runner.images.bootstrap import split_debian_name
from tests.conftest import DEBIAN_TARBALL_CACHE


def test_busybox_bootstrap_is_deterministic(tmp_path: Path, busybox_image: str) -> None:
    first = bootstrap_busybox(ImageStore(tmp_path / "a"))
    second = bootstrap_busybox(ImageStore(tmp_path / "b"), "other/busybox:2")
    assert first.digest == second.digest
    assert first.layers[0].diff_id == second.layers[0].diff_id


def test_busybox_source_date_epoch_is_honoured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    image = bootstrap_busybox(ImageStore(tmp_path / "a"))
    assert image.created == "2023-11-14T22:13:20Z"
    [layer] = ImageStore(tmp_path / "a").unpacked_layers(image)
    assert int((layer / "etc" / "passwd").stat().st_mtime) == 1_700_000_000


def test_debian_image_runs_python(image_store: ImageStore, debian_image: str) -> None:
    image = image_store.resolve(debian_image)
    assert image.config["config"]["Cmd"] == ["bash"]
    assert len(image.layers) == 1
    [root] = image_store.unpacked_layers(image)
    out = subprocess.run(
        [
            str(shutil.which("chroot")),
            str(root),
            "python3",
            "-c",
            "import sys; print(sys.version_info[:2])",
        ],
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert out.stdout.strip() == "(3, 11)"
    shadow = (root / "etc" / "shadow").stat()
    assert (shadow.st_uid, shadow.st_gid) == (0, 42)  # numeric owners kept (group shadow)
    assert "--include python3" in image.config["history"][0]["created_by"]


@pytest.mark.slow
def test_debian_slim_drops_docs(tmp_path: Path, image_store: ImageStore, debian_image: str) -> None:
    store = ImageStore(tmp_path / "s")
    slim = bootstrap_debian(store, "debian:bookworm-slim", tarball_cache=DEBIAN_TARBALL_CACHE)
    [root] = store.unpacked_layers(slim)
    [full_root] = image_store.unpacked_layers(image_store.resolve(debian_image))
    assert (full_root / "usr" / "share" / "doc" / "bash" / "copyright").exists()
    assert (root / "usr" / "share" / "doc" / "bash" / "copyright").exists()
    assert any((full_root / "usr" / "share" / "man").rglob("*.gz"))
    assert not any((root / "usr" / "share" / "man").rglob("*.gz"))
    assert store.resolve("debian:bookworm-slim") == slim


def test_missing_mmdebstrap_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("tar", "python3"):
        found = shutil.which(tool)
        assert found is not None
        os.symlink(found, bin_dir / tool)
    monkeypatch.setenv("PATH", str(bin_dir))
    store = ImageStore(tmp_path / "s")
    with pytest.raises(BootstrapError, match=r"mmdebstrap is not installed.*`mmdebstrap` package"):
        bootstrap_debian(store, "debian:bookworm")
    assert store.list_images() == []


@pytest.mark.parametrize("name", ["ubuntu:jammy", "debian:hamm", "debian:bookworm-fat"])
def test_unknown_bootstrap_names(name: str) -> None:
    with pytest.raises(BootstrapError, match="kapal bootstraps `busybox` and `debian:SUITE"):
        split_debian_name(name)


def test_debian_names() -> None:
    assert split_debian_name("debian:bookworm") == ("bookworm", False)
    assert split_debian_name("debian:trixie-slim") == ("trixie", True)
