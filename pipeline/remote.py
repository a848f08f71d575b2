"""`include: remote`: the interface pipeline/ reads remote files through, and `integrity:`.

pipeline/ does no network I/O. Whoever plans or lints passes a `RemoteFetcher` (kapal's own is
`runner.remote_includes.HttpFetcher`: httpx, cached under the data dir); without one, each
`include: remote` is one clear error. The resolver checks `integrity:` itself, so every
fetcher's bytes are held to it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Protocol

__all__ = ["RemoteFetcher", "integrity_problem"]

_ALGORITHMS = {"sha256": hashlib.sha256, "sha384": hashlib.sha384, "sha512": hashlib.sha512}


class RemoteFetcher(Protocol):
    """Fetches the bytes of an `include: remote` URL.

    Lifecycle: built once per command (it may hold an HTTP client and a cache directory) and
    called once per remote include; `fetch` raises `pipeline.errors.IncludeError` with a
    message saying why (unreachable, HTTP status, too large), without a location: the resolver
    adds where the include is written.
    """

    def fetch(self, url: str) -> bytes:
        """The file at `url` (http or https)."""
        ...


def integrity_problem(content: bytes, integrity: str) -> str | None:
    """What is wrong when `content` does not match GitLab's `integrity: sha256-BASE64`, or None."""
    algorithm, sep, digest = integrity.partition("-")
    hasher = _ALGORITHMS.get(algorithm)
    if not sep or hasher is None:
        return (
            f"integrity {integrity!r} is not a subresource integrity hash; write it as "
            "sha256-<base64 of the SHA-256 digest> (`openssl dgst -sha256 -binary FILE | "
            "openssl base64 -A`)"
        )
    actual = base64.b64encode(hasher(content).digest()).decode()
    if not hmac.compare_digest(actual, digest):
        return (
            f"the file does not match its integrity hash (expected {algorithm}-{digest}, the "
            f"file has {algorithm}-{actual}); it changed since the hash was written"
        )
    return None
