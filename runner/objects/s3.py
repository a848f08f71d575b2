"""`S3ObjectStore`: blobs in a bucket of an S3-compatible server, through the `minio` client.

Why `minio` (see the README's dependency notes): it is small and pure Python, speaks the S3
API to any compatible server (AWS, MinIO, Ceph, Garage...), streams multipart uploads from a
file a part at a time, and builds its client without loading service models. boto3 needs
botocore's 33 MB of JSON models and costs about twice the memory to make one client. The module
imports `minio` only when an S3 store is made, so nothing else pays for it.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn
from urllib.parse import urlsplit

from runner.errors import ObjectStoreError
from runner.objects.directory import write_file_atomically
from runner.objects.store import CHUNK, key_prefix, object_key

if TYPE_CHECKING:
    from minio import Minio

__all__ = ["S3Location", "S3ObjectStore"]

PART_SIZE = 8 << 20  # bytes per multipart part: one part in memory at a time
MAX_PARTS = 10_000  # S3's limit
CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 120.0
RETRIES = 2  # connection errors and 5xx answers, with a short backoff
_REFUSED = frozenset({"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "Forbidden"})
_MISSING_OBJECT = frozenset({"NoSuchKey", "NoSuchObject", "ResourceNotFound"})


@dataclass(frozen=True)
class S3Location:
    """Where the blobs go: `s3://bucket/prefix` (KAPAL_OBJECT_STORE) on a server (endpoint)."""

    bucket: str
    prefix: str
    endpoint: str  # scheme://host[:port]
    access_key: str
    secret_key: str
    region: str = ""

    @classmethod
    def parse(
        cls, url: str, *, endpoint: str, access_key: str, secret_key: str, region: str = ""
    ) -> S3Location:
        """Read the settings into a location; `ObjectStoreError` naming the setting if wrong."""
        parts = urlsplit(url)
        if parts.scheme != "s3" or not parts.netloc or parts.query or parts.fragment:
            raise ObjectStoreError(
                f"KAPAL_OBJECT_STORE={url!r}: expected s3://bucket or s3://bucket/prefix"
            )
        prefix = parts.path.strip("/")
        if prefix:
            object_key(prefix)
        endpoint = endpoint or "https://s3.amazonaws.com"
        where = urlsplit(endpoint)
        if where.scheme not in ("http", "https") or not where.hostname or where.path.strip("/"):
            raise ObjectStoreError(
                f"KAPAL_S3_ENDPOINT={endpoint!r}: expected http(s)://host[:port] of an "
                "S3-compatible server (no path)"
            )
        if not access_key or not secret_key:
            raise ObjectStoreError(
                f"KAPAL_OBJECT_STORE={url!r} needs credentials: set KAPAL_S3_ACCESS_KEY and "
                "KAPAL_S3_SECRET_KEY"
            )
        return cls(parts.netloc, prefix, endpoint.rstrip("/"), access_key, secret_key, region)


class S3ObjectStore:
    """An `ObjectStore` in a bucket of an S3-compatible server (lifecycle: `ObjectStore`).

    Each blob is the object `<prefix>/<key>`. Uploads are multipart from the file, one part of
    `PART_SIZE` bytes in memory at a time; downloads stream to a partial file renamed into place.
    S3 itself makes a put atomic: an object appears whole or not at all.
    """

    def __init__(self, where: S3Location) -> None:
        self.where = where
        self._client: Minio | None = None

    @property
    def location(self) -> str:
        """`s3://bucket/prefix at endpoint`."""
        path = f"{self.where.bucket}/{self.where.prefix}".rstrip("/")
        return f"s3://{path} at {self.where.endpoint}"

    def _object(self, key: str) -> str:
        object_key(key)
        return f"{self.where.prefix}/{key}" if self.where.prefix else key

    def _minio(self) -> Minio:
        if self._client is None:
            try:
                import certifi
                import urllib3
                from minio import Minio
            except ImportError as exc:
                raise ObjectStoreError(
                    f"KAPAL_OBJECT_STORE names an S3 store but its client library is missing "
                    f"({exc.name}): pip install minio"
                ) from None

            parts = urlsplit(self.where.endpoint)
            secure = parts.scheme == "https"
            http = urllib3.PoolManager(
                timeout=urllib3.Timeout(connect=CONNECT_TIMEOUT, read=READ_TIMEOUT),
                maxsize=10,
                cert_reqs="CERT_REQUIRED" if secure else "CERT_NONE",
                ca_certs=certifi.where() if secure else None,
                retries=urllib3.Retry(
                    total=RETRIES, backoff_factor=0.2, status_forcelist=[500, 502, 503, 504]
                ),
            )
            try:
                self._client = Minio(
                    parts.netloc,
                    access_key=self.where.access_key,
                    secret_key=self.where.secret_key,
                    secure=secure,
                    region=self.where.region or None,
                    http_client=http,
                )
            except ValueError as exc:
                raise ObjectStoreError(
                    f"KAPAL_S3_ENDPOINT={self.where.endpoint!r}: {exc}"
                ) from None
        return self._client

    def check(self) -> None:
        """Raise `ObjectStoreError` unless the bucket exists and the credentials are accepted."""
        # a listing (GET), not a HEAD: its answer has a body, so a missing bucket, refused
        # credentials and a server that does not speak S3 each say which they are
        with self._translated("listing the bucket"):
            listing = self._minio().list_objects(self.where.bucket, prefix=self.where.prefix)
            next(iter(listing), None)

    def put_file(self, key: str, source: Path) -> int:
        """Upload the file `source` as `key`, a part at a time."""
        name = self._object(key)
        size = source.stat().st_size
        part = max(PART_SIZE, math.ceil(size / MAX_PARTS / (1 << 20)) << 20)
        with self._translated(f"storing {key}"):
            self._minio().fput_object(
                self.where.bucket, name, str(source), part_size=part, num_parallel_uploads=1
            )
        return size

    def get_file(self, key: str, destination: Path) -> bool:
        """Download `key` into `destination` a chunk at a time; False if there is no such blob."""
        name = self._object(key)
        with self._translated(f"reading {key}"):
            try:
                response = self._minio().get_object(self.where.bucket, name)
            except Exception as exc:
                if _code(exc) in _MISSING_OBJECT:
                    return False
                raise
            try:
                write_file_atomically(destination, _Chunks(response.stream(CHUNK)))
            except OSError as exc:
                raise ObjectStoreError(
                    f"cannot write {key} of {self.location} to {destination}: {exc.strerror or exc}"
                ) from None
            finally:
                response.close()
                response.release_conn()
        return True

    def exists(self, key: str) -> bool:
        """Whether the object `key` exists (a HEAD request)."""
        name = self._object(key)
        with self._translated(f"looking for {key}"):
            try:
                self._minio().stat_object(self.where.bucket, name)
            except Exception as exc:
                if _code(exc) in _MISSING_OBJECT:
                    return False
                raise
        return True

    def delete(self, key: str) -> None:
        """Delete the object `key` (S3 answers the same whether it existed or not)."""
        name = self._object(key)
        with self._translated(f"deleting {key}"):
            self._minio().remove_object(self.where.bucket, name)

    def keys(self, prefix: str = "") -> Iterator[str]:
        """Keys below the store's prefix starting with `prefix`, as the server lists them."""
        key_prefix(prefix)
        base = f"{self.where.prefix}/" if self.where.prefix else ""
        with self._translated(f"listing {prefix or 'the keys'}"):
            names = [
                item.object_name
                for item in self._minio().list_objects(
                    self.where.bucket, prefix=base + prefix, recursive=True
                )
                if item.object_name is not None and not item.is_dir
            ]
        yield from sorted(name[len(base) :] for name in names)

    @contextlib.contextmanager
    def _translated(self, what: str) -> Iterator[None]:
        """Turn the client's and the network's exceptions into one `ObjectStoreError` line."""
        from minio.error import MinioException, S3Error
        from urllib3.exceptions import HTTPError

        try:
            yield
        except S3Error as exc:
            if exc.code == "NoSuchBucket":
                self._no_bucket()
            if exc.code in _REFUSED:
                raise ObjectStoreError(
                    f"the object store {self.location} refused kapal's credentials while "
                    f"{what} ({exc.code}): check KAPAL_S3_ACCESS_KEY and KAPAL_S3_SECRET_KEY, "
                    f"and that they may read and write bucket {self.where.bucket!r}"
                ) from None
            raise ObjectStoreError(
                f"the object store {self.location} failed while {what}: {exc.code}: {exc.message}"
            ) from None
        except MinioException as exc:  # an answer that is no S3 answer, or a 5xx kept up
            raise ObjectStoreError(
                f"the object store {self.location} did not answer as an S3 server while {what} "
                f"({str(exc).splitlines()[0][:200]}): check KAPAL_S3_ENDPOINT and the server"
            ) from None
        except (HTTPError, OSError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise ObjectStoreError(
                f"cannot reach the object store {self.location} while {what} ({reason}): check "
                "KAPAL_S3_ENDPOINT and that the server is up"
            ) from None

    def _no_bucket(self) -> NoReturn:
        raise ObjectStoreError(
            f"bucket {self.where.bucket!r} does not exist at {self.where.endpoint}: create it, "
            "or name an existing one in KAPAL_OBJECT_STORE"
        )


class _Chunks:
    """A file-like `read` over an iterator of byte chunks (a streamed HTTP body)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks

    def read(self, _size: int = -1) -> bytes:
        """The next chunk; b"" at the end."""
        return next(self._chunks, b"")


def _code(exc: Exception) -> str:
    return str(getattr(exc, "code", ""))
