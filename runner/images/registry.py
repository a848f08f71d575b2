"""A registry client for the OCI distribution API over httpx: pull, push, token and basic auth.

Transport: HTTPS, except plain HTTP for localhost, 127.0.0.0/8 and ::1 (as Docker does) and for
registries listed as insecure (`RunnerSettings.insecure_registries`, `--insecure`).

Auth: a 401 carries a `WWW-Authenticate` challenge. `Bearer realm=…,service=…,scope=…` sends the
client to the token endpoint (with the registry's credentials as basic auth when there are any) for
a token, then the request is retried with it; `Basic` retries with the credentials. Credentials come
from a docker config.json-style file (`RunnerSettings.registry_auth_file`, by default
`~/.docker/config.json`): `{"auths": {"host:port": {"auth": base64("user:password")}}}` or
`{"username": ..., "password": ...}` in place of `auth`.

httpx is imported when a client is made, not with this module: `kapal run` imports the module
but talks to a registry only to pull or push.
"""

from __future__ import annotations

import base64
import errno
import hashlib
import ipaddress
import json
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from filelock import FileLock

from runner.errors import (
    CorruptBlobError,
    ImageNotFoundError,
    MediaTypeError,
    RegistryAuthError,
    RegistryError,
    RegistryStatusError,
)
from runner.images import mediatypes as mt
from runner.images.blobs import CHUNK, sha256_digest, store_full_error
from runner.images.image import Image
from runner.images.platforms import pick_platform
from runner.images.reference import DEFAULT_REGISTRY, Reference
from runner.images.store import ImageStore

if TYPE_CHECKING:
    import httpx

DOCKER_HUB_HOST = "registry-1.docker.io"
CHUNK_UPLOAD_SIZE = 16 << 20
RETRIES = 3

# A progress report: (what, bytes done, bytes total). Called as blobs move.
Progress = Callable[[str, int, int], None]


def _no_progress(what: str, done: int, total: int) -> None:
    """Ignore progress."""


@dataclass(frozen=True)
class Credentials:
    """A user name and password (or token) for one registry."""

    username: str
    password: str


def load_credentials(path: Path | None, registry: str) -> Credentials | None:
    """The credentials for `registry` in a docker config.json-style file, if there are any."""
    path = path or Path.home() / ".docker" / "config.json"
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, json.JSONDecodeError) as exc:
        raise RegistryAuthError(f"{path}: cannot read registry credentials ({exc})") from exc
    auths = data.get("auths") or {}
    keys = [registry, f"https://{registry}", f"http://{registry}"]
    if registry == DEFAULT_REGISTRY:
        keys += ["https://index.docker.io/v1/", "index.docker.io", DOCKER_HUB_HOST]
    for key in keys:
        entry = auths.get(key)
        if not entry:
            continue
        if entry.get("auth"):
            try:
                user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
            except (ValueError, UnicodeDecodeError) as exc:
                raise RegistryAuthError(
                    f"{path}: the `auth` of {key!r} is not base64 of user:password"
                ) from exc
            return Credentials(user, password)
        if entry.get("username"):
            return Credentials(str(entry["username"]), str(entry.get("password", "")))
    return None


def is_local_host(registry: str) -> bool:
    """Whether `registry` (host[:port]) is this machine: localhost, 127.0.0.0/8 or ::1."""
    if registry.startswith("["):
        host = registry[1:].partition("]")[0]
    else:
        host = registry.rsplit(":", 1)[0] if registry.count(":") == 1 else registry
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """Split a WWW-Authenticate header into its scheme and parameters."""
    scheme, _, rest = header.strip().partition(" ")
    params = {k.lower(): v for k, v in re.findall(r'(\w+)="([^"]*)"', rest)}
    return scheme.lower(), params


def _error_detail(response: httpx.Response) -> str:
    try:
        errors = response.json().get("errors") or []
        return "; ".join(f"{e.get('code', '')} {e.get('message', '')}".strip() for e in errors)
    except (ValueError, AttributeError):
        return response.text[:200].strip()


class RegistryClient:
    """Talks to OCI registries for `pull` and `push` of images in an `ImageStore`.

    Lifecycle: construct, use (`pull`, `push`, any number of times, one thread at a time), then
    `close()`, or use it as a context manager. Tokens are cached per registry and scope for the
    client's lifetime.
    """

    def __init__(
        self,
        *,
        insecure: Iterable[str] = (),
        auth_file: Path | None = None,
        transport: httpx.BaseTransport | None = None,
        progress: Progress = _no_progress,
        timeout: float = 60.0,
    ) -> None:
        self._insecure = set(insecure)
        self._auth_file = auth_file
        self._progress = progress
        import httpx  # loaded when a registry is talked to, not at start-up

        self._client = httpx.Client(transport=transport, timeout=timeout, follow_redirects=True)
        self._tokens: dict[tuple[str, str], str] = {}
        self._basic: set[str] = set()
        # (registry, blob digest) -> a repository there known to hold it, for cross-repo mounts.
        self._seen: dict[tuple[str, str], str] = {}

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the HTTP connections."""
        self._client.close()

    # -- addressing and auth ---------------------------------------------------------------

    def base_url(self, registry: str) -> str:
        """`https://host/v2/`, or `http://` for local and insecure registries."""
        host = DOCKER_HUB_HOST if registry == DEFAULT_REGISTRY else registry
        scheme = "http" if is_local_host(registry) or registry in self._insecure else "https"
        return f"{scheme}://{host}/v2/"

    def _credentials(self, registry: str) -> Credentials | None:
        return load_credentials(self._auth_file, registry)

    def _authorize(self, ref: Reference, scope: str, headers: dict[str, str]) -> None:
        token = self._tokens.get((ref.registry, scope))
        if token:
            headers["Authorization"] = f"Bearer {token}"
        elif ref.registry in self._basic:
            creds = self._credentials(ref.registry)
            if creds:
                raw = f"{creds.username}:{creds.password}".encode()
                headers["Authorization"] = "Basic " + base64.b64encode(raw).decode()

    def _handle_challenge(self, ref: Reference, scope: str, response: httpx.Response) -> None:
        import httpx

        scheme, params = parse_challenge(response.headers.get("www-authenticate", ""))
        creds = self._credentials(ref.registry)
        if scheme == "basic":
            if creds is None:
                raise self._auth_error(ref, response, "it asks for a user name and password")
            self._basic.add(ref.registry)
            return
        if scheme != "bearer" or "realm" not in params:
            raise self._auth_error(ref, response, "it sent no usable auth challenge")
        query = {"scope": scope}  # what this operation needs (a challenge may name less)
        if params.get("service"):
            query["service"] = params["service"]
        auth = (creds.username, creds.password) if creds else None
        try:
            answer = self._client.get(params["realm"], params=query, auth=auth)
        except httpx.TransportError as exc:
            raise RegistryError(
                f"cannot reach the token service {params['realm']} of {ref.registry}: {exc}"
            ) from exc
        if answer.status_code != 200:
            raise self._auth_error(
                ref, answer, f"its token service {params['realm']} answered {answer.status_code}"
            )
        body = answer.json()
        token = body.get("token") or body.get("access_token")
        if not token:
            raise RegistryAuthError(f"the token service of {ref.registry} returned no token")
        self._tokens[(ref.registry, scope)] = str(token)

    def _auth_error(self, ref: Reference, response: httpx.Response, why: str) -> RegistryAuthError:
        detail = _error_detail(response)
        where = self._auth_file or "~/.docker/config.json"
        return RegistryAuthError(
            f"registry {ref.registry} refused access to {ref.repository} "
            f"({response.status_code}{': ' + detail if detail else ''}); {why}. Put credentials "
            f'for it in {where} ({{"auths": {{"{ref.registry}": '
            '{"auth": "<base64 of user:password>"}}})'
        )

    @contextmanager
    def _send(
        self,
        method: str,
        url: str,
        ref: Reference,
        scope: str,
        *,
        headers: dict[str, str] | None = None,
        content: bytes | Iterator[bytes] | None = None,
        content_factory: Callable[[], bytes | Iterator[bytes]] | None = None,
        ok: tuple[int, ...] = (200,),
        stream: bool = False,
    ) -> Iterator[httpx.Response]:
        """Send a request with auth and retries; yield a response whose status is in `ok`."""
        import httpx

        last: httpx.Response | None = None
        authed = False
        for attempt in range(RETRIES + 1):
            h = dict(headers or {})
            self._authorize(ref, scope, h)
            body = content_factory() if content_factory is not None else content
            try:
                request = self._client.build_request(method, url, headers=h, content=body)
                response = self._client.send(request, stream=stream)
            except httpx.TransportError as exc:
                if attempt < RETRIES - 1:
                    time.sleep(0.2 * (attempt + 1))
                    continue
                raise RegistryError(
                    f"cannot reach registry {ref.registry} ({method} {url}): {exc}. Check the "
                    "address and that the registry runs; for a plain-HTTP registry elsewhere "
                    "than localhost use --insecure"
                ) from exc
            try:
                if response.status_code == 401 and not authed:
                    authed = True
                    response.read()
                    self._handle_challenge(ref, scope, response)
                    continue
                if response.status_code in (502, 503, 504) and attempt < RETRIES - 1:
                    response.read()
                    last = response
                    time.sleep(0.2 * (attempt + 1))
                    continue
                if response.status_code not in ok:
                    response.read()
                    raise self._status_error(method, url, ref, response)
                yield response
                return
            finally:
                response.close()
        if last is not None:
            raise self._status_error(method, url, ref, last)
        raise RegistryError(f"registry {ref.registry} kept refusing {method} {url}; giving up")

    def _status_error(
        self, method: str, url: str, ref: Reference, response: httpx.Response
    ) -> RegistryError:
        status = response.status_code
        detail = _error_detail(response)
        if status in (401, 403):
            return self._auth_error(ref, response, "the credentials were refused")
        if status >= 500:
            return RegistryStatusError(
                f"registry {ref.registry} failed with {status} {response.reason_phrase} for "
                f"{method} {url}{' (' + detail + ')' if detail else ''}; it may be overloaded or "
                "broken: try again later",
                status,
            )
        return RegistryStatusError(
            f"registry {ref.registry} answered {status} {response.reason_phrase} for {method} "
            f"{url}{' (' + detail + ')' if detail else ''}",
            status,
        )

    # -- pull ------------------------------------------------------------------------------

    def _get_manifest(self, ref: Reference, what: str) -> tuple[bytes, str]:
        url = f"{self.base_url(ref.registry)}{ref.repository}/manifests/{what}"
        scope = f"repository:{ref.repository}:pull"
        try:
            with self._send("GET", url, ref, scope, headers={"Accept": mt.ACCEPT_MANIFESTS}) as r:
                body = r.content
                media_type = r.headers.get("content-type", "").split(";")[0].strip()
                announced = r.headers.get("docker-content-digest", "")
        except RegistryStatusError as exc:
            if exc.status == 404:
                raise ImageNotFoundError(
                    f"image {ref.familiar!r} is not in registry {ref.registry} (404 for "
                    f"{ref.repository}{'@' if ':' in what else ':'}{what}); check the name and tag"
                ) from exc
            raise
        expected = what if what.startswith("sha256:") else announced
        if expected.startswith("sha256:") and sha256_digest(body) != expected:
            raise CorruptBlobError(
                f"registry {ref.registry} sent a manifest for {ref.repository} {what} that hashes "
                f"to {sha256_digest(body)}, not {expected}; refusing it"
            )
        try:
            declared = json.loads(body).get("mediaType")
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as exc:
            raise RegistryError(
                f"registry {ref.registry} sent a manifest that is not JSON"
            ) from exc
        return body, str(declared or media_type)

    def pull(self, ref: Reference, store: ImageStore) -> Image:
        """Pull `ref` (linux/amd64 from a list) into `store`, verify every blob, tag it."""
        what = ref.digest or ref.tag or "latest"
        body, media_type = self._get_manifest(ref, what)
        with store.session():
            if media_type in mt.INDEXES:
                if ref.digest:
                    store.add_index(body, f"image index {ref.digest}")
                chosen = pick_platform(json.loads(body), f"{ref.familiar} in {ref.registry}")
                body, media_type = self._get_manifest(ref, str(chosen["digest"]))
            if media_type not in mt.MANIFESTS:
                raise MediaTypeError(
                    f"{ref.familiar}: registry {ref.registry} sent a manifest of type "
                    f"{media_type!r}; kapal reads OCI and Docker v2 (schema 2) manifests"
                )
            manifest = json.loads(body)
            layers = list(manifest.get("layers") or [])
            for layer in layers:
                mt.layer_is_gzip(str(layer.get("mediaType", "")), f"{ref.familiar}")
            for desc in [manifest["config"], *layers]:
                self._fetch_blob(ref, store, str(desc["digest"]), int(desc.get("size", 0)))
                self._seen[(ref.registry, str(desc["digest"]))] = ref.repository
            tags = [ref.with_tag(ref.tag)] if ref.tag else [ref]
            image = store.add_manifest(body, tags, f"manifest of {ref.familiar}")
        return image

    def _fetch_blob(self, ref: Reference, store: ImageStore, digest: str, size: int) -> None:
        import httpx

        if store.blobs.has(digest):
            self._progress(digest, size, size)
            return
        hexpart = digest.partition(":")[2]
        part = store.tmp / f"download-{hexpart}.part"
        url = f"{self.base_url(ref.registry)}{ref.repository}/blobs/{digest}"
        scope = f"repository:{ref.repository}:pull"
        with FileLock(str(store.tmp / f"download-{hexpart}.lock")):
            if store.blobs.has(digest):
                return
            hasher = hashlib.sha256()
            have = 0
            if part.exists():
                with part.open("rb") as f:
                    while chunk := f.read(CHUNK):
                        hasher.update(chunk)
                        have += len(chunk)
            headers = {"Range": f"bytes={have}-"} if have else {}
            try:
                with self._send(
                    "GET", url, ref, scope, headers=headers, ok=(200, 206), stream=True
                ) as response:
                    mode = "ab"
                    if response.status_code == 200 and have:
                        hasher, have, mode = hashlib.sha256(), 0, "wb"
                    with part.open(mode) as f:
                        for chunk in response.iter_bytes(CHUNK):
                            f.write(chunk)
                            hasher.update(chunk)
                            have += len(chunk)
                            self._progress(digest, have, size)
                        f.flush()
                        os.fsync(f.fileno())
            except httpx.TransportError as exc:
                raise RegistryError(
                    f"the download of {digest} from {ref.registry} broke off after {have} bytes "
                    f"({exc}); pull again to resume it"
                ) from exc
            except OSError as exc:
                if exc.errno == errno.ENOSPC:
                    part.unlink(missing_ok=True)
                    raise store_full_error(store.root, exc) from exc
                raise
            got = "sha256:" + hasher.hexdigest()
            if got != digest:
                part.unlink(missing_ok=True)
                raise CorruptBlobError(
                    f"blob {digest} from {ref.registry}/{ref.repository} hashes to {got} "
                    f"({have} bytes); the download is corrupt and was discarded: pull again"
                )
            final = store.blobs.path(digest)
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(part, final)

    # -- push ------------------------------------------------------------------------------

    def push(self, store: ImageStore, image: Image, ref: Reference) -> str:
        """Push `image` to `ref`: blobs the registry lacks, then the manifest; return its digest."""
        scope = f"repository:{ref.repository}:pull,push"
        base = self.base_url(ref.registry)
        blobs = [(image.config_digest, store.blobs.size(image.config_digest))]
        blobs += [(x.digest, x.size) for x in image.layers]
        for digest, size in blobs:
            self._push_blob(store, ref, scope, base, digest, size)
        manifest_bytes = store.blobs.read_bytes(image.digest, f"manifest {image.digest}")
        target = ref.tag or ref.digest or "latest"
        url = f"{base}{ref.repository}/manifests/{target}"
        headers = {"Content-Type": image.media_type or mt.OCI_MANIFEST}
        with self._send(
            "PUT", url, ref, scope, headers=headers, content=manifest_bytes, ok=(201, 200)
        ) as response:
            sent = response.headers.get("docker-content-digest", image.digest)
        if sent != image.digest:
            raise RegistryError(
                f"registry {ref.registry} stored the manifest as {sent}, expected {image.digest}"
            )
        return image.digest

    def _push_blob(
        self, store: ImageStore, ref: Reference, scope: str, base: str, digest: str, size: int
    ) -> None:
        import httpx

        head_url = f"{base}{ref.repository}/blobs/{digest}"
        with self._send("HEAD", head_url, ref, scope, ok=(200, 404)) as response:
            if response.status_code == 200:
                self._progress(digest, size, size)
                self._seen[(ref.registry, digest)] = ref.repository
                return
        upload_url = f"{base}{ref.repository}/blobs/uploads/"
        source = self._seen.get((ref.registry, digest))
        if source and source != ref.repository:
            # Cross-repository mount: the registry links the blob it has (201) or, when it
            # cannot, opens an ordinary upload (202).
            upload_url += "?" + str(httpx.QueryParams({"mount": digest, "from": source}))
        with self._send("POST", upload_url, ref, scope, ok=(201, 202)) as response:
            if response.status_code == 201:
                self._progress(digest, size, size)
                self._seen[(ref.registry, digest)] = ref.repository
                return
            location = self._location(response, base)
        self._upload(store, ref, scope, base, digest, size, location)
        self._seen[(ref.registry, digest)] = ref.repository

    def _upload(
        self,
        store: ImageStore,
        ref: Reference,
        scope: str,
        base: str,
        digest: str,
        size: int,
        location: str,
    ) -> None:
        """Send a blob to an upload session at `location`: one PUT, or PATCH chunks then PUT."""
        import httpx

        path = store.blobs.path(digest)
        if size <= CHUNK_UPLOAD_SIZE:

            def whole() -> bytes:
                return path.read_bytes()

            url = str(httpx.URL(location).copy_merge_params({"digest": digest}))
            headers = {"Content-Type": "application/octet-stream"}
            with self._send(
                "PUT", url, ref, scope, headers=headers, content_factory=whole, ok=(201,)
            ):
                self._progress(digest, size, size)
            return
        sent = 0
        with path.open("rb") as f:
            while chunk := f.read(CHUNK_UPLOAD_SIZE):
                headers = {
                    "Content-Type": "application/octet-stream",
                    "Content-Range": f"{sent}-{sent + len(chunk) - 1}",
                }
                with self._send(
                    "PATCH", location, ref, scope, headers=headers, content=chunk, ok=(202,)
                ) as response:
                    location = self._location(response, base)
                sent += len(chunk)
                self._progress(digest, sent, size)
        url = str(httpx.URL(location).copy_merge_params({"digest": digest}))
        with self._send("PUT", url, ref, scope, ok=(201,)):
            pass

    @staticmethod
    def _location(response: httpx.Response, base: str) -> str:
        import httpx

        location = response.headers.get("location")
        if not location:
            raise RegistryError(f"registry answered {response.status_code} with no Location")
        return str(httpx.URL(base).join(location))
