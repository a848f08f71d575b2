"""`include: remote`: the interface pipeline/ reads remote files through, and `integrity:`.

pipeline/ does no network I/O. Whoever plans or lints passes a `RemoteFetcher` (kapal's own is
`runner.remote_includes.HttpFetcher`: httpx, cached under the data dir); without one, each
`include: remote` is one clear error. The resolver checks `integrity:` itself, so every
fetcher's bytes are held to it.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
from collections.abc import Callable, Iterator
from typing import Protocol

__all__ = [
    "LazyFetcher",
    "RemoteFetcher",
    "command_fetcher",
    "integrity_problem",
    "set_command_fetcher",
]

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


class LazyFetcher:
    """A `RemoteFetcher` whose real fetcher is made by `factory` on the first fetch.

    Lifecycle: made per command by `command_fetcher`; `close()` closes the real fetcher when
    one was made. A pipeline without remote includes never loads the fetcher's module.
    """

    def __init__(self, factory: Callable[[], RemoteFetcher]) -> None:
        self._factory = factory
        self._real: RemoteFetcher | None = None

    def fetch(self, url: str) -> bytes:
        """The file at `url`, through the real fetcher."""
        if self._real is None:
            self._real = self._factory()
        return self._real.fetch(url)

    def close(self) -> None:
        """Close the real fetcher, if it was made and can be closed."""
        close = getattr(self._real, "close", None)
        if callable(close):
            close()
        self._real = None


_COMMAND_FACTORY: list[Callable[[], RemoteFetcher]] = []


def set_command_fetcher(factory: Callable[[], RemoteFetcher]) -> None:
    """What `kapal lint` and `kapal plan` fetch remote includes with (the `kapal` entry sets it).

    pipeline/ cannot import the runner's HTTP client; the entry point that wires the packages
    names it here, and the commands take it through `command_fetcher`.
    """
    _COMMAND_FACTORY[:] = [factory]


@contextlib.contextmanager
def command_fetcher() -> Iterator[RemoteFetcher | None]:
    """The fetcher a command passes to `plan`/`lint` (None when none was set), closed after."""
    if not _COMMAND_FACTORY:
        yield None
        return
    fetcher = LazyFetcher(_COMMAND_FACTORY[0])
    try:
        yield fetcher
    finally:
        fetcher.close()
