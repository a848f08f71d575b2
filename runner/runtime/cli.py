"""`kapal exec` (one container, like `docker run --rm`) and `kapal gc` (clean up after crashes).

Both parse their arguments with argparse and are run by `kapal` straight from the command line
(`ARGV_COMMANDS`), without Typer: Typer builds a pydantic adapter per option, which alone costs
more than runc takes to run a container. `kapal exec` reads its plain forms itself
(`plain_exec_args`) and imports argparse only for the rest (--help, `--opt=value`, an
abbreviation, a usage error). `register` adds them to the Typer application as
pass-through commands, so `build_app()` (the tests' entry) runs the very same code.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType, SimpleNamespace
from typing import TYPE_CHECKING

from pipeline import records
from runner.argv_commands import ArgvMain, register_argv_command
from runner.errors import RunnerError
from runner.runtime.backend import ContainerSpec, ExitStatus, ImageDefaults, Limits, LogLine, Mount
from runner.runtime.durations import parse_duration
from runner.runtime.environment import RuntimeEnvironment, RuntimeSettings
from runner.runtime.oneshot import run_container
from runner.runtime.quantities import parse_size

if TYPE_CHECKING:
    import argparse
    from collections.abc import Mapping

    import typer

    from runner.runtime.embedded import EmbeddedBackend

# Docker's convention: 125 when the container could not be run at all.
EXIT_KAPAL_ERROR = 125
EXIT_CANCELED = 130


def parse_volume(text: str) -> Mount:
    """Parse `-v HOST:CONTAINER[:ro|rw]`; the host path must exist."""
    parts = text.split(":")
    if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
        raise RunnerError(f"-v {text!r}: write it as HOST:CONTAINER or HOST:CONTAINER:ro")
    host, target = Path(parts[0]), parts[1]
    mode = parts[2] if len(parts) == 3 else "rw"
    if mode not in ("ro", "rw"):
        raise RunnerError(f"-v {text!r}: the mode {mode!r} must be ro or rw")
    if not target.startswith("/"):
        raise RunnerError(f"-v {text!r}: the container path {target!r} must be absolute")
    if not host.exists():
        raise RunnerError(f"-v {text!r}: the host path {host} does not exist")
    return Mount(source=host.resolve(), target=target, read_only=mode == "ro")


def parse_env(entries: list[str]) -> dict[str, str]:
    """Parse `-e K=V` (or `-e K`, taking K from kapal's own environment, as docker does)."""
    env: dict[str, str] = {}
    for entry in entries:
        key, sep, value = entry.partition("=")
        if not key or any(c.isspace() for c in key):
            raise RunnerError(f"-e {entry!r}: write it as NAME=value")
        if not sep:
            if key not in os.environ:
                continue
            value = os.environ[key]
        env[key] = value
    return env


def image_spec(
    settings: RuntimeSettings, image: str
) -> tuple[tuple[Path, ...], Path | None, ImageDefaults]:
    """Layers (or a rootfs dir) and config defaults for IMAGE: a store reference or a directory."""
    if "/" in image and Path(image).is_dir():
        return (), Path(image).resolve(), ImageDefaults()
    from runner.images import ImageStore  # the image store is only needed for references

    store = ImageStore(settings.images_dir)
    resolved = store.resolve(image)
    layers = tuple(store.unpacked_layers(resolved))
    return layers, None, ImageDefaults.from_image_config(resolved.config)


def _write_line(line: LogLine) -> None:
    out = sys.stdout if line.stream == "stdout" else sys.stderr
    out.write(line.text + "\n")
    out.flush()


EXEC_HELP = "Run one container, like `docker run --rm`; exit with the container's exit code."
EXEC_EPILOG = """\
Options go before IMAGE; everything after IMAGE (or after --) is the command.

Disk: a one-shot `kapal exec` writes its container's layer to kapal's data dir with no size cap
(the operator runs it). Jobs, services and build steps get a size-limited disk of their own
(KAPAL_JOB_DISK); pass --disk SIZE to give `kapal exec` one too (about 60 ms more to start).

Network: --network nat reaches the outside world but not the host's loopback, its own addresses
nor link-local ones (the cloud metadata service), except the CIDRs KAPAL_JOB_ALLOWED_NETWORKS
lists (comma-separated, e.g. 192.0.2.10/32), as for jobs."""


def exec_parser() -> argparse.ArgumentParser:
    """The arguments of `kapal exec`: its --help, its usage errors and its unusual forms."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="kapal exec",
        usage="kapal exec [OPTIONS] IMAGE [--] [COMMAND]...",
        description=EXEC_HELP,
        epilog=EXEC_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("image", metavar="IMAGE", help="Image reference, or a root filesystem dir.")
    parser.add_argument(
        "command", metavar="COMMAND", nargs=argparse.REMAINDER, help="Command and arguments."
    )
    parser.add_argument("--memory", help="Memory limit, e.g. 256m.")
    parser.add_argument("--cpus", type=float, help="CPU limit, e.g. 1.5.")
    parser.add_argument("--pids", type=int, help="Maximum number of processes.")
    parser.add_argument("--timeout", help="Kill after, e.g. 30s, 10m.")
    parser.add_argument(
        "--network", default="none", help="none (loopback only, the default), nat or host."
    )
    parser.add_argument(
        "--disk", help="Cap the container's writes with a disk of this size, e.g. 1g."
    )
    parser.add_argument("-e", "--env", action="append", default=[], help="K=V (or K).")
    parser.add_argument("-w", "--workdir", help="Working directory in the container.")
    parser.add_argument("-v", "--volume", action="append", default=[], help="HOST:CONTAINER[:ro]")
    parser.add_argument("-u", "--user", help="User (name or uid[:gid]) to run as.")
    parser.add_argument("--entrypoint", help="Replace the image's entrypoint ('' for none).")
    return parser


# `kapal exec`'s options that take a value: option -> (attribute, how to read the value)
_EXEC_VALUES: dict[str, tuple[str, type[str] | type[int] | type[float]]] = {
    "--memory": ("memory", str),
    "--cpus": ("cpus", float),
    "--pids": ("pids", int),
    "--timeout": ("timeout", str),
    "--network": ("network", str),
    "--disk": ("disk", str),
    "-w": ("workdir", str),
    "--workdir": ("workdir", str),
    "-u": ("user", str),
    "--user": ("user", str),
    "--entrypoint": ("entrypoint", str),
}
# the options that may be given more than once, each adding to a list
_EXEC_LISTS = {"-e": "env", "--env": "env", "-v": "volume", "--volume": "volume"}


def plain_exec_args(argv: list[str]) -> SimpleNamespace | None:
    """ARGV when written plainly (`--opt VALUE`... IMAGE COMMAND...), read as argparse would.

    None for anything else (--help, `--opt=value`, an abbreviation, a value or IMAGE starting
    with `-`, a value argparse's type refuses, no IMAGE): `exec_parser()` reads those.
    argparse, with the gettext it loads, costs a few milliseconds of a command that should take
    little more than runc's own time; tests/runner/runtime/test_exec_args.py checks that both read
    every argv alike.
    """
    args = SimpleNamespace(
        image=None,
        command=[],
        memory=None,
        cpus=None,
        pids=None,
        timeout=None,
        network="none",
        disk=None,
        env=[],
        workdir=None,
        volume=[],
        user=None,
        entrypoint=None,
    )
    at = 0
    while at < len(argv):
        option = argv[at]
        if not option.startswith("-"):
            args.image, args.command = option, argv[at + 1 :]
            if args.command[:1] == ["--"]:  # argparse drops the `--` that ends the options
                args.command = args.command[1:]
            return args
        if at + 1 == len(argv) or argv[at + 1].startswith("-"):
            return None
        value = argv[at + 1]
        if option in _EXEC_LISTS:
            getattr(args, _EXEC_LISTS[option]).append(value)
        elif option in _EXEC_VALUES:
            name, read = _EXEC_VALUES[option]
            try:
                setattr(args, name, read(value))
            except ValueError:
                return None
        else:
            return None
        at += 2
    return None


def exec_main(argv: list[str]) -> int:
    """`kapal exec ARGV`: run the container; return its exit code (125: kapal failed)."""
    args: argparse.Namespace | SimpleNamespace | None = plain_exec_args(argv)
    if args is None:
        parser = exec_parser()
        if not argv:
            parser.print_help()
            return 2
        args = parser.parse_args(argv)
    try:
        settings = RuntimeEnvironment.from_environ()
        network, spec, disk_bytes = _exec_request(args)
        allowed = _allowed_networks(os.environ) if network == "nat" else ()
        backend = _exec_backend(settings, disk_bytes, allowed)  # first: it checks the data dir
        try:
            layers, rootfs, defaults = image_spec(settings, args.image)
            spec = records.replace(spec, layers=layers, rootfs=rootfs, image=defaults)
            status = _run_interruptible(backend, spec, network)
        finally:
            backend.drain()  # the container's dirs deleted: `kapal` may end at once (QUICK_EXIT)
    except RunnerError as err:
        print(f"kapal exec: error: {err}", file=sys.stderr)
        return EXIT_KAPAL_ERROR
    except OSError as err:  # the host refused something kapal needs (a file, a directory)
        where = f" ({err.filename})" if err.filename else ""
        print(f"kapal exec: error: {err.strerror or err}{where}", file=sys.stderr)
        return EXIT_KAPAL_ERROR
    if status.timed_out or status.oom_killed or status.canceled or status.error:
        print(f"kapal exec: {status.describe()}", file=sys.stderr)
    if status.canceled:
        return EXIT_CANCELED
    return status.exit_code


def _exec_request(
    args: argparse.Namespace | SimpleNamespace,
) -> tuple[str, ContainerSpec, int | None]:
    """The network, container spec (image not yet read) and disk cap `kapal exec` asked for.

    RunnerError when an option is malformed.
    """
    if args.network not in ("none", "nat", "host"):
        raise RunnerError(f"--network {args.network!r}: use none, nat or host")
    if args.cpus is not None and args.cpus <= 0:
        raise RunnerError(f"--cpus {args.cpus}: must be more than zero")
    if args.pids is not None and args.pids <= 0:
        raise RunnerError(f"--pids {args.pids}: must be more than zero")
    if args.workdir is not None and not args.workdir.startswith("/"):
        raise RunnerError(f"-w {args.workdir!r}: the working directory must be absolute")
    limits = Limits(
        memory_bytes=parse_size(args.memory, what="--memory") if args.memory else None,
        cpus=args.cpus,
        pids=args.pids,
    )
    disk_bytes = parse_size(args.disk, what="--disk") if args.disk else None
    seconds = parse_duration(args.timeout) if args.timeout else None
    mounts = tuple(parse_volume(v) for v in args.volume)
    environment = parse_env(args.env)
    argv = list(args.command)
    if argv[:1] == ["--"]:
        argv = argv[1:]
    entrypoint = args.entrypoint
    spec = ContainerSpec(
        name=args.image.rsplit("/", 1)[-1].split(":")[0] or "exec",
        command=tuple(argv) if argv else None,
        entrypoint=None if entrypoint is None else ((entrypoint,) if entrypoint else ()),
        env=environment,
        cwd=args.workdir,
        user=args.user,
        mounts=mounts,
        limits=limits,
        timeout=seconds,
    )
    return args.network, spec, disk_bytes


def _allowed_networks(environ: Mapping[str, str]) -> tuple[str, ...]:
    """`KAPAL_JOB_ALLOWED_NETWORKS` (any case, as the settings read it); RunnerError if bad.

    The one setting of `RunnerSettings` that `kapal exec` reads (for `--network nat` only):
    the settings class costs more to import than runc takes to run the container.
    """
    from runner.runtime.policy import allowed_networks

    wanted = "kapal_job_allowed_networks"
    return allowed_networks(next((v for k, v in environ.items() if k.lower() == wanted), ""))


def _exec_backend(
    settings: RuntimeSettings, disk_bytes: int | None, allowed: tuple[str, ...]
) -> EmbeddedBackend:
    """The embedded backend: the default policy, a disk cap if asked, `nat`'s allowed networks."""
    from runner.runtime.embedded import EmbeddedBackend
    from runner.runtime.policy import ContainerPolicy

    policy = ContainerPolicy(disk_bytes=disk_bytes, allowed_networks=allowed)
    return EmbeddedBackend(settings, policy)


GC_HELP = "Remove containers, mounts, cgroups and namespaces that crashed workers left behind."


def gc_main(argv: list[str]) -> int:
    """`kapal gc ARGV`: collect what crashed workers left; return the exit code."""
    import argparse

    argparse.ArgumentParser(prog="kapal gc", description=GC_HELP).parse_args(argv)
    from runner.runtime.gc import collect

    try:
        report = collect(RuntimeEnvironment.from_environ())
    except (RunnerError, OSError) as err:
        print(f"kapal gc: error: {err}", file=sys.stderr)
        return 1
    for warning in report.warnings:
        print(f"kapal gc: warning: {warning}", file=sys.stderr)
    print(f"kapal gc: {report.summary()}")
    return 0


# verb -> its `main(argv) -> exit code`, run by `kapal` without Typer
ARGV_COMMANDS: dict[str, ArgvMain] = {"exec": exec_main, "gc": gc_main}
# verbs whose main leaves nothing behind when it returns (see runner.argv_commands)
QUICK_EXIT = frozenset({"exec"})


def register(app: typer.Typer) -> None:
    """Add `kapal exec` and `kapal gc` to the `kapal` application (as argv pass-throughs)."""
    register_argv_command(app, "exec", exec_main, EXEC_HELP)
    register_argv_command(app, "gc", gc_main, GC_HELP)


def _run_interruptible(backend: EmbeddedBackend, spec: ContainerSpec, network: str) -> ExitStatus:
    cancel = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        cancel.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        return run_container(
            backend,
            spec,
            on_line=_write_line,
            network="host" if network == "host" else "nat" if network == "nat" else "none",
            cancel=cancel,
        )
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
