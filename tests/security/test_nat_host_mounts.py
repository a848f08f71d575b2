"""A job on the NAT network must leave the host's mounts alone.

slirp4netns' sandbox (`--enable-sandbox`) makes only "/" private before it pivots into its sandbox
and lazily unmounts the old root; run as root in the host's mount namespace, that unmount reached
every shared mount below "/" on the host: a private dockerd's containers lost their root
filesystems while kapal jobs ran. The test plays it with a shared mount of its own (whatever the
host's propagation) and a mount below it, and runs a NAT container.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from runner.images import ImageStore
from runner.runtime.backend import ContainerSpec, ImageDefaults
from runner.runtime.embedded import EmbeddedBackend
from runner.runtime.oneshot import run_container
from runner.runtime.syscalls import mount_points
from runner.settings import RunnerSettings

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def shared_host_mount(tmp_path: Path) -> Iterator[Path]:
    """A shared tmpfs at tmp_path/shared with a tmpfs mounted below it holding a file."""
    outer, inner = tmp_path / "shared", tmp_path / "shared" / "inner"
    outer.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(outer)], check=True)
    try:
        subprocess.run(["mount", "--make-shared", str(outer)], check=True)
        inner.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(inner)], check=True)
        (inner / "kept").write_text("still here\n")
        yield inner
    finally:
        subprocess.run(["umount", "-R", "-l", str(outer)], check=False)


def test_a_nat_container_does_not_unmount_the_hosts_shared_mounts(
    kapal_settings: RunnerSettings,
    image_store: ImageStore,
    busybox_image: str,
    shared_host_mount: Path,
) -> None:
    image = image_store.resolve(busybox_image)
    spec = ContainerSpec(
        layers=tuple(image_store.unpacked_layers(image)),
        image=ImageDefaults.from_image_config(image.config),
        command=("true",),
    )
    backend = EmbeddedBackend(kapal_settings)
    for _ in range(3):
        assert run_container(backend, spec, network="nat").ok
        assert str(shared_host_mount) in mount_points()
        assert (shared_host_mount / "kept").read_text() == "still here\n"
