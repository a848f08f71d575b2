"""Fixtures for the container runtime tests: a real runc backend on the busybox image.

Every backend handed out records the containers it starts; after each test, `leftovers` checks
that none of them left runc state, a mount, a cgroup or a directory behind.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from runner.images import ImageStore
from runner.runtime.backend import ContainerSpec, ImageDefaults, Sandbox, SandboxSpec
from runner.runtime.cgroups import current_hierarchies
from runner.runtime.embedded import EmbeddedBackend
from runner.runtime.paths import RuntimePaths
from runner.runtime.syscalls import mount_points
from runner.settings import RunnerSettings


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


class RecordingBackend(EmbeddedBackend):
    """The embedded backend, remembering every id it handed out (even for failed starts)."""

    def __init__(self, settings: RunnerSettings) -> None:
        super().__init__(settings)
        self.container_ids: list[str] = []
        self.sandbox_ids: list[str] = []
        self._setting_up = threading.local()  # tests start containers from several threads

    def _new_id(self) -> str:
        new = super()._new_id()
        in_setup = getattr(self._setting_up, "active", False)
        (self.sandbox_ids if in_setup else self.container_ids).append(new)
        return new

    def setup(self, spec: SandboxSpec) -> Sandbox:
        """Set up and record the sandbox."""
        self._next_is_sandbox = True
        try:
            return super().setup(spec)
        finally:
            self._setting_up = threading.local()  # tests start containers from several threads


def leftovers(
    settings: RunnerSettings, container_ids: list[str], sandbox_ids: list[str]
) -> list[str]:
    """Everything the given containers and sandboxes left behind (empty when clean)."""
    paths = RuntimePaths.for_settings(settings)
    found: list[str] = []
    mounts = mount_points()
    for cid in container_ids:
        if (paths.runc_state / cid).exists():
            found.append(f"runc state of {cid}")
        for directory in (paths.container_run_dir(cid), paths.container_disk_dir(cid)):
            if directory.exists():
                found.append(f"directory {directory}")
        found += [f"mount {m}" for m in mounts if f"ct-{cid}" in m]
        for hierarchy in current_hierarchies():
            if (hierarchy.own_dir / f"kapal-{cid}").exists():
                found.append(f"cgroup {hierarchy.own_dir / f'kapal-{cid}'}")
    for sid in sandbox_ids:
        if paths.sandbox_dir(sid).exists():
            found.append(f"directory {paths.sandbox_dir(sid)}")
        found += [f"mount {m}" for m in mounts if f"sb-{sid}" in m]
    return found


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
