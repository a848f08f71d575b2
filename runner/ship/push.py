"""Pushing images a pipeline built to registries, by digest, with one-line failures.

Credentials: the repository's secrets `CI_REGISTRY_USER` and `CI_REGISTRY_PASSWORD` are used for
the registry named by `CI_REGISTRY` (a secret or a pipeline variable, `host[:port]`), as GitLab's
predefined variables are; every other registry gets the operator's auth file
(`RunnerSettings.registry_auth_file`). Plain HTTP only for localhost and the registries the
operator lists in `KAPAL_INSECURE_REGISTRIES`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from runner.errors import ImageError, RegistryError, ShipError
from runner.images.image import Image
from runner.images.reference import Reference
from runner.images.registry import Credentials, RegistryClient
from runner.images.store import NAMESPACE_REGISTRY, ImageStore

Log = Callable[[str], None]


@dataclass(frozen=True)
class PushSettings:
    """Where pushes may go over plain HTTP and where the operator's credentials are."""

    insecure: tuple[str, ...] = ()
    auth_file: Path | None = None


def secret_credentials(values: Mapping[str, str]) -> dict[str, Credentials]:
    """The registry credentials a job's secrets give: `CI_REGISTRY` -> user and password."""
    registry = values.get("CI_REGISTRY", "").strip()
    user = values.get("CI_REGISTRY_USER", "")
    password = values.get("CI_REGISTRY_PASSWORD", "")
    if not registry or not user:
        return {}
    return {registry: Credentials(user, password)}


class ShipRegistryClient(RegistryClient):
    """A `RegistryClient` that prefers the job's own credentials for their registry."""

    def __init__(
        self, settings: PushSettings, credentials: Mapping[str, Credentials] | None = None
    ) -> None:
        super().__init__(insecure=settings.insecure, auth_file=settings.auth_file)
        self._own = dict(credentials or {})

    def _credentials(self, registry: str) -> Credentials | None:
        own = self._own.get(registry)
        return own if own is not None else super()._credentials(registry)


def destination(name: str) -> Reference:
    """The registry reference `name` pushes to; `ShipError` for a name kapal cannot push."""
    try:
        ref = Reference.parse(name)
    except ImageError as exc:
        raise ShipError(f"cannot push to {name!r}: {exc}") from None
    if ref.registry == NAMESPACE_REGISTRY:
        raise ShipError(f"cannot push to {name!r}: {NAMESPACE_REGISTRY} is kapal's own namespace")
    return ref


def one_line(exc: BaseException) -> str:
    """An error as one line (a registry's answer can span several)."""
    return " ".join(str(exc).split()) or type(exc).__name__


def push_image(
    store: ImageStore,
    image: Image,
    targets: Iterable[str],
    *,
    settings: PushSettings,
    credentials: Mapping[str, Credentials] | None = None,
    log: Log,
) -> str:
    """Push `image` (an exact digest of `store`) to every reference of `targets`.

    Logs `pushed REF@DIGEST` for each; returns the digest. A registry that refuses, cannot be
    reached or asks for credentials it did not get raises `ShipError` with its answer in one
    line, naming the reference.
    """
    refs = [destination(name) for name in targets]
    with ShipRegistryClient(settings, credentials) as client:
        for ref in refs:
            try:
                pushed = client.push(store, image, ref)
            except (RegistryError, ImageError) as exc:
                raise ShipError(f"push to {ref.familiar} failed: {one_line(exc)}") from None
            except OSError as exc:  # a socket error the client did not wrap
                raise ShipError(f"push to {ref.familiar} failed: {one_line(exc)}") from None
            log(f"kapal: pushed {ref.familiar}@{pushed}")
    return image.digest
