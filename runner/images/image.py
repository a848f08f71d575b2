"""What the store hands out: an image (manifest + config) and its layer descriptors."""

from __future__ import annotations

from typing import Any

from pipeline.records import field, record
from runner.images.reference import Reference


@record
class LayerDescriptor:
    """One layer: the digest of its blob as stored, the digest of its uncompressed tar (diff_id)."""

    digest: str
    diff_id: str
    size: int
    media_type: str

    def to_descriptor(self) -> dict[str, Any]:
        """The OCI descriptor of the layer blob, as it appears in a manifest."""
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}


@record
class Image:
    """A single-platform image in the store, named by the digest of its manifest.

    `config` is the OCI image config dict (`config.Env`, `config.Cmd`, `rootfs.diff_ids`...);
    `layers` are bottom-first. `id` is docker's image id: the digest of the config blob.
    """

    digest: str
    manifest: dict[str, Any]
    config: dict[str, Any]
    layers: tuple[LayerDescriptor, ...]
    reference: Reference | None = field(default=None, compare=False)

    def __hash__(self) -> int:
        return hash(self.digest)

    @property
    def media_type(self) -> str:
        """The manifest's media type (OCI or Docker v2)."""
        return str(self.manifest.get("mediaType", ""))

    @property
    def config_digest(self) -> str:
        """The digest of the config blob (docker's image id)."""
        return str(self.manifest["config"]["digest"])

    @property
    def id(self) -> str:
        """Short image id: the first 12 hex digits of the config digest."""
        return self.config_digest.split(":", 1)[1][:12]

    @property
    def size(self) -> int:
        """Total size of the layer blobs as stored (compressed where they are)."""
        return sum(layer.size for layer in self.layers)

    @property
    def created(self) -> str:
        """The config's creation time (RFC 3339), empty when the config has none."""
        return str(self.config.get("created", ""))
