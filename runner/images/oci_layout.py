"""OCI image layouts (`oci-layout`, `index.json`, `blobs/`): reading and writing them."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from runner.errors import ArchiveError
from runner.images import mediatypes as mt
from runner.images.image import Image
from runner.images.platforms import pick_platform
from runner.images.reference import Reference
from runner.images.store import ImageStore, canonical_json

REF_NAME = "org.opencontainers.image.ref.name"
CONTAINERD_NAME = "io.containerd.image.name"


class UnnamedLayoutError(ArchiveError):
    """An OCI layout's image has no name kapal can tag it with."""


def _blob_path(root: Path, digest: str, where: str) -> Path:
    algorithm, _, hexpart = digest.partition(":")
    path = root / "blobs" / algorithm / hexpart
    if not hexpart or not path.is_file():
        raise ArchiveError(f"{where}: blob {digest} is missing from the layout; it is incomplete")
    return path


def _read_json(path: Path, where: str) -> dict[str, Any]:
    try:
        value = json.loads(path.read_bytes())
    except FileNotFoundError as exc:
        raise ArchiveError(f"{where}: {path.name} is missing") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArchiveError(f"{where}: {path.name} is not valid JSON ({exc})") from exc
    if not isinstance(value, dict):
        raise ArchiveError(f"{where}: {path.name} is not a JSON object")
    return value


def _name_for(
    desc: dict[str, Any], tag: Reference | None, repo_only: bool, count: int, where: str
) -> Reference:
    annotations = desc.get("annotations") or {}
    ref_name = str(annotations.get(REF_NAME, ""))
    tag_like = bool(ref_name) and "/" not in ref_name and ":" not in ref_name
    if tag is not None and repo_only and tag_like:
        return tag.with_tag(ref_name)
    if tag is not None and count == 1:
        return tag
    full = annotations.get(CONTAINERD_NAME)
    if full:
        return Reference.parse(str(full))
    if ref_name and not tag_like:
        return Reference.parse(ref_name)
    raise UnnamedLayoutError(
        f"{where}: the image {desc.get('digest')} is named only by the tag {ref_name!r}"
        if ref_name
        else f"{where}: the image {desc.get('digest')} has no name"
    ) from None


def import_layout(
    store: ImageStore, root: Path, tag: Reference | None, where: str, *, repo_only: bool = False
) -> list[Image]:
    """Import the images an OCI layout's index.json lists (blobs verified); tag each one.

    `tag` names them; when it is `repo_only` (written without a tag), the layout's tags are kept.
    """
    layout = _read_json(root / "oci-layout", where)
    if layout.get("imageLayoutVersion") != "1.0.0":
        raise ArchiveError(f"{where}: unsupported imageLayoutVersion {layout!r}")
    index = _read_json(root / "index.json", where)
    entries = list(index.get("manifests") or [])
    if not entries:
        raise ArchiveError(f"{where}: index.json lists no images")
    images = []
    for desc in entries:
        try:
            name = _name_for(desc, tag, repo_only, len(entries), where)
        except UnnamedLayoutError as exc:
            raise UnnamedLayoutError(f"{exc}; name it with `--tag NAME:TAG`") from None
        manifest_desc = desc
        media_type = str(desc.get("mediaType", ""))
        if media_type in mt.INDEXES:
            nested = _read_json(_blob_path(root, str(desc["digest"]), where), where)
            manifest_desc = pick_platform(nested, f"{where}: index {desc['digest']}")
            media_type = str(manifest_desc.get("mediaType", ""))
        mt.check_manifest_type(media_type, where)
        digest = str(manifest_desc["digest"])
        manifest_path = _blob_path(root, digest, where)
        manifest_bytes = manifest_path.read_bytes()
        store.blobs.put_bytes(manifest_bytes, digest, f"{where}: manifest")
        manifest = json.loads(manifest_bytes)
        config_digest = str(manifest["config"]["digest"])
        config_path = _blob_path(root, config_digest, where)
        store.blobs.put_file(config_path, config_digest, f"{where}: config")
        config = store.get_config(config_digest)
        diff_ids = list((config.get("rootfs") or {}).get("diff_ids") or [])
        layers = list(manifest.get("layers") or [])
        if len(diff_ids) != len(layers):
            raise ArchiveError(
                f"{where}: manifest {digest} has {len(layers)} layers, its config "
                f"{len(diff_ids)} diff_ids; the image is malformed"
            )
        for layer, diff_id in zip(layers, diff_ids, strict=True):
            gzip = mt.layer_compression(str(layer.get("mediaType", "")), where)
            layer_digest = str(layer["digest"])
            store.add_layer(
                _blob_path(root, layer_digest, where),
                compressed=gzip,
                expected_diff_id=diff_id,
                expected_digest=layer_digest,
            )
        images.append(store.add_manifest(manifest_bytes, [name], f"{where}: manifest {digest}"))
    return images


def _link_or_copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        return
    try:
        os.link(source, target)
    except OSError:
        target.write_bytes(source.read_bytes())


def write_layout(
    store: ImageStore, images: Sequence[Image], refs: Sequence[Reference], dest: Path
) -> None:
    """Write an OCI image layout for `images` (named by `refs`) into the directory `dest`."""
    dest.mkdir(parents=True, exist_ok=True)
    manifests = []
    for image, ref in zip(images, refs, strict=True):
        digests = [image.digest, image.config_digest, *(x.digest for x in image.layers)]
        for digest in digests:
            _link_or_copy(store.blobs.path(digest), dest / "blobs" / "sha256" / digest[7:])
        annotations = {CONTAINERD_NAME: str(ref)}
        if ref.tag:
            annotations[REF_NAME] = ref.tag
        manifests.append(
            {
                "mediaType": image.media_type or mt.OCI_MANIFEST,
                "digest": image.digest,
                "size": store.blobs.size(image.digest),
                "annotations": annotations,
                "platform": {
                    "architecture": str(image.config.get("architecture", "amd64")),
                    "os": str(image.config.get("os", "linux")),
                },
            }
        )
    (dest / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    index = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": manifests}
    (dest / "index.json").write_bytes(canonical_json(index))


def merge_index(existing: Path, new: Path) -> None:
    """Add to `new` the entries of the index.json at `existing` that name other images."""
    if not existing.is_file():
        return
    old_index = _read_json(existing, str(existing.parent))
    new_index = _read_json(new, "new layout")

    def names(desc: dict[str, Any]) -> tuple[str, str]:
        annotations = desc.get("annotations") or {}
        return str(annotations.get(CONTAINERD_NAME, "")), str(annotations.get(REF_NAME, ""))

    taken = {n for desc in new_index["manifests"] for n in names(desc) if n}
    kept = [
        desc
        for desc in old_index.get("manifests") or []
        if not ({n for n in names(desc) if n} & taken)
    ]
    new_index["manifests"] = kept + list(new_index["manifests"])
    new.write_bytes(canonical_json(new_index))
