"""Where artifacts and caches live beyond one worker: one `ObjectStore` interface, two stores.

    ObjectStore             the interface (runner.objects.store): put/get/exists/delete/keys
    ├── DirectoryObjectStore  blobs as files under a directory (runner.objects.directory)
    └── S3ObjectStore         objects in a bucket of an S3-compatible server (runner.objects.s3)

`open_object_store` makes one from the settings' values (KAPAL_OBJECT_STORE and the
KAPAL_S3_* variables); the S3 client library is imported only when an S3 store is asked for.
`runner.objects.trees` packs a directory tree into one blob and unpacks it, untrusted, through
`runner.confined`.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from runner.errors import ObjectStoreError
from runner.objects.directory import DirectoryObjectStore
from runner.objects.store import ObjectStore, object_key

__all__ = ["DirectoryObjectStore", "ObjectStore", "object_key", "open_object_store"]


def open_object_store(
    url: str,
    *,
    endpoint: str = "",
    access_key: str = "",
    secret_key: str = "",
    region: str = "",
) -> ObjectStore:
    """The store `url` names: `s3://bucket/prefix`, or a directory (`/path`, `file:///path`).

    Connects to nothing (see `ObjectStore.check`); a malformed setting is an `ObjectStoreError`
    naming it.
    """
    scheme = urlsplit(url).scheme
    if scheme == "s3":
        from runner.objects.s3 import S3Location, S3ObjectStore

        where = S3Location.parse(
            url, endpoint=endpoint, access_key=access_key, secret_key=secret_key, region=region
        )
        return S3ObjectStore(where)
    path = url.removeprefix("file://") if scheme == "file" else url
    if scheme not in ("", "file") or not path.startswith("/"):
        raise ObjectStoreError(
            f"KAPAL_OBJECT_STORE={url!r}: expected s3://bucket/prefix or an absolute directory "
            "path (/srv/kapal-store, file:///srv/kapal-store)"
        )
    return DirectoryObjectStore(Path(path))
