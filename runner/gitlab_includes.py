"""`include: project`, `component` and `template` read from a GitLab instance's REST API (v4).

`GitLabFiles` is what `runner.remote_includes.HttpFetcher` answers those includes with when
`KAPAL_GITLAB_URL` is set. The API calls (GitLab's documented endpoints):

- a project's file: `GET /api/v4/projects/<path>/repository/files/<file>/raw[?ref=REF]`, the
  project's full path and the file's path URL-encoded whole (`/` as `%2F`), no ref for the
  default branch;
- a component's `~latest` and partial versions (`1`, `1.2`): `GET /api/v4/projects/<path>/
  releases` (100 a page, at most 10 pages: the newest 1,000 releases), the highest semantic
  version among the release tags (pre-releases only when named in full), as GitLab's CI/CD
  catalog picks it;
- a CI/CD template: `GET /api/v4/templates/gitlab_ci_ymls/<key>`, JSON `{name, content}`.

`KAPAL_GITLAB_TOKEN` goes in a `PRIVATE-TOKEN` header to the instance's origin only (over https,
or http to a loopback address; a plain-http URL elsewhere is refused when a token is set): redirects
are followed only within that origin (another origin is refused, never sent the token), and
`include: remote` URLs are fetched by another client that has no token.

Cache, under `<data dir>/includes/gitlab/` (one file per API URL): a file at a full commit SHA
never changes, so a cached copy is used without asking; anything else (branches, tags, the
default branch, releases, templates) is asked for every time, as GitLab does when it creates a
pipeline, and the last good answer is used only when the instance cannot be reached (offline).
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import quote, urljoin, urlsplit

from pipeline.document import MAX_FILE_BYTES
from pipeline.errors import IncludeError
from runner.remote_includes import keep, read_limited

if TYPE_CHECKING:
    import httpx

__all__ = ["GitLabFiles", "latest_release"]

TIMEOUT_SECONDS = 10.0
MAX_REDIRECTS = 5
RELEASES_PER_PAGE = 100  # GitLab's most per page
MAX_RELEASE_PAGES = 10
# a template's JSON escapes its content (a quote or newline takes two bytes)
MAX_JSON_BYTES = 2 * MAX_FILE_BYTES + 4096
_SHA = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
_SEMVER = re.compile(
    r"v?(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?"
)
_PARTIAL = re.compile(r"(0|[1-9]\d*)(?:\.(0|[1-9]\d*))?")
_REDIRECTS = (301, 302, 303, 307, 308)


class GitLabFiles:
    """Reads project files, component versions and templates from one GitLab instance.

    Lifecycle: made per command (by `runner.remote_includes.default_fetcher`), used through the
    `HttpFetcher` that holds it, closed with it. The httpx client is made on the first request.
    Implements `pipeline.remote.GitLabFetcher`.
    """

    def __init__(
        self,
        url: str,
        token: str = "",
        cache_dir: Path | None = None,
        *,
        timeout: float = TIMEOUT_SECONDS,
    ) -> None:
        parts = urlsplit(url.strip())
        try:
            port = _port(parts.scheme, parts.port)
        except ValueError:
            port = 0
        # a malformed URL is reported by each include that needs it, not by every command
        self.problem = ""
        if parts.scheme not in ("http", "https") or not parts.hostname or not port:
            self.problem = (
                f"KAPAL_GITLAB_URL={url!r} is not the http(s) URL of a GitLab instance, e.g. "
                "https://gitlab.example.com"
            )
        elif "@" in parts.netloc:  # messages name the URL: it must hold no secret
            self.problem = (
                "KAPAL_GITLAB_URL holds a user name or password; give the instance's URL alone "
                "and the access token in KAPAL_GITLAB_TOKEN"
            )
            parts = parts._replace(netloc=parts.netloc.rpartition("@")[2])
        elif parts.scheme == "http" and token and not _loopback(parts.hostname or ""):
            self.problem = (
                f"KAPAL_GITLAB_URL={url!r} is plain http: the access token in KAPAL_GITLAB_TOKEN "
                "would cross the network unencrypted; use the instance's https:// URL (http is "
                "accepted for a loopback address only)"
            )
        self.url = f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"
        self.api = self.url + "/api/v4"
        self.origin = (parts.scheme, (parts.hostname or "").lower(), port)
        self.hosts = {(parts.hostname or "").lower(), parts.netloc.lower()}
        self.token = token
        self.cache_dir = cache_dir
        self.timeout = timeout
        self._client: httpx.Client | None = None

    def close(self) -> None:
        """Close the HTTP client (when one was made)."""
        if self._client is not None:
            self._client.close()
            self._client = None

    # pipeline.remote.GitLabFetcher -------------------------------------------------------------
    def project_file(self, project: str, path: str, ref: str | None) -> bytes | None:
        """The file `path` of `project` at `ref` (None: the default branch), None if absent."""
        self._check()
        url = f"{self._project(project)}/repository/files/{_segment(path)}/raw"
        if ref is not None:
            url += "?ref=" + quote(ref, safe="")
        fixed = ref is not None and _SHA.fullmatch(ref) is not None
        status, body = self._get(url, project=project, ref=ref, cached_first=fixed)
        if status == 404:
            self._not_found(body, project, ref, file_missing_ok=True)
            return None
        return body

    def component_ref(self, host: str, project: str, version: str) -> str:
        """The ref a component version names: releases for `~latest` and partial versions."""
        self._check()
        if host and host.lower() not in self.hosts:
            raise IncludeError(
                f"the component is on {host}, but kapal reads components from "
                f"KAPAL_GITLAB_URL={self.url}; write $CI_SERVER_FQDN/… or point "
                "KAPAL_GITLAB_URL at that instance"
            )
        if version != "~latest" and not _PARTIAL.fullmatch(version):
            return version
        tags = self._release_tags(project)
        found = latest_release(tags, None if version == "~latest" else version)
        if found is None:
            wanted = "any" if version == "~latest" else f"a {version}.x"
            shown = ", ".join(tags[:5]) + (", …" if len(tags) > 5 else "") if tags else "none"
            raise IncludeError(
                f"project {project!r} has no release with {wanted} semantic version (its "
                f"release tags: {shown}); `~latest` and partial versions read the project's "
                "releases, as GitLab's CI/CD catalog does"
            )
        return found

    def _release_tags(self, project: str) -> list[str]:
        """The tags of the project's releases, newest first, at most `MAX_RELEASE_PAGES` pages."""
        tags: list[str] = []
        for page in range(1, MAX_RELEASE_PAGES + 1):
            url = f"{self._project(project)}/releases?per_page={RELEASES_PER_PAGE}&page={page}"
            status, body = self._get(url, project=project, ref=None, limit=MAX_JSON_BYTES)
            if status == 404:
                self._not_found(body, project, None, file_missing_ok=False)
            found = _release_tags(body)
            tags.extend(found.tags)
            if found.size < RELEASES_PER_PAGE:
                break
        return tags

    def template(self, name: str) -> bytes | None:
        """The content of the instance's CI/CD template `name`, None when there is none."""
        self._check()
        url = f"{self.api}/templates/gitlab_ci_ymls/{_segment(name)}"
        status, body = self._get(url, project="", ref=None, limit=MAX_JSON_BYTES)
        if status == 404:
            return None
        try:
            content = json.loads(body)["content"]
        except (ValueError, TypeError, KeyError):
            content = None
        if not isinstance(content, str):
            raise IncludeError(
                f"{self.url} did not answer with a template (JSON with `content`); is "
                "KAPAL_GITLAB_URL a GitLab instance?"
            )
        return content.encode()

    def _check(self) -> None:
        if self.problem:
            raise IncludeError(self.problem)

    # HTTP --------------------------------------------------------------------------------------
    def _project(self, project: str) -> str:
        return f"{self.api}/projects/{_segment(project)}"

    def _http(self) -> httpx.Client:
        if self._client is None:
            import httpx

            self._client = httpx.Client(timeout=self.timeout, follow_redirects=False)
        return self._client

    def _get(
        self,
        url: str,
        *,
        project: str,
        ref: str | None,
        cached_first: bool = False,
        limit: int = MAX_FILE_BYTES,
    ) -> tuple[int, bytes]:
        """(200, body) or (404, body); IncludeError for anything else, naming what to do."""
        import httpx

        if cached_first:
            cached = self._cached(url)
            if cached is not None:
                return cached
        try:
            status, body = self._download(url, limit)
        except httpx.TransportError as exc:
            cached = self._cached(url)
            if cached is not None:
                return cached
            raise IncludeError(
                f"cannot reach the GitLab instance {self.url} ({type(exc).__name__}: "
                f"{exc or 'no answer'}) and there is no cached copy: check the network (kapal "
                "is offline?) and KAPAL_GITLAB_URL"
            ) from None
        except httpx.HTTPError as exc:
            raise IncludeError(f"cannot be fetched from {self.url}: {exc}") from None
        if status in (200, 404):
            # a missing file is kept too: offline, a component is still looked for in both places
            self._store(url, status, body)
            return status, body
        where = f"project {project!r}" if project else "the instance's templates"
        if status == 401:
            problem = (
                "GitLab answered 401 Unauthorized: KAPAL_GITLAB_TOKEN is wrong, expired or "
                "revoked; set a personal, group or project access token with the read_api scope"
            )
        elif status == 403:
            problem = (
                f"GitLab answered 403 Forbidden: the token in KAPAL_GITLAB_TOKEN may not read "
                f"{where}; it needs the read_api scope and at least Reporter access"
            )
        else:
            problem = f"GitLab at {self.url} answered HTTP {status} for {where}"
        raise IncludeError(problem)

    def _download(self, url: str, limit: int) -> tuple[int, bytes]:
        """GET `url` with the token, following redirects within the instance's origin only."""
        for _ in range(MAX_REDIRECTS + 1):
            headers = {"PRIVATE-TOKEN": self.token} if self.token and self._ours(url) else {}
            with self._http().stream("GET", url, headers=headers) as response:
                status = response.status_code
                if status in _REDIRECTS and "location" in response.headers:
                    target = urljoin(url, response.headers["location"])
                    if not self._ours(target):
                        raise IncludeError(
                            f"GitLab redirected to {_origin_of(target)}, another origin than "
                            f"KAPAL_GITLAB_URL's ({self.url}); kapal sends the token only to "
                            "KAPAL_GITLAB_URL and does not follow"
                        )
                    url = target
                    continue
                if status not in (200, 404):
                    return status, b""
                return status, read_limited(response, limit)
        raise IncludeError(f"GitLab at {self.url} redirected more than {MAX_REDIRECTS} times")

    def _ours(self, url: str) -> bool:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        try:
            port = _port(parts.scheme, parts.port)
        except ValueError:
            return False
        return (parts.scheme, host, port) == self.origin

    def _not_found(
        self, body: bytes, project: str, ref: str | None, *, file_missing_ok: bool
    ) -> None:
        """Raise what GitLab's 404 says is missing (returns for a missing file if allowed)."""
        message = _message(body).lower()
        if "file" in message and file_missing_ok:
            return
        if "project" in message:
            raise IncludeError(
                f"GitLab has no project {project!r} at {self.url}, or the token may not see "
                "it (a private project needs KAPAL_GITLAB_TOKEN with the read_api scope)"
            )
        if ("commit" in message or "ref" in message) and ref is not None:
            raise IncludeError(f"project {project!r} has no branch, tag or commit {ref!r}")
        said = _message(body) or "404 Not Found"
        raise IncludeError(
            f"{self.url} answered {said!r} for project {project!r}; is KAPAL_GITLAB_URL the "
            "instance's address (with its path, if GitLab is served under one)?"
        )

    # cache -------------------------------------------------------------------------------------
    def _path(self, url: str, status: int) -> Path | None:
        if self.cache_dir is None:
            return None
        return self.cache_dir / f"{hashlib.sha256(url.encode()).hexdigest()}-{status}"

    def _cached(self, url: str) -> tuple[int, bytes] | None:
        """The last answer (200 or 404) kept for `url`; `_store` keeps one of the two."""
        for status in (200, 404):
            path = self._path(url, status)
            if path is None:
                return None
            try:
                with path.open("rb") as handle:
                    return status, handle.read(MAX_JSON_BYTES + 1)
            except OSError:
                continue
        return None

    def _store(self, url: str, status: int, content: bytes) -> None:
        path = self._path(url, status)
        if path is None:
            return
        other = self._path(url, 404 if status == 200 else 200)
        if other is not None:
            with contextlib.suppress(OSError):  # an unwritable cache costs only the offline copy
                other.unlink(missing_ok=True)
        keep(path, content)


def latest_release(tags: list[str], partial: str | None) -> str | None:
    """The tag of the highest semantic version (matching `partial`, e.g. "1" or "1.2"), or None.

    Pre-releases (1.0.0-rc1) are skipped, as GitLab's `~latest` and partial versions skip them.
    """
    best: tuple[tuple[int, int, int], str] | None = None
    want = tuple(int(n) for n in partial.split(".")) if partial else ()
    for tag in tags:
        match = _SEMVER.fullmatch(tag)
        if match is None or match[4] is not None:
            continue
        version = (int(match[1]), int(match[2]), int(match[3]))
        if version[: len(want)] != want:
            continue
        if best is None or version > best[0]:
            best = (version, tag)
    return None if best is None else best[1]


class _Releases(NamedTuple):
    tags: list[str]
    size: int  # releases on the page, with or without a tag


def _release_tags(body: bytes) -> _Releases:
    try:
        releases: Any = json.loads(body)
    except ValueError:
        releases = None
    if not isinstance(releases, list):
        raise IncludeError("GitLab's releases API did not answer with a list of releases")
    tags = [
        r["tag_name"]
        for r in releases
        if isinstance(r, dict) and isinstance(r.get("tag_name"), str)
    ]
    return _Releases(tags, len(releases))


def _message(body: bytes) -> str:
    """GitLab's error JSON `{"message": "404 File Not Found"}` as text ("" when it is not)."""
    try:
        found = json.loads(body[:4096])
    except ValueError:
        return ""
    message = found.get("message") if isinstance(found, dict) else None
    return message if isinstance(message, str) else ""


def _segment(text: str) -> str:
    """`text` as one URL path segment: every `/` and `%` encoded, and a `.` or `..` too (an
    HTTP client would otherwise remove it, and the segment before it, from the path)."""
    encoded = quote(text, safe="")
    if encoded.strip(".") == "":
        return encoded.replace(".", "%2E")
    return encoded


def _loopback(host: str) -> bool:
    """Whether `host` (a URL's host name) names this machine's loopback interface."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _port(scheme: str, port: int | None) -> int:
    return port if port is not None else (443 if scheme == "https" else 80)


def _origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"
