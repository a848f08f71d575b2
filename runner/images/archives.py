"""Image archives on disk: reading them safely, writing them deterministically and atomically.

`import_archive` recognises an OCI image layout (a directory or a tar of one, as `skopeo copy
oci-archive:` writes) and a `docker save` archive (plain or gzip); `export_images` writes either.
"""

from __future__ import annotations

import gzip
import os
import shutil
import tarfile
import tempfile
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from runner.errors import ArchiveError
from runner.images import docker_archive, oci_layout
from runner.images.blobs import space_checked
from runner.images.image import Image
from runner.images.reference import Reference
from runner.images.store import ImageStore

FORMATS = ("docker", "oci")


@contextmanager
def extracted(archive: Path, tmp: Path) -> Iterator[Path]:
    """Unpack an archive tar (plain or gzip) into a temp dir, refusing unsafe members."""
    if not archive.exists():
        raise ArchiveError(f"{archive}: no such file")
    work = Path(tempfile.mkdtemp(dir=tmp, prefix="archive-"))
    try:
        try:
            with space_checked(tmp), tarfile.open(archive, "r:*") as tar:
                tar.extractall(work, filter="data")
        except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
            # tarfile's "r:*" lists every compression it tried, over several lines: say it once.
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            if "could not be opened" in reason:
                reason = "neither a tar nor a compressed tar"
            raise ArchiveError(
                f"{archive}: the archive is truncated or not a tar ({reason}); nothing was "
                "imported. Export or download it again."
            ) from exc
        yield work
    finally:
        shutil.rmtree(work, ignore_errors=True)


def write_tree_tar(source: Path, out: Path) -> None:
    """Tar the tree at `source` into `out`: sorted, numeric owners 0, mtime 0; atomic."""
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.")
    os.close(fd)
    part = Path(name)
    try:
        with space_checked(out.parent):
            with tarfile.open(part, "w", format=tarfile.PAX_FORMAT) as tar:
                for path in sorted(source.rglob("*")):
                    info = tar.gettarinfo(str(path), str(path.relative_to(source)))
                    info.uid = info.gid = 0
                    info.uname = info.gname = ""
                    info.mtime = 0
                    info.mode = 0o755 if info.isdir() else 0o644
                    if info.isreg():
                        with path.open("rb") as f:
                            tar.addfile(info, f)
                    else:
                        tar.addfile(info)
            os.replace(part, out)
    finally:
        part.unlink(missing_ok=True)


def import_archive(store: ImageStore, path: Path, tag: str | None = None) -> list[Image]:
    """Import every image of an OCI layout (dir or tar) or docker-save archive; return them.

    `tag` names the image when the archive does not (or renames it when it holds exactly one).
    """
    tag_ref = Reference.parse(tag) if tag else None
    repo_only = bool(tag) and "@" not in str(tag) and ":" not in str(tag).rsplit("/", 1)[-1]
    with store.session():
        if path.is_dir():
            return oci_layout.import_layout(store, path, tag_ref, str(path), repo_only=repo_only)
        with extracted(path, store.tmp) as root:
            if (root / "index.json").is_file() and (root / "oci-layout").is_file():
                try:
                    return oci_layout.import_layout(
                        store, root, tag_ref, str(path), repo_only=repo_only
                    )
                except oci_layout.UnnamedLayoutError:
                    if not (root / "manifest.json").is_file():
                        raise
            if (root / "manifest.json").is_file():
                return docker_archive.import_docker_archive(store, root, tag_ref, str(path))
            raise ArchiveError(
                f"{path}: neither a docker-save archive (no manifest.json) nor an OCI image "
                "layout (no index.json and oci-layout); nothing was imported"
            )


def export_images(
    store: ImageStore,
    references: Sequence[str],
    out: Path,
    fmt: str = "docker",
    *,
    as_directory: bool = False,
) -> list[Image]:
    """Write images to `out`: a docker-save tar (`docker`), or an OCI layout (`oci`).

    For `oci`, the layout is written as the directory `out` when `as_directory` is set or `out`
    is an existing directory (blobs already there are kept); otherwise `out` is an oci-archive tar.
    A tar is written atomically: nothing is left at `out` if writing fails.
    """
    if fmt not in FORMATS:
        raise ArchiveError(f"unknown export format {fmt!r}; use one of {', '.join(FORMATS)}")
    if out.is_dir() and fmt != "oci":
        raise ArchiveError(f"{out} is a directory; give a file name for the {fmt} archive")
    images = [store.resolve(r) for r in references]
    refs = [Reference.parse(r) for r in references]
    work = Path(tempfile.mkdtemp(dir=store.tmp, prefix="export-"))
    try:
        with space_checked(out.parent):
            if fmt == "docker":
                docker_archive.write_docker_archive(store, images, refs, work)
                write_tree_tar(work, out)
            elif as_directory or out.is_dir():
                oci_layout.write_layout(store, images, refs, work)
                oci_layout.merge_index(out / "index.json", work / "index.json")
                out.mkdir(parents=True, exist_ok=True)
                # Blobs first, index.json last: a reader never sees an index naming missing blobs.
                for entry in sorted(work.rglob("*"), key=lambda e: e.name == "index.json"):
                    target = out / entry.relative_to(work)
                    if entry.is_dir():
                        target.mkdir(parents=True, exist_ok=True)
                    elif entry.name == "index.json":
                        shutil.copyfile(entry, target.with_name(".index.json.part"))
                        os.replace(target.with_name(".index.json.part"), target)
                    elif not target.exists() or entry.name == "oci-layout":
                        target.parent.mkdir(parents=True, exist_ok=True)
                        shutil.copyfile(entry, target)
            else:
                oci_layout.write_layout(store, images, refs, work)
                write_tree_tar(work, out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return images
