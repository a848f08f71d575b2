"""Fixtures for the container runtime tests: a real runc backend on the busybox image.

Every backend handed out records the containers and sandboxes it starts; after each test,
`leftovers` (tests/support/runtime_leftovers.py) checks that none of them left runc state, a mount,
a cgroup or a directory behind.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from runner.images import ImageStore
from runner.runtime.backend import ContainerSpec, ImageDefaults
from runner.settings import RunnerSettings
from tests.support.runtime_leftovers import RecordingBackend, leftovers

__all__ = ["BusyboxImage", "RecordingBackend", "leftovers"]


@dataclass(frozen=True)
class BusyboxImage:
    """The shared busybox image as a backend sees it."""

    layers: tuple[Path, ...]
    defaults: ImageDefaults

    def spec(self, *command: str, **overrides: object) -> ContainerSpec:
        """A ContainerSpec on this image running `command`."""
        fields: dict[str, object] = {"layers": self.layers, "image": self.defaults}
        fields.update(overrides)
        return ContainerSpec(command=command or None, **fields)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def busybox(image_store: ImageStore, busybox_image: str) -> BusyboxImage:
    """The busybox image's layers and config defaults."""
    image = image_store.resolve(busybox_image)
    layers = tuple(image_store.unpacked_layers(image))
    return BusyboxImage(layers, ImageDefaults.from_image_config(image.config))


@pytest.fixture
def backend(kapal_settings: RunnerSettings) -> Iterator[RecordingBackend]:
    """An embedded backend; the test fails if any of its containers leaves something behind."""
    recording = RecordingBackend(kapal_settings)
    yield recording
    left = leftovers(kapal_settings, recording.container_ids, recording.sandbox_ids)
    assert left == [], f"left behind: {left}"
