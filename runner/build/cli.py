"""`kapal build`: build an image from a Dockerfile into kapal's image store.

The command parses its own argv (argparse) and `kapal` runs it without Typer (`ARGV_COMMANDS`);
a warm rebuild takes a few milliseconds in-process, so start-up is most of what a person waits
for. Before importing the builder, the command asks the build memo (runner.build.memo) whether
the same build ran before with nothing changed; if so it prints that build's steps and image
without loading the builder, the image store or dataclasses (tests/test_startup.py keeps it so).
For the same reason the settings are read without pydantic until a RUN step misses the cache or
`--push` needs the registry settings (`RunnerSettings`, kapal's one settings class).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.argv_commands import ArgvMain, register_argv_command
from runner.build import memo
from runner.errors import BuildError, BuildStepError, RunnerError
from runner.images.platforms import SUPPORTED_PLATFORMS
from runner.runtime.environment import RuntimeEnvironment

if TYPE_CHECKING:
    import typer

    from runner.build.builder import BuildOptions, BuildResult
    from runner.images.image import Image
    from runner.runtime.backend import Backend, LogLine

BUILD_HELP = "Build an image from a Dockerfile (no Docker daemon needed)."


class TerminalReporter:
    """Prints build progress: `[2/7] RUN …`, CACHED, durations, RUN output indented.

    It keeps each step's line (`steps`), which a build memo replays."""

    def __init__(self) -> None:
        self._cached = False
        self.steps: list[tuple[int, int, str]] = []

    def step(self, number: int, total: int, stage: str, text: str) -> None:
        """Print the step line."""
        self._cached = False
        self.steps.append((number, total, text))
        print(f"[{number}/{total}] {text}", flush=True)

    def cached(self) -> None:
        """Mark the current step as a cache hit."""
        self._cached = True

    def line(self, line: LogLine) -> None:
        """Print one line of RUN output."""
        out = sys.stderr if line.stream == "stderr" else sys.stdout
        print(f"  | {line.text}", file=out, flush=True)

    def done(self, seconds: float) -> None:
        """Print how the step ended."""
        print(f"  {'CACHED ' if self._cached else ''}{seconds:.2f}s", flush=True)

    def note(self, text: str) -> None:
        """Print a note."""
        print(f"note: {text}", file=sys.stderr, flush=True)


class UsageError(Exception):
    """A command-line argument `kapal build` cannot use (exit 2, like argparse's own errors)."""


def _build_args(values: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for value in values:
        name, eq, rest = value.partition("=")
        if not name:
            raise UsageError(f"--build-arg '{value}': write NAME=VALUE")
        if eq:
            out[name] = rest
        elif name in os.environ:
            out[name] = os.environ[name]  # `--build-arg NAME` takes the value from the environment
    return out


_SECRET_LIMIT = 1 << 20  # BuildKit's limit on one secret (500 KiB) is of the same order


def _secrets(values: list[str]) -> dict[str, bytes]:
    """`--secret id=NAME[,src=FILE|,env=VAR]` as Docker takes them (no src or env: $NAME)."""
    out: dict[str, bytes] = {}
    for value in values:
        fields: dict[str, str] = {}
        for item in value.split(","):
            key, eq, rest = item.partition("=")
            key = key.strip().lower()
            if not eq or key not in ("id", "src", "source", "env", "type"):
                raise UsageError(f"--secret '{value}': write id=NAME,src=FILE or id=NAME,env=VAR")
            fields["src" if key == "source" else key] = rest
        name = fields.get("id", "")
        if not name:
            raise UsageError(f"--secret '{value}': id=NAME is missing")
        if fields.get("type", "file" if "src" in fields else "env") not in ("file", "env"):
            raise UsageError(f"--secret '{value}': type is file or env")
        if "src" in fields:
            out[name] = _read_secret(Path(fields["src"]).expanduser(), value)
        else:
            var = fields.get("env", name)
            if var not in os.environ:
                raise UsageError(f"--secret '{value}': the variable {var} is not set")
            out[name] = os.environ[var].encode()
    return out


def _read_secret(path: Path, flag: str) -> bytes:
    try:
        with path.open("rb") as f:
            data = f.read(_SECRET_LIMIT + 1)
    except OSError as exc:
        raise UsageError(f"--secret '{flag}': cannot read {path}: {exc.strerror}") from None
    if len(data) > _SECRET_LIMIT:
        raise UsageError(f"--secret '{flag}': {path} is larger than 1 MiB")
    return data


def _epoch() -> int:
    raw = os.environ.get("SOURCE_DATE_EPOCH", "0")
    if not raw.isdigit():
        raise UsageError(f"SOURCE_DATE_EPOCH={raw!r} must be a whole number of seconds")
    return int(raw)


def build_parser() -> argparse.ArgumentParser:
    """The arguments of `kapal build`."""
    parser = argparse.ArgumentParser(
        prog="kapal build", usage="kapal build [OPTIONS] CONTEXT", description=BUILD_HELP
    )
    parser.add_argument("context", metavar="CONTEXT", nargs="?", help="The build context dir.")
    parser.add_argument(
        "-t", "--tag", action="append", default=[], help="name:tag to give the image."
    )
    parser.add_argument("-f", "--file", help="Dockerfile (default CONTEXT/Dockerfile).")
    parser.add_argument("--build-arg", action="append", default=[], help="NAME=VALUE for an ARG.")
    parser.add_argument("--target", help="Build up to this stage.")
    parser.add_argument(
        "--secret",
        action="append",
        default=[],
        help="id=NAME,src=FILE (or env=VAR) for RUN --mount=type=secret; never in the image.",
    )
    parser.add_argument("--no-cache", action="store_true", help="Ignore the cache.")
    parser.add_argument(
        "--compression",
        default="gzip",
        help="Compression of the layers the build makes: gzip (the default) or zstd.",
    )
    parser.add_argument(
        "--prune",
        action="store_true",
        help="After the build, prune the build cache to KAPAL_BUILD_CACHE_MAX (LRU first).",
    )
    parser.add_argument("--push", action="store_true", help="Push the tags after building.")
    parser.add_argument(
        "--network",
        default="default",
        help="Network for RUN steps and ADD <url>: default (the outside world, not the host), "
        "none or host.",
    )
    parser.add_argument(
        "--insecure", action="store_true", help="Push over plain HTTP / unverified TLS."
    )
    parser.add_argument(
        "--platform", default="linux/amd64", help="Target platform; kapal builds linux/amd64 only."
    )
    return parser


def _request(args: argparse.Namespace) -> dict[str, Any]:
    """The build the command line asks for, checked; UsageError when it cannot be used."""
    if args.context is None:
        raise UsageError("Missing argument 'CONTEXT': the build context directory")
    if args.platform not in SUPPORTED_PLATFORMS:
        raise UsageError(
            f"--platform '{args.platform}': kapal builds linux/amd64 images only; drop "
            "--platform or use linux/amd64 (build other platforms with docker buildx)"
        )
    if args.compression not in ("gzip", "zstd"):
        raise UsageError(f"--compression '{args.compression}': use gzip or zstd")
    if args.network not in ("default", "host", "none"):
        raise UsageError(f"--network '{args.network}': use default, host or none")
    tags = list(args.tag)
    if args.push and not tags:
        raise UsageError("--push needs at least one -t NAME:TAG")
    context = Path(args.context)
    secrets = _secrets(args.secret)
    return {
        "context": context,
        "dockerfile": Path(args.file) if args.file else context / "Dockerfile",
        "tags": tags,
        "secrets": secrets,
        # everything else that decides the image, as a build memo compares it (of the secrets,
        # which were given: a step may require one; their values are in no cache key)
        "settings": {
            "secret_ids": sorted(secrets),
            "build_args": _build_args(args.build_arg),
            "target": args.target,
            "network": {"default": "nat"}.get(args.network, args.network),
            "epoch": _epoch(),
            "compression": args.compression,
        },
    }


def _build_options(request: dict[str, Any], no_cache: bool) -> BuildOptions:
    """The builder's `BuildOptions` for a checked request."""
    from runner.build.builder import BuildOptions

    settings = request["settings"]
    return BuildOptions(
        context=request["context"],
        dockerfile=request["dockerfile"],
        tags=tuple(request["tags"]),
        build_args=settings["build_args"],
        target=settings["target"],
        no_cache=no_cache,
        network=settings["network"],
        epoch=settings["epoch"],
        secrets=request["secrets"],
        compression=settings["compression"],
    )


def build_main(argv: list[str]) -> int:
    """`kapal build ARGV`: build, print the steps and the digest; return the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        request = _request(args)
    except UsageError as exc:
        parser.print_usage(sys.stderr)
        print(f"kapal build: error: {exc}", file=sys.stderr)
        return 2
    started = time.monotonic()
    data_dir = RuntimeEnvironment.from_environ().data_dir
    try:
        # `--secret` values take no part (a RUN step's cache key has none of them either)
        snap = memo.snapshot(
            cache_root=data_dir / "build-cache",
            images_root=data_dir / "images",
            context=request["context"],
            dockerfile=request["dockerfile"],
            settings=request["settings"],
        )
        # --push and --prune have work to do after the build: the builder runs (all cached)
        if snap is not None and not (args.no_cache or args.push or args.prune):
            replay = memo.lookup(
                snap,
                cache_root=data_dir / "build-cache",
                images_root=data_dir / "images",
                tags=request["tags"],
            )
            if replay is not None:
                _print_replay(replay, request["tags"], time.monotonic() - started)
                return 0
        result, steps = _build(data_dir, _build_options(request, args.no_cache))
        if snap is not None:
            _remember(snap, result, steps)
        if args.push:
            _push(result.image, result.tags, args.insecure)
        if args.prune:
            _prune(data_dir / "build-cache")
    except BuildStepError as exc:
        print(f"error: build failed at {exc}", file=sys.stderr)
        return 1
    except (BuildError, RunnerError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("build interrupted", file=sys.stderr)
        return 130
    _print_result(
        result.image.digest,
        result.tags,
        time.monotonic() - started,
        run=result.run_steps,
        cached=result.cached_steps,
    )
    return 0


def _build(data_dir: Path, options: BuildOptions) -> tuple[BuildResult, list[tuple[int, int, str]]]:
    """Run the builder (imported only now: a memo hit never loads it); the result and the
    step lines it printed."""
    from runner.build.builder import Builder
    from runner.build.cache import LayerCache
    from runner.images.reference import Reference
    from runner.images.store import ImageStore

    for ref in options.tags:
        Reference.parse(ref)
    reporter = TerminalReporter()
    builder = Builder(
        store=ImageStore(data_dir / "images"),
        cache=LayerCache(data_dir / "build-cache"),
        backend=_embedded_backend,
        reporter=reporter,
    )
    return builder.build(options), reporter.steps


def _remember(snap: memo.Snapshot, result: BuildResult, steps: list[tuple[int, int, str]]) -> None:
    """Record the memo of a finished build, or drop the old one when it cannot answer."""
    from runner.images.reference import Reference

    tag_keys = {name: str(Reference.parse(name)) for name in result.tags}
    if result.remote_sources or any("@" in key for key in tag_keys.values()):
        memo.forget(snap)
        return
    memo.record(
        snap,
        {
            "image": result.image.digest,
            "config": result.image.config_digest,
            "bases": list(result.bases),
            "tag_keys": tag_keys,
            "cache": [list(entry) for entry in result.cache_entries],
            "steps": [list(step) for step in steps],
            "layer_steps": list(result.layer_steps),
            "notes": list(result.notes),
        },
    )


def _print_replay(replay: dict[str, Any], tags: list[str], elapsed: float) -> None:
    """What the same build prints when every layer step is a cache hit, from its memo."""
    layers = set(replay["layer_steps"])
    for number, total, text in replay["steps"]:
        print(f"[{number}/{total}] {text}")
        print(f"  {'CACHED ' if number in layers else ''}0.00s")
    sys.stdout.flush()
    for note in replay["notes"]:
        print(f"note: {note}", file=sys.stderr, flush=True)
    _print_result(replay["image"], tags, elapsed, run=0, cached=len(replay["layer_steps"]))


def _print_result(digest: str, tags: Any, elapsed: float, *, run: int, cached: int) -> None:
    print(f"built {digest} in {elapsed:.2f}s ({run} layer steps run, {cached} cached)")
    for name in tags:
        print(f"tagged {name}")
    sys.stdout.flush()


# verb -> its `main(argv) -> exit code`, run by `kapal` without Typer
ARGV_COMMANDS: dict[str, ArgvMain] = {"build": build_main}


def register(app: typer.Typer) -> None:
    """Add `kapal build` to the `kapal` application (as an argv pass-through)."""
    register_argv_command(app, "build", build_main, BUILD_HELP)


def _embedded_backend() -> Backend:
    """The runc backend under the operator's policy, made only when a RUN step misses the cache."""
    from runner.runtime.embedded import EmbeddedBackend
    from runner.settings import RunnerSettings

    settings = RunnerSettings()
    return EmbeddedBackend(settings, settings.container_policy())


def _prune(cache: Path) -> None:
    """`--prune`: the build cache pruned to its limit setting, least recently used first."""
    from runner.build.cache_prune import prune_build_cache
    from runner.runtime.quantities import parse_size
    from runner.settings import RunnerSettings

    limit = parse_size(RunnerSettings().build_cache_max, what="KAPAL_BUILD_CACHE_MAX")
    report = prune_build_cache(cache, limit)
    print(
        f"build cache pruned: {report.entries} step layers and {report.mounts} cache mounts "
        f"removed, {report.bytes_freed} bytes freed, {report.bytes_kept} bytes kept "
        f"(limit {limit})"
    )


def _push(image: Image, tags: tuple[str, ...], insecure: bool) -> None:
    """Push the built image to each tag's registry with the images package's client."""
    from runner.images.reference import Reference
    from runner.images.registry import RegistryClient  # only `--push` needs the HTTP client
    from runner.images.store import ImageStore
    from runner.settings import RunnerSettings

    settings = RunnerSettings()
    store = ImageStore(settings.images_dir)
    for name in tags:
        ref = Reference.parse(name)
        allowed = [*settings.insecure_registries, *([ref.registry] if insecure else [])]
        with RegistryClient(insecure=allowed, auth_file=settings.registry_auth_file) as client:
            digest = client.push(store, image, ref)
        print(f"pushed {ref.familiar} {digest}")
