"""`kapal build`: build an image from a Dockerfile into kapal's image store."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer

from runner.build.builder import SUPPORTED_PLATFORMS, Builder, BuildOptions
from runner.build.cache import LayerCache
from runner.errors import BuildError, BuildStepError, RunnerError
from runner.images.image import Image
from runner.images.reference import Reference
from runner.images.store import ImageStore
from runner.settings import RunnerSettings

if TYPE_CHECKING:
    from runner.runtime.backend import Backend, LogLine


class TerminalReporter:
    """Prints build progress: `[2/7] RUN …`, CACHED, durations, RUN output indented."""

    def __init__(self) -> None:
        self._cached = False

    def step(self, number: int, total: int, stage: str, text: str) -> None:
        """Print the step line."""
        self._cached = False
        typer.echo(f"[{number}/{total}] {text}")

    def cached(self) -> None:
        """Mark the current step as a cache hit."""
        self._cached = True

    def line(self, line: LogLine) -> None:
        """Print one line of RUN output."""
        typer.echo(f"  | {line.text}", err=line.stream == "stderr")

    def done(self, seconds: float) -> None:
        """Print how the step ended."""
        typer.echo(f"  {'CACHED ' if self._cached else ''}{seconds:.2f}s")

    def note(self, text: str) -> None:
        """Print a note."""
        typer.echo(f"note: {text}", err=True)


def _build_args(values: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for value in values:
        name, eq, rest = value.partition("=")
        if not name:
            raise typer.BadParameter(f"'{value}': write NAME=VALUE", param_hint="--build-arg")
        if eq:
            out[name] = rest
        elif name in os.environ:
            out[name] = os.environ[name]  # `--build-arg NAME` takes the value from the environment
    return out


def _epoch() -> int:
    raw = os.environ.get("SOURCE_DATE_EPOCH", "0")
    if not raw.isdigit():
        raise typer.BadParameter(f"SOURCE_DATE_EPOCH={raw!r} must be a whole number of seconds")
    return int(raw)


def register(app: typer.Typer) -> None:
    """Add `kapal build` to the `kapal` application."""

    @app.command("build")
    def build(
        context: Annotated[Path, typer.Argument(help="The build context directory.")],
        tag: Annotated[
            list[str] | None, typer.Option("--tag", "-t", help="name:tag to give the image.")
        ] = None,
        file: Annotated[
            Path | None,
            typer.Option("--file", "-f", help="Dockerfile (default CONTEXT/Dockerfile)."),
        ] = None,
        build_arg: Annotated[
            list[str] | None, typer.Option("--build-arg", help="NAME=VALUE for an ARG.")
        ] = None,
        target: Annotated[str | None, typer.Option(help="Build up to this stage.")] = None,
        no_cache: Annotated[bool, typer.Option("--no-cache", help="Ignore the cache.")] = False,
        push: Annotated[bool, typer.Option("--push", help="Push the tags after building.")] = False,
        network: Annotated[
            str,
            typer.Option(
                help="Network for RUN steps and ADD <url>: default (the outside world, not the "
                "host), none or host."
            ),
        ] = "default",
        insecure: Annotated[
            bool, typer.Option("--insecure", help="Push over plain HTTP / unverified TLS.")
        ] = False,
        platform: Annotated[
            str, typer.Option(help="Target platform; kapal builds linux/amd64 only.")
        ] = "linux/amd64",
    ) -> None:
        """Build an image from a Dockerfile (no Docker daemon needed)."""
        if platform not in SUPPORTED_PLATFORMS:
            raise typer.BadParameter(
                f"'{platform}': kapal builds linux/amd64 images only; drop --platform or use "
                "linux/amd64 (build other platforms with docker buildx)",
                param_hint="--platform",
            )
        if network not in ("default", "host", "none"):
            raise typer.BadParameter(
                f"'{network}': use default, host or none", param_hint="--network"
            )
        net: Literal["host", "nat", "none"] = (
            "nat" if network == "default" else "host" if network == "host" else "none"
        )
        tags = tuple(tag or ())
        if push and not tags:
            raise typer.BadParameter("--push needs at least one -t NAME:TAG", param_hint="--push")
        options = BuildOptions(
            context=context,
            dockerfile=file,
            tags=tags,
            build_args=_build_args(build_arg or []),
            target=target,
            no_cache=no_cache,
            network=net,
            epoch=_epoch(),
        )
        started = time.monotonic()
        try:
            settings = RunnerSettings()
            for ref in tags:
                Reference.parse(ref)
            builder = Builder(
                store=ImageStore(settings.images_dir),
                cache=LayerCache(settings.build_cache_dir),
                backend=lambda: _embedded_backend(settings),
                reporter=TerminalReporter(),
            )
            result = builder.build(options)
            if push:
                _push(settings, result.image, result.tags, insecure)
        except BuildStepError as exc:
            typer.echo(f"error: build failed at {exc}", err=True)
            raise typer.Exit(1) from None
        except BuildError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from None
        except RunnerError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            typer.echo("build interrupted", err=True)
            raise typer.Exit(130) from None
        elapsed = time.monotonic() - started
        typer.echo(
            f"built {result.image.digest} in {elapsed:.2f}s "
            f"({result.run_steps} layer steps run, {result.cached_steps} cached)"
        )
        for name in result.tags:
            typer.echo(f"tagged {name}")
        sys.stdout.flush()


def _embedded_backend(settings: RunnerSettings) -> Backend:
    """The runc backend, imported only when a RUN step misses the cache."""
    from runner.runtime.embedded import EmbeddedBackend

    return EmbeddedBackend(settings, settings.container_policy())


def _push(settings: RunnerSettings, image: Image, tags: tuple[str, ...], insecure: bool) -> None:
    """Push the built image to each tag's registry with the images package's client."""
    from runner.images.registry import RegistryClient  # only `--push` needs the HTTP client

    store = ImageStore(settings.images_dir)
    for name in tags:
        ref = Reference.parse(name)
        allowed = [*settings.insecure_registries, *([ref.registry] if insecure else [])]
        with RegistryClient(insecure=allowed, auth_file=settings.registry_auth_file) as client:
            digest = client.push(store, image, ref)
        typer.echo(f"pushed {ref.familiar} {digest}")
