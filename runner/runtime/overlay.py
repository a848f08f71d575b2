"""Overlay root filesystems: image layers (read-only) below a per-container upper dir."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from runner.errors import ContainerStartError
from runner.runtime.syscalls import mount

# overlayfs takes its options in one page; longer lowerdir lists fail with EINVAL.
_MAX_OPTIONS = 4000


def _options(lowers: Sequence[Path], upper: Path, work: Path) -> str:
    lowerdir = ":".join(str(p) for p in reversed(lowers))
    # `volatile`: no sync of the upper dir's filesystem at unmount (syncfs of the whole data-dir
    # filesystem, tens of ms per container on a busy host). A container's upper dir is never
    # mounted again, and after a crash `kapal gc` removes it, so nothing relies on it being
    # durable.
    return f"lowerdir={lowerdir},upperdir={upper},workdir={work},volatile"


@contextmanager
def _short_names(lowers: Sequence[Path]) -> Iterator[list[Path]]:
    """The layer dirs as `/proc/self/fd/<n>` of O_PATH descriptors, open while the caller mounts."""
    fds: list[int] = []
    try:
        for lower in lowers:
            fds.append(os.open(lower, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC))
        yield [Path(f"/proc/self/fd/{fd}") for fd in fds]
    finally:
        for fd in fds:
            os.close(fd)


def mount_overlay(lowers: Sequence[Path], upper: Path, work: Path, target: Path) -> None:
    """Mount an overlay on `target`; `lowers` are bottom-first (image layer order).

    Layer dirs in the image store have long paths (a 64-digit digest each), so about 40 fit in
    the one page overlayfs reads its options from. When they do not fit, the layers are named
    through descriptors (`/proc/self/fd/<n>`, resolved by the kernel at mount time) instead, so
    about 200 fit.
    """
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
    try:
        if len(_options(lowers, upper, work)) <= _MAX_OPTIONS:
            mount("overlay", str(target), "overlay", 0, _options(lowers, upper, work))
            return
        with _short_names(lowers) as short:
            options = _options(short, upper, work)
            if len(options) > _MAX_OPTIONS:
                raise ContainerStartError(
                    f"the image has too many layers ({len(lowers)}) for one overlay mount: "
                    "squash it (rebuild with fewer RUN/COPY steps)"
                )
            mount("overlay", str(target), "overlay", 0, options)
    except OSError as err:
        raise ContainerStartError(
            f"cannot mount the container's overlay root filesystem on {target}: {err.strerror}. "
            "kapal needs root and a kernel with overlayfs; the upper dir must be on the same "
            "filesystem as KAPAL_DATA_DIR"
        ) from err
