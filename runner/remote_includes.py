"""`include: remote` files fetched over HTTP(S) with httpx, kept under the data dir.

`HttpFetcher` is the `pipeline.remote.RemoteFetcher` that `kapal run` (and, through
`default_fetcher`, whoever plans) passes to `pipeline.plan`. Each URL is fetched afresh; the last
good copy is kept in `<data dir>/includes/` and used when the server cannot be reached (offline),
with the failure named when there is no copy. `integrity:` is checked by pipeline/, whatever
fetched the bytes. It is also the `pipeline.remote.GitLabFetcher` for `include: project`,
`component` and `template`, through `runner.gitlab_includes.GitLabFiles` when KAPAL_GITLAB_URL
names an instance (one clear error per include when it does not). The two use separate HTTP
clients: KAPAL_GITLAB_TOKEN is never sent with an `include: remote`.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.document import MAX_FILE_BYTES
from pipeline.errors import IncludeError
from pipeline.remote import NO_GITLAB, GitLabDelegate

if TYPE_CHECKING:
    import httpx

    from runner.gitlab_includes import GitLabFiles
    from runner.include_addresses import AddressPolicy

__all__ = ["HttpFetcher", "default_fetcher", "fetcher_for"]

TIMEOUT_SECONDS = 10.0
MAX_REDIRECTS = 5


class HttpFetcher(GitLabDelegate):
    """Fetches remote includes with one httpx client; the cache directory is created on use.

    Lifecycle: build one per command, pass it to `pipeline.plan`/`lint`, then `close()` (or use
    it as a context manager) to release the connection pool. httpx is imported and the client
    made on the first fetch only: a pipeline without remote includes never pays for them.
    """

    def __init__(
        self,
        cache_dir: Path | None,
        *,
        timeout: float = TIMEOUT_SECONDS,
        gitlab: GitLabFiles | None = None,
        addresses: AddressPolicy | None = None,
    ) -> None:
        self.cache_dir = cache_dir
        self.timeout = timeout
        self.gitlab = gitlab
        # the server's: each connection (every redirect hop) only to addresses this allows
        self.addresses = addresses
        self._client: httpx.Client | None = None

    def _http(self) -> httpx.Client:
        if self._client is None:
            import httpx

            transport = None
            if self.addresses is not None:
                from runner.include_addresses import guarded_transport

                transport = guarded_transport(self.addresses)
            self._client = httpx.Client(
                timeout=self.timeout,
                follow_redirects=True,
                max_redirects=MAX_REDIRECTS,
                transport=transport,
                trust_env=self.addresses is None,  # no proxy between the check and the host
            )
        return self._client

    def __enter__(self) -> HttpFetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the HTTP clients (when they were made)."""
        if self._client is not None:
            self._client.close()
            self._client = None
        if self.gitlab is not None:
            self.gitlab.close()

    def _gitlab(self) -> GitLabFiles:
        # project, component and template includes: KAPAL_GITLAB_URL's instance
        if self.gitlab is None:
            raise IncludeError(NO_GITLAB)
        return self.gitlab

    def fetch(self, url: str) -> bytes:
        """The file at `url`; IncludeError (unreachable without a cached copy, HTTP status)."""
        import httpx

        try:
            content = self._download(url)
        except httpx.UnsupportedProtocol as exc:  # a redirect to ftp:, file:...: not offline
            raise IncludeError(f"cannot be fetched: {exc}; only http and https are") from None
        except httpx.TransportError as exc:
            cached = self._cached(url)
            if cached is not None:
                return cached
            raise IncludeError(
                f"cannot be fetched ({type(exc).__name__}: {exc or 'no answer'}) and there is no "
                "cached copy: check the network (kapal is offline?) or copy the file into the "
                "repository and use `include: local`"
            ) from None
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
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
            return read_limited(response, MAX_FILE_BYTES)

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
        if path is not None:
            keep(path, content)


def read_limited(response: httpx.Response, limit: int) -> bytes:
    """The body of a streamed response; IncludeError past `limit` bytes (read no further)."""
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_bytes():
        size += len(chunk)
        if size > limit:
            raise IncludeError(
                f"larger than {limit // (1024 * 1024)} MiB; a pipeline file that big is a mistake"
            )
        chunks.append(chunk)
    return b"".join(chunks)


def keep(path: Path, content: bytes) -> None:
    """Write a cached copy whole (a reader never sees half); a write that fails is skipped."""
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
    """A fetcher caching under `KAPAL_DATA_DIR` (or kapal's default data dir)/includes, reading
    `include: project/component/template` from `KAPAL_GITLAB_URL` with `KAPAL_GITLAB_TOKEN`.

    A malformed KAPAL_GITLAB_URL is reported by each GitLab include, not here: a pipeline
    without them plans as before.
    """
    from runner.runtime.environment import default_data_dir

    data_dir = os.environ.get("KAPAL_DATA_DIR")
    return fetcher_for(
        Path(data_dir) if data_dir else default_data_dir(),
        gitlab_url=os.environ.get("KAPAL_GITLAB_URL", ""),
        gitlab_token=os.environ.get("KAPAL_GITLAB_TOKEN", ""),
    )


def fetcher_for(
    data_dir: Path,
    *,
    gitlab_url: str = "",
    gitlab_token: str = "",
    addresses: AddressPolicy | None = None,
) -> HttpFetcher:
    """A fetcher caching under `data_dir`/includes, reading GitLab includes from `gitlab_url`
    (when set) and, given `addresses`, connecting for `include: remote` only where it allows."""
    fetcher = HttpFetcher(data_dir / "includes", addresses=addresses)
    if gitlab_url.strip():
        from runner.gitlab_includes import GitLabFiles

        fetcher.gitlab = GitLabFiles(gitlab_url, gitlab_token, data_dir / "includes" / "gitlab")
    return fetcher
