"""`include: remote` files fetched over HTTP(S) with httpx, kept under the data dir.

`HttpFetcher` is the `pipeline.remote.RemoteFetcher` that `kapal run` (and, through
`default_fetcher`, whoever plans) passes to `pipeline.plan`. Each URL is fetched afresh; the last
good copy is kept in `<data dir>/includes/` and used when the server cannot be reached (offline),
with the failure named when there is no copy. `integrity:` is checked by pipeline/, whatever
fetched the bytes.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.document import MAX_FILE_BYTES
from pipeline.errors import IncludeError

if TYPE_CHECKING:
    import httpx

__all__ = ["HttpFetcher", "default_fetcher"]

TIMEOUT_SECONDS = 10.0
MAX_REDIRECTS = 5


class HttpFetcher:
    """Fetches remote includes with one httpx client; the cache directory is created on use.

    Lifecycle: build one per command, pass it to `pipeline.plan`/`lint`, then `close()` (or use
    it as a context manager) to release the connection pool. httpx is imported and the client
    made on the first fetch only: a pipeline without remote includes never pays for them.
    """

    def __init__(self, cache_dir: Path | None, *, timeout: float = TIMEOUT_SECONDS) -> None:
        self.cache_dir = cache_dir
        self.timeout = timeout
        self._client: httpx.Client | None = None

    def _http(self) -> httpx.Client:
        if self._client is None:
            import httpx

            self._client = httpx.Client(
                timeout=self.timeout, follow_redirects=True, max_redirects=MAX_REDIRECTS
            )
        return self._client

    def __enter__(self) -> HttpFetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the HTTP client (when one was made)."""
        if self._client is not None:
            self._client.close()
            self._client = None

    def fetch(self, url: str) -> bytes:
        """The file at `url`; IncludeError (unreachable without a cached copy, HTTP status)."""
        import httpx

        try:
            content = self._download(url)
        except httpx.TransportError as exc:
            cached = self._cached(url)
            if cached is not None:
                return cached
            raise IncludeError(
                f"cannot be fetched ({type(exc).__name__}: {exc or 'no answer'}) and there is no "
                "cached copy: check the network (kapal is offline?) or copy the file into the "
                "repository and use `include: local`"
            ) from None
        except httpx.HTTPError as exc:
            raise IncludeError(f"cannot be fetched: {exc}") from None
        self._store(url, content)
        return content

    def _download(self, url: str) -> bytes:
        with self._http().stream("GET", url) as response:
            if response.status_code != 200:
                raise IncludeError(
                    f"the server answered HTTP {response.status_code}; GitLab needs a public "
                    "URL that answers 200 with the file"
                )
            chunks: list[bytes] = []
            size = 0
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > MAX_FILE_BYTES:
                    raise IncludeError(
                        f"larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB; "
                        "a pipeline file that big is a mistake"
                    )
                chunks.append(chunk)
            return b"".join(chunks)

    def _path(self, url: str) -> Path | None:
        if self.cache_dir is None:
            return None
        return self.cache_dir / hashlib.sha256(url.encode()).hexdigest()

    def _cached(self, url: str) -> bytes | None:
        path = self._path(url)
        if path is None:
            return None
        try:
            with path.open("rb") as handle:
                return handle.read(MAX_FILE_BYTES + 1)
        except OSError:
            return None

    def _store(self, url: str, content: bytes) -> None:
        path = self._path(url)
        if path is None:
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".part-")
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(content)
                os.replace(tmp, path)
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
        except OSError:
            pass  # a cache that cannot be written only costs the offline fallback


def default_fetcher() -> HttpFetcher:
    """A fetcher caching under `KAPAL_DATA_DIR` (or kapal's default data dir)/includes."""
    from runner.runtime.environment import default_data_dir

    data_dir = os.environ.get("KAPAL_DATA_DIR")
    base = Path(data_dir) if data_dir else default_data_dir()
    return HttpFetcher(base / "includes")
