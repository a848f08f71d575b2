"""`kapal image ...`: list, pull, push, import, export, bootstrap, remove, inspect, tag, gc."""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Annotated, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from runner.errors import RunnerError
from runner.images.archives import export_images, import_archive
from runner.images.bootstrap import bootstrap_busybox, bootstrap_debian
from runner.images.progress import TransferProgress
from runner.images.reference import Reference
from runner.images.registry import RegistryClient
from runner.images.store import ImageStore
from runner.settings import RunnerSettings

P = ParamSpec("P")
R = TypeVar("R")

Insecure = Annotated[
    bool, typer.Option("--insecure", help="Allow plain HTTP to this registry (not only localhost).")
]


def _fail_cleanly(func: Callable[P, R]) -> Callable[P, R]:
    """Turn kapal errors into one `error:` message and exit code 1, never a traceback."""

    @wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except RunnerError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from None
        except OSError as exc:  # a file the user named: missing, unreadable, a directory...
            where = f": {exc.filename}" if exc.filename else ""
            typer.echo(f"error: {exc.strerror or exc}{where}", err=True)
            raise typer.Exit(1) from None

    return wrapper


def _store(settings: RunnerSettings) -> ImageStore:
    return ImageStore(settings.images_dir)


def _client(
    settings: RunnerSettings, insecure: bool, ref: Reference, progress: TransferProgress
) -> RegistryClient:
    allowed = [*settings.insecure_registries, *([ref.registry] if insecure else [])]
    return RegistryClient(
        insecure=allowed, auth_file=settings.registry_auth_file, progress=progress
    )


def _human(size: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000  # type: ignore[assignment]
    return str(size)


def register(app: typer.Typer) -> None:
    """Add `kapal image ...` to the `kapal` application."""
    image_app = typer.Typer(
        name="image", help="Manage the local OCI image store.", no_args_is_help=True
    )
    app.add_typer(image_app)

    @image_app.command("ls")
    @_fail_cleanly
    def list_images(
        quiet: Annotated[
            bool, typer.Option("-q", "--quiet", help="Print references only.")
        ] = False,
    ) -> None:
        """List tagged images."""
        entries = _store(RunnerSettings()).list_images()
        if quiet:
            for entry in entries:
                typer.echo(entry.reference.familiar)
            return
        table = Table(box=None, pad_edge=False)
        for column in ("IMAGE", "DIGEST", "ID", "SIZE", "CREATED"):
            table.add_column(column)
        for entry in entries:
            image = entry.image
            table.add_row(
                entry.reference.familiar,
                image.digest[:19],
                image.id,
                _human(image.size),
                image.created or "-",
            )
        Console(width=200).print(table)

    @image_app.command("pull")
    @_fail_cleanly
    def pull(name: str, insecure: Insecure = False) -> None:
        """Pull an image (linux/amd64) from its registry into the store."""
        settings = RunnerSettings()
        ref = Reference.parse(name)
        progress = TransferProgress("pulled")
        with progress, _client(settings, insecure, ref, progress) as client:
            image = client.pull(ref, _store(settings))
        typer.echo(f"{ref.familiar} {image.digest}")

    @image_app.command("push")
    @_fail_cleanly
    def push(
        name: str,
        destination: Annotated[
            str | None, typer.Argument(help="Where to push (default: NAME itself).")
        ] = None,
        insecure: Insecure = False,
    ) -> None:
        """Push a local image to its registry (or to DESTINATION)."""
        settings = RunnerSettings()
        store = _store(settings)
        image = store.resolve(name)
        ref = Reference.parse(destination or name)
        progress = TransferProgress("pushed")
        with progress, _client(settings, insecure, ref, progress) as client:
            digest = client.push(store, image, ref)
        typer.echo(f"{ref.familiar} {digest}")

    @image_app.command("import")
    @_fail_cleanly
    def import_(
        file: Path,
        tag: Annotated[
            str | None,
            typer.Option("--tag", "-t", help="Name for an image the archive leaves unnamed."),
        ] = None,
    ) -> None:
        """Import a `docker save` archive or an OCI layout (directory or tar)."""
        for image in import_archive(_store(RunnerSettings()), file, tag):
            name = image.reference.familiar if image.reference else "(untagged)"
            typer.echo(f"{name} {image.digest}")

    @image_app.command("export")
    @_fail_cleanly
    def export(
        names: Annotated[list[str], typer.Argument(help="Images to export.")],
        output: Annotated[
            Path, typer.Option("--output", "-o", help="File (or directory) to write.")
        ],
        fmt: Annotated[
            str, typer.Option("--format", help="docker (docker save/load) or oci (image layout).")
        ] = "docker",
        directory: Annotated[
            bool, typer.Option("--dir", help="With --format oci: write a layout directory.")
        ] = False,
    ) -> None:
        """Export images as a docker-save archive or an OCI image layout."""
        export_images(_store(RunnerSettings()), names, output, fmt, as_directory=directory)
        typer.echo(str(output))

    @image_app.command("bootstrap")
    @_fail_cleanly
    def bootstrap(
        name: Annotated[
            str, typer.Argument(help="busybox, debian:bookworm, debian:bookworm-slim...")
        ],
        include: Annotated[
            str, typer.Option("--include", help="Extra Debian packages, comma-separated.")
        ] = "",
        tag: Annotated[str | None, typer.Option("--tag", "-t", help="Tag (default: NAME).")] = None,
        mirror: Annotated[str | None, typer.Option("--mirror", help="Debian mirror URL.")] = None,
    ) -> None:
        """Make a base image offline: Debian with mmdebstrap, or busybox from busybox-static."""
        store = _store(RunnerSettings())
        if Reference.parse(name).repository == "library/busybox":
            image = bootstrap_busybox(store, tag or name)
        else:
            packages = [p for p in include.split(",") if p.strip()]
            image = bootstrap_debian(store, name, include=packages, tag=tag, mirror=mirror)
        typer.echo(f"{Reference.parse(tag or name).familiar} {image.digest}")

    @image_app.command("rm")
    @_fail_cleanly
    def remove(names: list[str]) -> None:
        """Remove images (a digest reference removes every tag of that image)."""
        store = _store(RunnerSettings())
        for name in names:
            for ref in store.remove(name):
                typer.echo(f"untagged {ref.familiar}")

    @image_app.command("inspect")
    @_fail_cleanly
    def inspect(name: str) -> None:
        """Print an image's digests, config and layers as JSON."""
        typer.echo(json.dumps(_store(RunnerSettings()).inspect(name), indent=2))

    @image_app.command("tag")
    @_fail_cleanly
    def tag_(source: str, target: str) -> None:
        """Give the image SOURCE the additional name TARGET."""
        store = _store(RunnerSettings())
        ref = store.tag(store.resolve(source), target)
        typer.echo(ref.familiar)

    @image_app.command("gc")
    @_fail_cleanly
    def gc() -> None:
        """Delete blobs and unpacked layers that no tag uses; prune the build cache to its limit."""
        from runner.build.cache_prune import prune_build_cache
        from runner.runtime.quantities import parse_size

        settings = RunnerSettings()
        report = _store(settings).gc()
        typer.echo(
            f"removed {report.blobs} blobs and {report.layers} unpacked layers, "
            f"freed {_human(report.bytes_freed)}"
        )
        limit = parse_size(settings.build_cache_max, what="KAPAL_BUILD_CACHE_MAX")
        pruned = prune_build_cache(settings.build_cache_dir, limit)
        typer.echo(
            f"build cache: removed {pruned.entries} step layers and {pruned.mounts} cache "
            f"mounts, freed {_human(pruned.bytes_freed)}, {_human(pruned.bytes_kept)} kept "
            f"(limit {_human(limit)})"
        )
