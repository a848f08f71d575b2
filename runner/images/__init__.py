"""The OCI image store: references, blobs, layers, import/export, registry client, bootstrap.

Typical use::

    store = ImageStore(RunnerSettings().images_dir)
    image = store.resolve("debian:bookworm")        # ImageNotFoundError says how to get it
    with store.session():                           # no gc between unpacking and mounting
        lowerdirs = store.unpacked_layers(image)    # bottom-first, ready for overlayfs
        ...mount the overlay (lowerdir = reversed(lowerdirs))...
    image.config["config"]["Env"], image.config["config"].get("Cmd")

A build adds layers and commits them inside one session, so `gc()` cannot run in between::

    with store.session():
        layer = store.add_layer(tar_path, compressed=False)
        image = store.commit(config, [*parent.layers, layer], tags=["app:1.0"])

A job's `image:` goes through `ImageResolver(store, settings).resolve(name)`: the local store,
then `settings.pull_registries`, then an `ImageNotFoundError` saying how to get the image.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from runner.images.archives import export_images, import_archive
    from runner.images.bootstrap import bootstrap_busybox, bootstrap_debian
    from runner.images.image import Image, LayerDescriptor
    from runner.images.reference import Reference
    from runner.images.registry import RegistryClient
    from runner.images.resolve import ImageResolver
    from runner.images.store import GcReport, ImageStore, TaggedImage

# Names are imported on first use: `kapal exec` needs the store, not the HTTP client behind
# RegistryClient, and every command line pays for what it imports at start.
_SOURCES = {
    "export_images": "runner.images.archives",
    "import_archive": "runner.images.archives",
    "bootstrap_busybox": "runner.images.bootstrap",
    "bootstrap_debian": "runner.images.bootstrap",
    "Image": "runner.images.image",
    "LayerDescriptor": "runner.images.image",
    "Reference": "runner.images.reference",
    "RegistryClient": "runner.images.registry",
    "ImageResolver": "runner.images.resolve",
    "GcReport": "runner.images.store",
    "ImageStore": "runner.images.store",
    "TaggedImage": "runner.images.store",
}

__all__ = [
    "GcReport",
    "Image",
    "ImageResolver",
    "ImageStore",
    "LayerDescriptor",
    "Reference",
    "RegistryClient",
    "TaggedImage",
    "bootstrap_busybox",
    "bootstrap_debian",
    "export_images",
    "import_archive",
]


def __getattr__(name: str) -> Any:
    """Import a public name from the module that holds it, on first use."""
    module = _SOURCES.get(name)
    if module is None:
        raise AttributeError(f"module 'runner.images' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
