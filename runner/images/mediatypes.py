"""Media types of OCI and Docker v2 manifests, configs and layers that kapal reads and writes."""

from __future__ import annotations

from runner.errors import MediaTypeError

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
OCI_LAYER_NONDIST_GZIP = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_LAYER_FOREIGN_GZIP = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
DOCKER_LAYER_TAR = "application/vnd.docker.image.rootfs.diff.tar"

MANIFESTS = (OCI_MANIFEST, DOCKER_MANIFEST)
INDEXES = (OCI_INDEX, DOCKER_MANIFEST_LIST)
GZIP_LAYERS = (OCI_LAYER_GZIP, OCI_LAYER_NONDIST_GZIP, DOCKER_LAYER_GZIP, DOCKER_LAYER_FOREIGN_GZIP)
ZSTD_LAYERS = (OCI_LAYER_ZSTD,)
TAR_LAYERS = (OCI_LAYER, DOCKER_LAYER_TAR)

# What a registry is asked for when pulling: single manifests and lists, both families.
ACCEPT_MANIFESTS = ", ".join((*MANIFESTS, *INDEXES))


def layer_is_gzip(media_type: str, where: str) -> bool:
    """Whether a layer of `media_type` is gzip-compressed; raise `MediaTypeError` if unknown."""
    return layer_compression(media_type, where) == "gzip"


def layer_compression(media_type: str, where: str) -> str:
    """The compression of a layer of `media_type`: "gzip", "zstd" or "" (a plain tar).

    Raises `MediaTypeError` for a media type kapal cannot read.
    """
    if media_type in GZIP_LAYERS:
        return "gzip"
    if media_type in ZSTD_LAYERS:
        return "zstd"
    if media_type in TAR_LAYERS:
        return ""
    raise MediaTypeError(
        f"{where}: layer media type {media_type!r} is not supported; kapal reads "
        "uncompressed, gzip and zstd tar layers (OCI and Docker v2)"
    )


def check_manifest_type(media_type: str, where: str) -> None:
    """Raise `MediaTypeError` unless `media_type` is a single-image manifest kapal reads."""
    if media_type not in MANIFESTS:
        raise MediaTypeError(
            f"{where}: manifest media type {media_type!r} is not supported; kapal reads "
            f"{OCI_MANIFEST} and {DOCKER_MANIFEST}"
        )
