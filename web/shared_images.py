"""Images built by a job, shared with the workers that run the later jobs of its pipeline
through a registry (`Settings.share_registry`, e.g. `registry:5000/kapal`).

    build job (worker A): build ─► push the image by digest to
        <share_registry>/<owner slug>/<registry>/<repository>@sha256:…   (the built_images row
        records the digest and `pushed`)
    later job (worker B): `image: shop-app:latest` not in B's store ─► the pipeline's
        built_images row for that tag ─► pull by that digest ─► tag it in the repository's
        namespace of B's store ─► the job runs in the very image A built

Pushed and pulled by digest only, so a tag moved in the registry meanwhile never changes what a
job runs, and each repository's builds stay in a path of their own (its owner slug), as they
do in one worker's store. Unset, a built image stays in the worker's store (one machine).
"""

from __future__ import annotations

from runner.images.reference import Reference
from runner.images.registry import RegistryClient
from runner.images.store import ImageStore
from runner.owners import owner_slug
from web.settings import Settings


class RegistryShare:
    """Pushes a job's built images to the share registry and pulls them into another worker's
    store (see the module docstring).

    Lifecycle: one per job attempt; each call opens and closes its own registry client.
    """

    def __init__(self, settings: Settings, store: ImageStore, owner: str) -> None:
        self.settings = settings
        self.operator_store = store.for_owner(None)
        self.owner_store = store.for_owner(owner)
        self.owner = owner
        self.registry, _, prefix = settings.share_registry.strip("/").partition("/")
        self.prefix = prefix

    def shared_reference(self, name: str, digest: str) -> Reference:
        """Where the image a job tagged `name` goes in the share registry, by its digest."""
        ref = Reference.parse(name)
        place = ref.registry.lower().replace(":", "_")
        parts = [self.prefix, owner_slug(self.owner), place, ref.repository]
        repository = "/".join(part for part in parts if part)
        return Reference(self.registry, repository, None, digest)

    def _client(self) -> RegistryClient:
        return RegistryClient(
            insecure=self.settings.insecure_registries,
            auth_file=self.settings.registry_auth_file,
        )

    def push(self, name: str, digest: str) -> Reference:
        """Push the image built as `name` (manifest `digest`) by digest; where it went."""
        image = self.operator_store.get(digest)
        target = self.shared_reference(name, digest)
        with self._client() as client:
            client.push(self.operator_store, image, target)
        return target

    def fetch(self, name: str, digest: str) -> None:
        """Pull the image `name` built by an earlier job (by `digest`) and tag it as `name` in
        the repository's namespace of this worker's store."""
        with self._client() as client:
            image = client.pull(self.shared_reference(name, digest), self.operator_store)
        if image.digest != digest:  # a registry cannot do this with a digest pull; checked still
            raise ValueError(f"{name}: the share registry gave {image.digest}, not {digest}")
        self.owner_store.tag(image, Reference.parse(name))
