"""Resolving a job's `image:`: local store, then configured registries, then a clear error."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.errors import ImageNotFoundError
from runner.images import ImageResolver, ImageStore, Reference, RegistryClient
from runner.settings import RunnerSettings


def test_local_image_needs_no_registry(image_store: ImageStore, busybox_image: str) -> None:
    settings = RunnerSettings(pull_registries=["127.0.0.1:1"])
    resolver = ImageResolver(image_store, settings)
    assert resolver.resolve(busybox_image) == image_store.resolve(busybox_image)


def test_missing_image_is_pulled_from_a_configured_mirror(
    image_store: ImageStore, busybox_image: str, registry: str, tmp_path: Path
) -> None:
    with RegistryClient() as client:
        client.push(
            image_store,
            image_store.resolve(busybox_image),
            Reference.parse(f"{registry}/library/mirrored:1"),
        )
    store = ImageStore(tmp_path / "s")
    settings = RunnerSettings(pull_registries=["127.0.0.1:1", registry])
    image = ImageResolver(store, settings).resolve("mirrored:1")
    assert image.digest == image_store.resolve(busybox_image).digest
    assert store.resolve("mirrored:1").digest == image.digest  # tagged under the asked name
    assert store.resolve(f"{registry}/library/mirrored:1").digest == image.digest


def test_reference_naming_a_configured_registry_is_pulled_from_it(
    image_store: ImageStore, busybox_image: str, registry: str, tmp_path: Path
) -> None:
    name = f"{registry}/team/direct:1"
    with RegistryClient() as client:
        client.push(image_store, image_store.resolve(busybox_image), Reference.parse(name))
    store = ImageStore(tmp_path / "s")
    image = ImageResolver(store, RunnerSettings(pull_registries=[registry])).resolve(name)
    assert store.resolve(name) == image


def test_not_found_anywhere_says_what_was_tried(registry: str, tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "s")
    resolver = ImageResolver(store, RunnerSettings(pull_registries=[registry]))
    with pytest.raises(ImageNotFoundError) as info:
        resolver.resolve("python:3.12")
    message = str(info.value)
    assert "kapal image bootstrap" in message and "kapal image pull python:3.12" in message
    assert f"registries tried: {registry}" in message


def test_without_configured_registries_nothing_is_pulled(tmp_path: Path) -> None:
    resolver = ImageResolver(ImageStore(tmp_path / "s"), RunnerSettings(pull_registries=[]))
    with pytest.raises(ImageNotFoundError) as info:
        resolver.resolve("python:3.12")
    assert "registries tried" not in str(info.value)
    assert resolver.candidates(Reference.parse("python:3.12")) == []
    assert resolver.candidates(Reference.parse("ghcr.io/a/b:1")) == []
