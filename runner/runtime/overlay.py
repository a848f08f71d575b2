"""Overlay root filesystems: image layers (read-only) below a per-container upper dir."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from runner.errors import ContainerStartError
from runner.runtime.syscalls import mount

# overlayfs takes its options in one page; longer lowerdir lists fail with EINVAL.
_MAX_OPTIONS = 4000


def mount_overlay(lowers: Sequence[Path], upper: Path, work: Path, target: Path) -> None:
    """Mount an overlay on `target`; `lowers` are bottom-first (image layer order)."""
    if not lowers:
        raise ContainerStartError("a container needs an image: no layers and no rootfs given")
    for lower in lowers:
        if not lower.is_dir():
            raise ContainerStartError(
                f"image layer directory {lower} is missing: re-pull or re-import the image"
            )
    upper.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    target.mkdir(parents=True, exist_ok=True)
    lowerdir = ":".join(str(p) for p in reversed(lowers))
    options = f"lowerdir={lowerdir},upperdir={upper},workdir={work}"
    if len(options) > _MAX_OPTIONS:
        raise ContainerStartError(
            f"the image has too many layers ({len(lowers)}) for one overlay mount: "
            "squash it (rebuild with fewer RUN/COPY steps)"
        )
    try:
        mount("overlay", str(target), "overlay", 0, options)
    except OSError as err:
        raise ContainerStartError(
            f"cannot mount the container's overlay root filesystem on {target}: {err.strerror}. "
            "kapal needs root and a kernel with overlayfs; the upper dir must be on the same "
            "filesystem as KAPAL_DATA_DIR"
        ) from err
