"""Finding the image for a job's `image:`: local store, then configured registries, or an error."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from runner.errors import ImageNotFoundError, RegistryError
from runner.images.image import Image
from runner.images.reference import DEFAULT_REGISTRY, Reference
from runner.images.store import ImageStore, not_found

if TYPE_CHECKING:
    from runner.images.registry import RegistryClient
    from runner.settings import RunnerSettings
    from runner.settings_env import EnvSettings


class ImageResolver:
    """Resolves image names for jobs: local first, then `settings.pull_registries`, in order.

    A reference naming one of the configured registries is pulled from it; a `docker.io` one (the
    default for short names like `python:3.12`) is looked up by repository path in each configured
    registry, so a local mirror serves them. With no registries configured kapal never pulls on its
    own. Lifecycle: construct once per worker; `resolve` may be called from one thread at a time.
    """

    def __init__(
        self,
        store: ImageStore,
        settings: RunnerSettings | EnvSettings,
        client_factory: Callable[[], RegistryClient] | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self._client_factory = client_factory or self._default_client

    def _default_client(self) -> RegistryClient:
        """A client for the configured registries (httpx is imported only when kapal pulls)."""
        from runner.images.registry import RegistryClient

        return RegistryClient(
            insecure=self.settings.insecure_registries,
            auth_file=self.settings.registry_auth_file,
        )

    def candidates(self, ref: Reference) -> list[Reference]:
        """The registry references a missing image is pulled from, in order."""
        registries = self.settings.pull_registries
        if ref.registry in registries:
            return [ref]
        if ref.registry == DEFAULT_REGISTRY:
            return [Reference(r, ref.repository, ref.tag, ref.digest) for r in registries]
        return []

    def resolve(self, name: str | Reference) -> Image:
        """The image for `name`, pulled into the store when it is missing and a registry has it."""
        ref = name if isinstance(name, Reference) else Reference.parse(name)
        try:
            return self.store.resolve(ref)
        except ImageNotFoundError:
            pass
        return self.pull(ref)

    def pull(self, name: str | Reference) -> Image:
        """Pull `name` afresh from the configured registries (`pull_policy: always`), whatever
        the store holds; `ImageNotFoundError` naming the registries tried when none gives it."""
        ref = name if isinstance(name, Reference) else Reference.parse(name)
        tried: list[str] = []
        candidates = self.candidates(ref)
        if candidates:
            with self._client_factory() as client:
                for candidate in candidates:
                    try:
                        image = client.pull(candidate, self.store)
                    except (ImageNotFoundError, RegistryError) as exc:
                        tried.append(f"{candidate.registry}: {exc}")
                        continue
                    if ref.tag and candidate != ref:
                        self.store.tag(image, ref)
                    return self.store.resolve(ref)
        error = not_found(ref)
        if tried:
            raise ImageNotFoundError(f"{error} (registries tried: {' | '.join(tried)})")
        raise error
