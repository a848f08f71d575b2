"""Images as the engine needs them: a job's `image:` resolved to overlay layers and defaults.

`ImageProvider` is the engine's view of the image store and the builder; `StoreImageProvider`
adapts `runner.images.ImageStore` (and a build function) to it, `FakeImageProvider` serves tests.
A `StoreImageProvider` serves the pipelines of one owner (`runner.owners`): what they build is
tagged in that owner's namespace of the store, and names resolve to its own builds first, then to
the operator's base images, which pipelines never overwrite.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from runner.errors import BuildError, ImageError, ImageNotFoundError, RunnerError
from runner.images.image import Image
from runner.images.reference import Reference
from runner.images.resolve import ImageResolver
from runner.images.store import NAMESPACE_REGISTRY, ImageStore, namespaced
from runner.masking import SecretMasker
from runner.owners import DEFAULT_OWNER
from runner.runtime.backend import (
    Backend,
    Container,
    ContainerSpec,
    ExitStatus,
    ImageDefaults,
    Sandbox,
    SandboxSpec,
)
from runner.runtime.backend import LogLine as BackendLogLine


@dataclass(frozen=True)
class RunnableImage:
    """An image ready to run: its overlay lower dirs (bottom-first), config defaults, ports."""

    reference: str
    layers: tuple[Path, ...]
    defaults: ImageDefaults
    exposed_ports: tuple[int, ...] = ()


@dataclass(frozen=True)
class BuildRequest:
    """What a `build:` job asks the builder for (paths on the host, tags already expanded)."""

    context: Path
    dockerfile: Path
    tags: tuple[str, ...]
    build_args: Mapping[str, str]
    target: str | None = None
    # the repository: the Dockerfile must resolve inside it, symlinks included (None: anywhere)
    dockerfile_root: Path | None = None
    epoch: int = 0  # SOURCE_DATE_EPOCH: timestamps in the image, so rebuilds give the same digest
    no_cache: bool = False  # build every step afresh, as `docker build --no-cache` does
    network: Literal["host", "nat", "none"] = "nat"  # what RUN steps reach (runner.runtime.usernet)
    # build args whose values are secrets: given to RUN steps, never written into the image history
    secret_args: frozenset[str] = frozenset()
    # set from another thread to stop the build: its running RUN step is stopped at once
    cancel: threading.Event = field(default_factory=threading.Event, compare=False)


BuildLog = Callable[[str], None]


class ImageProvider(Protocol):
    """Finds and builds images for the engine; every method may be called from any thread."""

    def available(self, name: str, pull_policy: Sequence[str] = ()) -> bool:
        """Whether `name` can be resolved now (`ImageReferenceError` when it does not parse)."""
        ...

    def resolve(self, name: str, pull_policy: Sequence[str] = ()) -> RunnableImage:
        """The image `name`, unpacked, got as GitLab's `pull_policy` says (`PULL_POLICIES`; empty:
        `if-not-present`); `ImageNotFoundError` with the fix when it is missing."""
        ...

    def build(self, request: BuildRequest, log: BuildLog) -> str:
        """Build an image, tag it, send progress lines to `log`; return its digest."""
        ...


def exposed_ports(config: Mapping[str, Any]) -> tuple[int, ...]:
    """The TCP ports an OCI image config EXPOSEs (`"6379/tcp"` keys of `config.ExposedPorts`)."""
    inner = config.get("config") or {}
    ports: list[int] = []
    for key in inner.get("ExposedPorts") or {}:
        number, _, proto = str(key).partition("/")
        if (proto or "tcp") == "tcp" and number.isdigit():
            ports.append(int(number))
    return tuple(sorted(set(ports)))


Builder = Callable[[ImageStore, BuildRequest, BuildLog], str]

PULL_POLICIES = ("always", "if-not-present", "never")
"""GitLab's image `pull_policy` values, tried in the order a job lists them: `always` pulls
afresh from the configured pull registries (an image the owner's pipelines built is used as
it is: it is the freshest copy there is), `if-not-present` uses the local store and pulls
when it lacks the image, `never` uses the local store only."""


class StoreImageProvider:
    """Images of the local `ImageStore` for the pipelines of `owner`, pulled through `resolver`
    when one is given (see `runner.images.ImageResolver`: the configured pull registries); builds
    through `builder`.

    `owner` is the repository the pipelines belong to (`repo:<id>` in the service,
    `runner.owners.local_owner(project)` for `kapal run`): their builds are tagged in its
    namespace and their names resolve to its builds first, then to base images. Values in
    `secrets` are kept out of image histories when a build arg carries one. Lifecycle: construct
    per owner (one per pipeline is fine: it holds no resources).
    """

    def __init__(
        self,
        store: ImageStore,
        builder: Builder | None = None,
        resolver: ImageResolver | None = None,
        *,
        owner: str = DEFAULT_OWNER,
        secrets: Iterable[str] = (),
    ) -> None:
        self.store = store.for_owner(owner)
        self.owner = owner
        self._builder = builder
        self._resolver = resolver
        self._secrets = SecretMasker(secrets)
        self._lock = threading.Lock()  # the resolver serves one thread at a time

    def _image(self, name: str, pull_policy: Sequence[str] = ()) -> Image:
        ref = Reference.parse(name)
        errors: list[str] = []
        for policy in pull_policy or ("if-not-present",):
            try:
                return self._image_by(ref, policy)
            except ImageNotFoundError as exc:
                errors.append(f"{policy}: {exc}" if len(pull_policy) > 1 else str(exc))
        raise ImageNotFoundError("; ".join(errors))

    def _image_by(self, ref: Reference, policy: str) -> Image:
        """The image for `ref` under one pull policy (see `PULL_POLICIES`)."""
        if policy == "never":
            try:
                return self.store.resolve(ref)
            except ImageNotFoundError as exc:
                raise ImageNotFoundError(
                    f"{exc} (pull_policy: never: kapal does not pull it)"
                ) from None
        if policy == "always" and ref.registry != NAMESPACE_REGISTRY:
            if self.store.for_owner(None).exists(namespaced(self.owner, ref)):
                return self.store.resolve(ref)  # this repository's own build
            if self._resolver is None or not self._resolver.candidates(ref):
                raise ImageNotFoundError(
                    f"pull_policy: always, but no configured pull registry serves "
                    f"{ref.familiar!r} (set KAPAL_PULL_REGISTRIES), and `always` does not use "
                    "the local copy; add `if-not-present` to the job's pull_policy to use it"
                )
            with self._lock:
                return self._resolver.pull(ref)
        try:
            return self.store.resolve(ref)
        except ImageNotFoundError:
            if self._resolver is None or ref.registry == NAMESPACE_REGISTRY:
                raise
        with self._lock:  # the resolver pulls base images into the operator's store
            return self._resolver.resolve(ref)

    def available(self, name: str, pull_policy: Sequence[str] = ()) -> bool:
        """Whether the store holds `name`, or a configured registry gave it (as `pull_policy`
        allows)."""
        if not pull_policy and self.store.exists(Reference.parse(name)):
            return True
        if self._resolver is None and not pull_policy:
            return False
        try:
            self._image(name, pull_policy)
        except ImageNotFoundError:
            return False
        return True

    def resolve(self, name: str, pull_policy: Sequence[str] = ()) -> RunnableImage:
        """Resolve `name` as `pull_policy` says (pulling it when allowed), unpack its layers."""
        image = self._image(name, pull_policy)
        layers = tuple(self.store.unpacked_layers(image))
        return RunnableImage(
            reference=name,
            layers=layers,
            defaults=ImageDefaults.from_image_config(image.config),
            exposed_ports=exposed_ports(image.config),
        )

    def build(self, request: BuildRequest, log: BuildLog) -> str:
        """Build with the configured builder, tagging in the owner's namespace.

        A tag the owner may not write fails the build before it starts.
        """
        if self._builder is None:
            raise BuildError("this kapal has no image builder configured for build: jobs")
        for tag in request.tags:
            try:
                self.store.writable_name(tag)
            except ImageError as exc:
                raise BuildError(f"cannot tag the image {tag!r}: {exc}") from None
        secret_args = frozenset(
            name for name, value in request.build_args.items() if self._carries_secret(value)
        )
        request = dataclasses.replace(request, secret_args=request.secret_args | secret_args)
        return self._builder(self.store, request, log)

    def _carries_secret(self, value: str) -> bool:
        return bool(self._secrets) and self._secrets.mask(value) != value


@dataclass
class FakeImageProvider:
    """In-memory images for engine tests; `build` records the request and adds its tags."""

    images: dict[str, RunnableImage] = field(default_factory=dict)
    builds: list[BuildRequest] = field(default_factory=list)
    # (name, pull_policy) of each resolve, in order
    resolved: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)
    build_output: Sequence[str] = ("building", "done")
    build_error: Exception | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(
        self, name: str, *, ports: tuple[int, ...] = (), defaults: ImageDefaults | None = None
    ) -> None:
        """Make `name` available."""
        self.images[name] = RunnableImage(
            reference=name,
            layers=(Path("/nonexistent") / name.replace("/", "_"),),
            defaults=defaults or ImageDefaults(),
            exposed_ports=ports,
        )

    def available(self, name: str, pull_policy: Sequence[str] = ()) -> bool:
        """Whether `name` was added (or built)."""
        Reference.parse(name)
        with self._lock:
            return name in self.images

    def resolve(self, name: str, pull_policy: Sequence[str] = ()) -> RunnableImage:
        """The added image or `ImageNotFoundError` (whatever the pull policy, recorded)."""
        with self._lock:
            self.resolved.append((name, tuple(pull_policy)))
            found = self.images.get(name)
        if found is None:
            raise ImageNotFoundError(f"image {name} not found")
        return found

    def build(self, request: BuildRequest, log: BuildLog) -> str:
        """Record the build, print `build_output`, add the tags (or raise `build_error`)."""
        with self._lock:
            self.builds.append(request)
        for line in self.build_output:
            log(line)
        if self.build_error is not None:
            raise self.build_error
        for tag in request.tags:
            self.add(tag)
        return "sha256:" + "0" * 64


class BuildLogReporter:
    """Turns the builder's progress into plain log lines for a `build:` job.

    A step reads `step 3/4: EXPOSE 6379`; steps of a named stage (`FROM ... AS NAME`) or of
    a later unnamed stage of a multi-stage build start with `[stage NAME]` / `[stage 1]` (the
    builder labels unnamed stages by index, and the first one, the only stage of most
    Dockerfiles, needs no label).
    """

    def __init__(self, log: BuildLog) -> None:
        self._log = log

    def step(self, number: int, total: int, stage: str, text: str) -> None:
        """A step begins."""
        prefix = "" if stage in ("", "0") else f"[stage {stage}] "
        self._log(f"{prefix}step {number}/{total}: {text}")

    def cached(self) -> None:
        """The current step was a cache hit."""
        self._log("  cached")

    def line(self, line: BackendLogLine) -> None:
        """A line of RUN output."""
        self._log(line.text)

    def done(self, seconds: float) -> None:
        """The current step finished."""

    def note(self, text: str) -> None:
        """A warning or note."""
        self._log(f"note: {text}")


class CancelableBackend:
    """A backend for one build: once `cancel` is set, its running containers are stopped and
    new ones are stopped as soon as they start (the builder then fails the step as canceled).

    Lifecycle: wrap a backend for the length of one build; `watch()` (a context manager) runs
    the thread that waits for `cancel`. Every method may be called from any thread.
    """

    def __init__(self, backend: Backend, cancel: threading.Event) -> None:
        self._backend = backend
        self._cancel = cancel
        self._lock = threading.Lock()
        self._running: dict[str, Container] = {}

    @property
    def policy(self) -> object:
        """The wrapped backend's container policy (the builder sizes RUN steps' disks by it)."""
        return getattr(self._backend, "policy", None)

    def setup(self, spec: SandboxSpec) -> Sandbox:
        """Delegate."""
        return self._backend.setup(spec)

    def start(self, sandbox: Sandbox, spec: ContainerSpec) -> Container:
        """Start, remember, and stop at once if the build is already canceled."""
        container = self._backend.start(sandbox, spec)
        with self._lock:
            self._running[container.id] = container
        if self._cancel.is_set():
            self._backend.stop(container)
        return container

    def logs(self, container: Container) -> Iterator[BackendLogLine]:
        """Delegate."""
        return self._backend.logs(container)

    def wait(self, container: Container) -> ExitStatus:
        """Delegate, then forget the container."""
        try:
            return self._backend.wait(container)
        finally:
            with self._lock:
                self._running.pop(container.id, None)

    def stop(self, container: Container, grace: float = 1.0) -> None:
        """Delegate."""
        self._backend.stop(container, grace)

    def teardown(self, sandbox: Sandbox) -> None:
        """Delegate."""
        self._backend.teardown(sandbox)

    @contextlib.contextmanager
    def watch(self) -> Iterator[None]:
        """While the block runs, stop every running container as soon as `cancel` is set."""
        done = threading.Event()

        def stop_on_cancel() -> None:
            while not done.is_set():
                if self._cancel.wait(0.05):
                    with self._lock:
                        running = list(self._running.values())
                    for container in running:
                        with contextlib.suppress(RunnerError):
                            self._backend.stop(container)
                    return

        watcher = threading.Thread(target=stop_on_cancel, name="kapal-build-cancel", daemon=True)
        watcher.start()
        try:
            yield
        finally:
            done.set()
            watcher.join()


def embedded_builder(backend: Backend, build_cache_dir: Path) -> Builder:
    """A `Builder` function running kapal's Dockerfile builder with `backend` for RUN steps.

    Setting the request's `cancel` event stops the RUN step running at that moment.
    """

    def build(store: ImageStore, request: BuildRequest, log: BuildLog) -> str:
        # the builder is imported only when a `build:` job runs (a pipeline start-up cost otherwise)
        from runner.build.builder import Builder as DockerfileBuilder
        from runner.build.builder import BuildOptions
        from runner.build.cache import LayerCache

        cancelable = CancelableBackend(backend, request.cancel)
        builder = DockerfileBuilder(
            store=store,
            cache=LayerCache(build_cache_dir),
            backend=cancelable,
            reporter=BuildLogReporter(log),
        )
        with cancelable.watch():
            result = builder.build(
                BuildOptions(
                    context=request.context,
                    dockerfile=request.dockerfile,
                    dockerfile_root=request.dockerfile_root,
                    tags=request.tags,
                    build_args=dict(request.build_args),
                    target=request.target,
                    epoch=request.epoch,
                    no_cache=request.no_cache,
                    network=request.network,
                    secret_args=request.secret_args,
                )
            )
        return result.image.digest

    return build
