"""`kapal image ...`: list, pull, push, import, export, bootstrap, remove, inspect, tag, gc.

The verb parses its own argv (argparse, one sub-parser per sub-command) and `kapal` runs it
without Typer (`ARGV_COMMANDS`, see web/cli.py): Typer builds a pydantic adapter per option and
draws its help with rich, which together cost several times what `kapal image ls` or
`kapal image tag` take to do their work. For the same reason each sub-command imports only what
it uses: the local ones (ls, rm, inspect, tag, import, export, bootstrap) read nothing but the
data dir (`RuntimeEnvironment`, without pydantic) and load the image store; `gc`, `pull` and
`push` read `RunnerSettings`' variables without pydantic (`runner.settings_env.EnvSettings`, held
equal to it by a test), and only `pull` and `push` load the registry client (httpx) and the
progress display. `--help` and usage errors load none of them.

Exit codes: 0 done, 1 kapal could not do it (one `error: ...` line on stderr), 2 a usage error.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from runner.argv_commands import ArgvMain, register_argv_command
from runner.errors import RunnerError
from runner.runtime.environment import RuntimeEnvironment
from runner.terminal_text import aligned

if TYPE_CHECKING:
    import typer

    from runner.images.progress import TransferProgress
    from runner.images.reference import Reference
    from runner.images.registry import RegistryClient
    from runner.images.store import ImageStore
    from runner.settings_env import EnvSettings

IMAGE_HELP = "Manage the local OCI image store."


def _local_store() -> ImageStore:
    """The store under `KAPAL_DATA_DIR`, for the sub-commands that need no other setting."""
    from runner.images.store import ImageStore

    return ImageStore(RuntimeEnvironment.from_environ().images_dir)


def _settings() -> EnvSettings:
    """Every `KAPAL_*` setting (RunnerError if one is malformed), for gc, pull and push."""
    from runner.settings_env import EnvSettings

    return EnvSettings.from_environ()


def _client(
    settings: EnvSettings, insecure: bool, ref: Reference, progress: TransferProgress
) -> RegistryClient:
    from runner.images.registry import RegistryClient  # httpx: only pull and push need it

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


def _table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]], *, bold: bool) -> str:
    """Columns padded to their widest cell, two spaces apart (the layout rich drew before)."""
    lines = []
    for number, row in enumerate(aligned([header, *rows])):
        bolden = bold and number == 0
        lines.append("  ".join((f"\033[1m{t}\033[0m" if bolden else t) + pad for t, pad in row))
    return "\n".join(lines)


def _ls(args: argparse.Namespace) -> None:
    entries = _local_store().list_images()
    if args.quiet:
        for entry in entries:
            print(entry.reference.familiar)
        return
    rows = [
        (
            entry.reference.familiar,
            entry.image.digest[:19],
            entry.image.id,
            _human(entry.image.size),
            entry.image.created or "-",
        )
        for entry in entries
    ]
    header = ("IMAGE", "DIGEST", "ID", "SIZE", "CREATED")
    print(_table(header, rows, bold=sys.stdout.isatty()))


def _pull(args: argparse.Namespace) -> None:
    from runner.images.progress import TransferProgress
    from runner.images.reference import Reference
    from runner.images.store import ImageStore

    settings = _settings()
    ref = Reference.parse(args.name)
    progress = TransferProgress("pulled")
    with progress, _client(settings, args.insecure, ref, progress) as client:
        image = client.pull(ref, ImageStore(settings.images_dir))
    print(f"{ref.familiar} {image.digest}")


def _push(args: argparse.Namespace) -> None:
    from runner.images.progress import TransferProgress
    from runner.images.reference import Reference
    from runner.images.store import ImageStore

    settings = _settings()
    store = ImageStore(settings.images_dir)
    image = store.resolve(args.name)
    ref = Reference.parse(args.destination or args.name)
    progress = TransferProgress("pushed")
    with progress, _client(settings, args.insecure, ref, progress) as client:
        digest = client.push(store, image, ref)
    print(f"{ref.familiar} {digest}")


def _import(args: argparse.Namespace) -> None:
    from runner.images.archives import import_archive

    for image in import_archive(_local_store(), Path(args.file), args.tag):
        name = image.reference.familiar if image.reference else "(untagged)"
        print(f"{name} {image.digest}")


def _export(args: argparse.Namespace) -> None:
    from runner.images.archives import export_images

    output = Path(args.output)
    export_images(_local_store(), args.names, output, args.format, as_directory=args.dir)
    print(output)


def _bootstrap(args: argparse.Namespace) -> None:
    from runner.images.bootstrap import bootstrap_busybox, bootstrap_debian
    from runner.images.reference import Reference

    store = _local_store()
    name, tag = args.name, args.tag
    if Reference.parse(name).repository == "library/busybox":
        image = bootstrap_busybox(store, tag or name)
    else:
        packages = [p for p in args.include.split(",") if p.strip()]
        image = bootstrap_debian(store, name, include=packages, tag=tag, mirror=args.mirror)
    print(f"{Reference.parse(tag or name).familiar} {image.digest}")


def _rm(args: argparse.Namespace) -> None:
    store = _local_store()
    for name in args.names:
        for ref in store.remove(name):
            print(f"untagged {ref.familiar}")


def _inspect(args: argparse.Namespace) -> None:
    import json

    print(json.dumps(_local_store().inspect(args.name), indent=2))


def _tag(args: argparse.Namespace) -> None:
    store = _local_store()
    print(store.tag(store.resolve(args.source), args.target).familiar)


def _gc(args: argparse.Namespace) -> None:
    from runner.build.cache_prune import prune_build_cache
    from runner.images.store import ImageStore
    from runner.runtime.quantities import parse_size

    settings = _settings()
    report = ImageStore(settings.images_dir).gc()
    print(
        f"removed {report.blobs} blobs and {report.layers} unpacked layers, "
        f"freed {_human(report.bytes_freed)}"
    )
    limit = parse_size(settings.build_cache_max, what="KAPAL_BUILD_CACHE_MAX")
    pruned = prune_build_cache(settings.build_cache_dir, limit)
    print(
        f"build cache: removed {pruned.entries} step layers and {pruned.mounts} cache "
        f"mounts, freed {_human(pruned.bytes_freed)}, {_human(pruned.bytes_kept)} kept "
        f"(limit {_human(limit)})"
    )


_INSECURE_HELP = "Allow plain HTTP to this registry (not only localhost)."

# sub-command -> (its help, the code that does it), in the order `kapal image --help` lists them
SUBCOMMANDS: dict[str, tuple[str, Callable[[argparse.Namespace], None]]] = {
    "ls": ("List tagged images.", _ls),
    "pull": ("Pull an image (linux/amd64) from its registry into the store.", _pull),
    "push": ("Push a local image to its registry (or to DESTINATION).", _push),
    "import": ("Import a `docker save` archive or an OCI layout (directory or tar).", _import),
    "export": ("Export images as a docker-save archive or an OCI image layout.", _export),
    "bootstrap": (
        "Make a base image offline: Debian with mmdebstrap, or busybox from busybox-static.",
        _bootstrap,
    ),
    "rm": ("Remove images (a digest reference removes every tag of that image).", _rm),
    "inspect": ("Print an image's digests, config and layers as JSON.", _inspect),
    "tag": ("Give the image SOURCE the additional name TARGET.", _tag),
    "gc": (
        "Delete blobs and unpacked layers that no tag uses; prune the build cache to its limit.",
        _gc,
    ),
}


def _add_arguments(name: str, sub: argparse.ArgumentParser) -> None:
    """The options and arguments of `kapal image NAME`."""
    if name == "ls":
        sub.add_argument("-q", "--quiet", action="store_true", help="Print references only.")
    elif name == "pull":
        sub.add_argument("name", metavar="NAME", help="The image to pull, e.g. debian:bookworm.")
        sub.add_argument("--insecure", action="store_true", help=_INSECURE_HELP)
    elif name == "push":
        sub.add_argument("name", metavar="NAME", help="The local image to push.")
        sub.add_argument(
            "destination",
            metavar="DESTINATION",
            nargs="?",
            help="Where to push (default: NAME itself).",
        )
        sub.add_argument("--insecure", action="store_true", help=_INSECURE_HELP)
    elif name == "import":
        sub.add_argument("file", metavar="FILE", help="The archive, or an OCI layout directory.")
        sub.add_argument("-t", "--tag", help="Name for an image the archive leaves unnamed.")
    elif name == "export":
        sub.add_argument("names", metavar="NAMES", nargs="+", help="Images to export.")
        sub.add_argument("-o", "--output", required=True, help="File (or directory) to write.")
        sub.add_argument(
            "--format", default="docker", help="docker (docker save/load) or oci (image layout)."
        )
        sub.add_argument(
            "--dir", action="store_true", help="With --format oci: write a layout directory."
        )
    elif name == "bootstrap":
        sub.add_argument(
            "name", metavar="NAME", help="busybox, debian:bookworm, debian:bookworm-slim..."
        )
        sub.add_argument("--include", default="", help="Extra Debian packages, comma-separated.")
        sub.add_argument("-t", "--tag", help="Tag (default: NAME).")
        sub.add_argument("--mirror", help="Debian mirror URL.")
    elif name == "rm":
        sub.add_argument("names", metavar="NAMES", nargs="+", help="Images to remove.")
    elif name == "inspect":
        sub.add_argument("name", metavar="NAME", help="The image to show.")
    elif name == "tag":
        sub.add_argument("source", metavar="SOURCE", help="A local image.")
        sub.add_argument("target", metavar="TARGET", help="Its additional name.")


def image_parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The arguments of `kapal image`, and each sub-command's own parser by name."""
    parser = argparse.ArgumentParser(prog="kapal image", description=IMAGE_HELP)
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", dest="command")
    subs = {}
    for name, (text, _run) in SUBCOMMANDS.items():
        sub = commands.add_parser(name, prog=f"kapal image {name}", help=text, description=text)
        _add_arguments(name, sub)
        subs[name] = sub
    return parser, subs


def image_main(argv: list[str]) -> int:
    """`kapal image ARGV`: run one sub-command; return the exit code."""
    parser, subs = image_parser()
    if not argv:
        parser.print_help()
        return 2  # as before: no sub-command is a usage error that shows the help
    sub = subs.get(argv[0])
    if sub is None:
        parser.parse_args(argv)  # --help (exit 0), or the usage error of an unknown command
        parser.error("a COMMAND is needed")
    # options may come between the names (`export a -o x.tar b`), as they could before
    args = sub.parse_intermixed_args(argv[1:])
    try:
        SUBCOMMANDS[argv[0]][1](args)
    except RunnerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        raise  # the reader went away: `kapal` ends quietly (web/cli.py)
    except OSError as exc:  # a file the user named: missing, unreadable, a directory...
        where = f": {exc.filename}" if exc.filename else ""
        print(f"error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nAborted!", file=sys.stderr)  # what `kapal image` printed under click
        return 1
    return 0


# verb -> its `main(argv) -> exit code`, run by `kapal` without Typer
ARGV_COMMANDS: dict[str, ArgvMain] = {"image": image_main}


def register(app: typer.Typer) -> None:
    """Add `kapal image ...` to the `kapal` application (as an argv pass-through)."""
    register_argv_command(app, "image", image_main, IMAGE_HELP)
