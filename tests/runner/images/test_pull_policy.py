"""GitLab's image `pull_policy` against the local store and a real registry (always,
if-not-present, never, tried in order)."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.errors import ImageNotFoundError
from runner.images import ImageResolver, ImageStore, Reference, RegistryClient
from runner.images.image import Image
from runner.images.store import namespaced
from runner.job_images import StoreImageProvider
from runner.settings import RunnerSettings
from tests.support.tars import Entry, tar_bytes

OWNER = "repo:7"


def tiny(store: ImageStore, version: str, tag: str | Reference) -> Image:
    """A one-file image saying `version`, tagged `tag` in `store`."""
    tar = store.root.parent / f"layer-{version}.tar"
    tar.write_bytes(tar_bytes([Entry("version", data=version.encode())]))
    layer = store.add_layer(tar, compressed=False)
    return store.commit({"config": {"Labels": {"version": version}}}, [layer], [tag])


@pytest.fixture
def stores(tmp_path: Path, registry: str) -> tuple[ImageStore, str]:
    """A store holding `app:1` at "old", and the registry serving `app:1` at "new"."""
    name = f"policy-{tmp_path.name.lower()}"[:60]
    source = ImageStore(tmp_path / "source")
    fresh = tiny(source, "new", f"{name}:1")
    with RegistryClient() as client:
        client.push(source, fresh, Reference.parse(f"{registry}/library/{name}:1"))
    store = ImageStore(tmp_path / "store")
    tiny(store, "old", f"{name}:1")
    return store, name


def provider(store: ImageStore, registries: list[str]) -> StoreImageProvider:
    settings = RunnerSettings(pull_registries=registries)
    return StoreImageProvider(store, resolver=ImageResolver(store, settings), owner=OWNER)


def version(store: ImageStore, name: str) -> str:
    return str(store.resolve(name).config["config"]["Labels"]["version"])


def test_if_not_present_uses_the_local_copy(stores: tuple[ImageStore, str], registry: str) -> None:
    store, name = stores
    for policy in ((), ("if-not-present",)):
        provider(store, [registry]).resolve(f"{name}:1", policy)
        assert version(store, f"{name}:1") == "old"


def test_always_pulls_afresh(stores: tuple[ImageStore, str], registry: str) -> None:
    store, name = stores
    provider(store, [registry]).resolve(f"{name}:1", ("always",))
    assert version(store, f"{name}:1") == "new"


def test_always_without_a_registry_for_the_image_says_how_to_use_the_local_one(
    stores: tuple[ImageStore, str],
) -> None:
    store, name = stores
    with pytest.raises(ImageNotFoundError) as info:
        provider(store, []).resolve(f"{name}:1", ("always",))
    message = str(info.value)
    assert "pull_policy: always, but no configured pull registry serves" in message
    assert "add `if-not-present`" in message
    # listed after `always`, `if-not-present` takes the local copy
    provider(store, []).resolve(f"{name}:1", ("always", "if-not-present"))
    assert version(store, f"{name}:1") == "old"


def test_always_falls_back_in_order_when_the_pull_fails(
    stores: tuple[ImageStore, str], registry: str
) -> None:
    store, _ = stores
    tiny(store, "local only", "only-here:1")
    with pytest.raises(ImageNotFoundError, match="registries tried"):
        provider(store, [registry]).resolve("only-here:1", ("always",))
    provider(store, [registry]).resolve("only-here:1", ("always", "never"))


def test_never_uses_the_local_store_only(tmp_path: Path, registry: str) -> None:
    store = ImageStore(tmp_path / "empty")
    source = ImageStore(tmp_path / "source")
    image = tiny(source, "remote", "remote-only:1")
    with RegistryClient() as client:
        client.push(source, image, Reference.parse(f"{registry}/library/remote-only:1"))
    images = provider(store, [registry])
    with pytest.raises(ImageNotFoundError, match="pull_policy: never: kapal does not pull it"):
        images.resolve("remote-only:1", ("never",))
    assert not images.available("remote-only:1", ("never",))
    assert not store.exists("remote-only:1")  # nothing was pulled
    assert images.available("remote-only:1")  # if-not-present pulls it


def test_always_uses_the_repositorys_own_build(tmp_path: Path, registry: str) -> None:
    store = ImageStore(tmp_path / "store")
    tiny(store, "built", namespaced(OWNER, Reference.parse("app:7")))
    provider(store, [registry]).resolve("app:7", ("always",))
    assert version(store.for_owner(OWNER), "app:7") == "built"
