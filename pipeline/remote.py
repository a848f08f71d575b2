"""The interfaces pipeline/ reads `include: remote/project/component/template` through.

pipeline/ does no network I/O. Whoever plans or lints passes a `RemoteFetcher` (kapal's own is
`runner.remote_includes.HttpFetcher`: httpx, cached under the data dir); without one, each
`include: remote` is one clear error. The resolver checks `integrity:` itself, so every
fetcher's bytes are held to it. A fetcher that is also a `GitLabFetcher` reads the files of a
GitLab instance's projects, its components and its CI/CD templates; the resolver knows GitLab's
rules (where a component's file is, what a nested `include: local` is relative to) and the
fetcher only the API.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Protocol, runtime_checkable

from pipeline.errors import IncludeError

__all__ = [
    "NO_GITLAB",
    "GitLabDelegate",
    "GitLabFetcher",
    "LazyFetcher",
    "RemoteFetcher",
    "command_fetcher",
    "command_server_url",
    "integrity_problem",
    "set_command_fetcher",
]

_ALGORITHMS = ("sha256", "sha384", "sha512")


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


NO_GITLAB = (
    "needs a GitLab instance: set KAPAL_GITLAB_URL (and KAPAL_GITLAB_TOKEN for private "
    "projects), or copy the file into the repository and use `include: local`"
)


@runtime_checkable
class GitLabFetcher(Protocol):
    """Reads files from a GitLab instance for `include: project`, `component` and `template`.

    Lifecycle: the same object as the command's `RemoteFetcher` (one per command). Each method
    raises `pipeline.errors.IncludeError` saying why (no instance configured, unreachable, the
    token refused, the project or ref unknown) without a location: the resolver adds the
    include's position and name. Paths are passed as written; encoding them for the API is the
    fetcher's job.
    """

    def project_file(self, project: str, path: str, ref: str | None) -> bytes | None:
        """The file `path` of `project` at `ref` (None: the default branch); None when the
        project and ref exist but the file does not."""
        ...

    def component_ref(self, host: str, project: str, version: str) -> str:
        """The ref a component version names (`~latest`, `1`, `1.2`: the newest matching
        release); `host` is the one written ("" for `$CI_SERVER_FQDN`) and must be the
        instance's."""
        ...

    def template(self, name: str) -> bytes | None:
        """The content of the instance's CI/CD template `name` (without `.gitlab-ci.yml`), or
        None when the instance has no such template."""
        ...


def integrity_problem(content: bytes, integrity: str) -> str | None:
    """What is wrong when `content` does not match GitLab's `integrity: sha256-BASE64`, or None."""
    algorithm, sep, digest = integrity.partition("-")
    if not sep or algorithm not in _ALGORITHMS:
        return (
            f"integrity {integrity!r} is not a subresource integrity hash; write it as "
            "sha256-<base64 of the SHA-256 digest> (`openssl dgst -sha256 -binary FILE | "
            "openssl base64 -A`)"
        )
    import base64  # hashing: only for a file that has an `integrity:` (`kapal lint` starts faster)
    import hashlib
    import hmac

    actual = base64.b64encode(hashlib.new(algorithm, content).digest()).decode()
    if not hmac.compare_digest(actual, digest):
        return (
            f"the file does not match its integrity hash (expected {algorithm}-{digest}, the "
            f"file has {algorithm}-{actual}); it changed since the hash was written"
        )
    return None


class GitLabDelegate:
    """The `GitLabFetcher` calls, passed on to the fetcher `_gitlab()` returns (a subclass says
    which, and raises IncludeError when there is none)."""

    def _gitlab(self) -> GitLabFetcher:
        raise NotImplementedError

    def project_file(self, project: str, path: str, ref: str | None) -> bytes | None:
        """The project's file at `ref` (None: the default branch); None when it has no such file."""
        return self._gitlab().project_file(project, path, ref)

    def component_ref(self, host: str, project: str, version: str) -> str:
        """The ref a component version names."""
        return self._gitlab().component_ref(host, project, version)

    def template(self, name: str) -> bytes | None:
        """The CI/CD template `name`; None when there is none."""
        return self._gitlab().template(name)


class LazyFetcher(GitLabDelegate):
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

    def _gitlab(self) -> GitLabFetcher:
        if self._real is None:
            self._real = self._factory()
        if not isinstance(self._real, GitLabFetcher):
            raise IncludeError(NO_GITLAB)
        return self._real

    def close(self) -> None:
        """Close the real fetcher, if it was made and can be closed."""
        close = getattr(self._real, "close", None)
        if callable(close):
            close()
        self._real = None


_COMMAND_FACTORY: list[Callable[[], RemoteFetcher]] = []
_COMMAND_SERVER_URL: list[str] = []


def set_command_fetcher(factory: Callable[[], RemoteFetcher], *, server_url: str = "") -> None:
    """What `kapal lint` and `kapal plan` fetch remote includes with (the `kapal` entry sets it).

    pipeline/ cannot import the runner's HTTP client; the entry point that wires the packages
    names it here, and the commands take it through `command_fetcher`. `server_url` is the
    GitLab instance (KAPAL_GITLAB_URL) the commands' CI_SERVER_* variables name: pipeline/
    reads no environment.
    """
    _COMMAND_FACTORY[:] = [factory]
    _COMMAND_SERVER_URL[:] = [server_url]


def command_server_url() -> str:
    """The GitLab instance's URL `set_command_fetcher` was given ("" when none)."""
    return _COMMAND_SERVER_URL[0] if _COMMAND_SERVER_URL else ""


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
