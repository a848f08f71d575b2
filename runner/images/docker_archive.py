"""`docker save` archives: manifest.json, repositories, config JSON and layer tars.

kapal writes the classic layout (`<config hex>.json`, `<diff_id hex>/layer.tar`) that every
`docker load` reads, and reads both that and the OCI-flavoured one of Docker 25+.
"""

from __future__ import annotations

import gzip
import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from runner.errors import ArchiveError
from runner.images import mediatypes as mt
from runner.images.image import Image
from runner.images.reference import Reference
from runner.images.store import ImageStore


def _inside(root: Path, name: str, where: str) -> Path:
    path = (root / name).resolve()
    if not path.is_relative_to(root.resolve()):
        raise ArchiveError(f"{where}: manifest.json points outside the archive ({name!r})")
    if not path.is_file():
        raise ArchiveError(f"{where}: {name} is listed in manifest.json but missing; truncated?")
    return path


def _gzip_file(path: Path) -> bool:
    with path.open("rb") as f:
        return f.read(2) == b"\x1f\x8b"


def import_docker_archive(
    store: ImageStore, root: Path, tag: Reference | None, where: str
) -> list[Image]:
    """Import the images listed in an extracted docker-save archive's manifest.json."""
    try:
        entries = json.loads((root / "manifest.json").read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArchiveError(f"{where}: manifest.json is not valid JSON ({exc})") from exc
    if not isinstance(entries, list) or not entries:
        raise ArchiveError(f"{where}: manifest.json lists no images")
    images = []
    for entry in entries:
        names = [Reference.parse(str(t)) for t in entry.get("RepoTags") or []]
        if tag is not None and len(entries) == 1:
            names = [tag]
        if not names:
            raise ArchiveError(
                f"{where}: an image in the archive has no RepoTags; name it with `--tag NAME:TAG`"
            )
        config_bytes = _inside(root, str(entry.get("Config", "")), where).read_bytes()
        try:
            config = json.loads(config_bytes)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ArchiveError(f"{where}: the image config is not valid JSON ({exc})") from exc
        diff_ids = list((config.get("rootfs") or {}).get("diff_ids") or [])
        layer_names = [str(x) for x in entry.get("Layers") or []]
        if len(diff_ids) != len(layer_names):
            raise ArchiveError(
                f"{where}: {len(layer_names)} layers listed but the config has "
                f"{len(diff_ids)} diff_ids; the archive is malformed"
            )
        layers = []
        for name, diff_id in zip(layer_names, diff_ids, strict=True):
            path = _inside(root, name, where)
            layers.append(
                store.add_layer(path, compressed=_gzip_file(path), expected_diff_id=diff_id)
            )
        images.append(store.commit_config_bytes(config_bytes, layers, names))
    return images


def _uncompressed_layer(store: ImageStore, digest: str, media_type: str, out: Path) -> None:
    source = store.blobs.path(digest)
    compression = mt.layer_compression(media_type, f"layer {digest}")
    if compression == "gzip":
        with gzip.open(source, "rb") as src, out.open("wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
    elif compression == "zstd":
        import zstandard  # only exporting a zstd layer needs it

        with source.open("rb") as src, out.open("wb") as dst:
            reader = zstandard.ZstdDecompressor().stream_reader(src, read_across_frames=True)
            shutil.copyfileobj(reader, dst, 1 << 20)
    else:
        shutil.copyfile(source, out)


def write_docker_archive(
    store: ImageStore, images: Sequence[Image], refs: Sequence[Reference], dest: Path
) -> None:
    """Write the files of a docker-save archive for `images` (named by `refs`) into `dest`."""
    manifest: list[dict[str, Any]] = []
    repositories: dict[str, dict[str, str]] = {}
    for image, ref in zip(images, refs, strict=True):
        config_name = f"{image.config_digest[7:]}.json"
        shutil.copyfile(store.blobs.path(image.config_digest), dest / config_name)
        layer_names = []
        for layer in image.layers:
            name = f"{layer.diff_id[7:]}/layer.tar"
            if not (dest / name).exists():
                (dest / name).parent.mkdir()
                _uncompressed_layer(store, layer.digest, layer.media_type, dest / name)
                (dest / layer.diff_id[7:] / "VERSION").write_text("1.0")
            layer_names.append(name)
        existing = next((m for m in manifest if m["Config"] == config_name), None)
        tags = [ref.familiar] if ref.tag and not ref.digest else []
        if existing is not None:
            existing["RepoTags"] += tags
        else:
            manifest.append({"Config": config_name, "RepoTags": tags, "Layers": layer_names})
        if tags and image.layers:
            familiar_name = ref.familiar.rsplit(":", 1)[0]
            repositories.setdefault(familiar_name, {})[str(ref.tag)] = image.layers[-1].diff_id[7:]
    (dest / "manifest.json").write_text(json.dumps(manifest, separators=(",", ":")))
    (dest / "repositories").write_text(json.dumps(repositories, separators=(",", ":")))
