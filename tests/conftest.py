"""Session fixtures shared by every test: a kapal data dir, image store, base images, registry.

The shared store holds `busybox_image` and `debian_image` for the whole session: tests must not
remove images from it or run `gc()` on it (use a store of their own under `tmp_path` for that).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from runner.images import ImageStore, bootstrap_busybox, bootstrap_debian
from runner.settings import RunnerSettings
from tests.support.registry import run_registry
from tests.support.s3 import S3Server, run_s3_server

DEBIAN_TARBALL_CACHE = Path("/var/cache/kapal-tests")
DEBIAN_PACKAGES = ("python3",)


@pytest.fixture(scope="session")
def kapal_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A kapal data dir (KAPAL_DATA_DIR) for the whole session."""
    return tmp_path_factory.mktemp("kapal-data")


@pytest.fixture(scope="session")
def kapal_env(kapal_data_dir: Path) -> dict[str, str]:
    """Environment for `kapal` subprocesses: this process's plus KAPAL_DATA_DIR."""
    return dict(os.environ, KAPAL_DATA_DIR=str(kapal_data_dir))


@pytest.fixture(scope="session")
def kapal_settings(kapal_data_dir: Path) -> RunnerSettings:
    """RunnerSettings pointing at the session's data dir."""
    return RunnerSettings(data_dir=kapal_data_dir)


@pytest.fixture(scope="session")
def image_store(kapal_settings: RunnerSettings) -> ImageStore:
    """The session's image store (`<kapal_data_dir>/images`)."""
    return ImageStore(kapal_settings.images_dir)


@pytest.fixture(scope="session")
def busybox_image(image_store: ImageStore) -> str:
    """Reference of a tiny busybox image (from Debian's busybox-static) in `image_store`."""
    bootstrap_busybox(image_store, "busybox:latest")
    return "busybox:latest"


@pytest.fixture(scope="session")
def debian_image(image_store: ImageStore) -> str:
    """Reference of a `debian:bookworm` minbase image with python3, bootstrapped once.

    The mmdebstrap tarball is cached under /var/cache/kapal-tests keyed by the package list.
    """
    bootstrap_debian(
        image_store,
        "debian:bookworm",
        include=DEBIAN_PACKAGES,
        tarball_cache=DEBIAN_TARBALL_CACHE,
    )
    return "debian:bookworm"


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A running docker-registry on 127.0.0.1 with temp storage; yields "127.0.0.1:PORT"."""
    with run_registry(tmp_path_factory.mktemp("registry")) as address:
        yield address


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """A running S3-compatible server (moto) on 127.0.0.1 that checks signatures; yields its
    endpoint and a key pair allowed `s3:*`. Tests make buckets of their own (`make_bucket`)."""
    with run_s3_server(tmp_path_factory.mktemp("s3")) as server:
        yield server
