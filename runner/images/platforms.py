"""Choosing one image out of a manifest list / OCI index: kapal runs linux/amd64."""

from __future__ import annotations

from typing import Any

from runner.errors import ImageError

WANTED_OS = "linux"
WANTED_ARCHITECTURE = "amd64"
# what `FROM --platform` and `kapal build --platform` accept: the machine kapal builds for
SUPPORTED_PLATFORMS = ("linux/amd64", "linux/x86_64", "linux")


def pick_platform(index: dict[str, Any], where: str) -> dict[str, Any]:
    """The descriptor for linux/amd64 in an index; `ImageError` listing what there is otherwise."""
    manifests = index.get("manifests") or []
    seen = []
    for desc in manifests:
        platform = desc.get("platform") or {}
        os_name, arch = platform.get("os"), platform.get("architecture")
        seen.append(f"{os_name}/{arch}")
        if os_name == WANTED_OS and arch == WANTED_ARCHITECTURE:
            return dict(desc)
    if len(manifests) == 1 and not manifests[0].get("platform"):
        return dict(manifests[0])
    raise ImageError(
        f"{where} has no linux/amd64 image (it has: {', '.join(seen) or 'none'}); kapal runs "
        "linux/amd64 images only"
    )
