"""`kapal exec` (one container, like `docker run --rm`) and `kapal gc` (clean up after crashes)."""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer

from runner.errors import RunnerError
from runner.runtime.backend import ContainerSpec, ExitStatus, ImageDefaults, Limits, LogLine, Mount
from runner.runtime.durations import parse_duration
from runner.runtime.embedded import EmbeddedBackend
from runner.runtime.environment import RuntimeEnvironment, RuntimeSettings
from runner.runtime.gc import collect
from runner.runtime.oneshot import run_container
from runner.runtime.quantities import parse_size

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


def register(app: typer.Typer) -> None:
    """Add `kapal exec` and `kapal gc` to the `kapal` application."""

    @app.command(
        "exec",
        context_settings={"allow_interspersed_args": False},
        no_args_is_help=True,
    )
    def exec_command(
        image: Annotated[str, typer.Argument(help="Image reference, or a root filesystem dir.")],
        command: Annotated[
            list[str] | None, typer.Argument(help="Command and arguments (after --).")
        ] = None,
        memory: Annotated[str | None, typer.Option(help="Memory limit, e.g. 256m.")] = None,
        cpus: Annotated[float | None, typer.Option(help="CPU limit, e.g. 1.5.")] = None,
        pids: Annotated[int | None, typer.Option(help="Maximum number of processes.")] = None,
        timeout: Annotated[str | None, typer.Option(help="Kill after, e.g. 30s, 10m.")] = None,
        network: Annotated[
            str, typer.Option(help="none (loopback only), nat (the outside world) or host.")
        ] = "none",
        env: Annotated[list[str] | None, typer.Option("-e", "--env", help="K=V")] = None,
        workdir: Annotated[str | None, typer.Option("-w", "--workdir")] = None,
        volume: Annotated[
            list[str] | None, typer.Option("-v", "--volume", help="HOST:CONTAINER[:ro]")
        ] = None,
        user: Annotated[str | None, typer.Option("-u", "--user")] = None,
        entrypoint: Annotated[
            str | None, typer.Option(help="Replace the image's entrypoint ('' for none).")
        ] = None,
    ) -> None:
        """Run one container, like `docker run --rm`; exit with the container's exit code."""
        try:
            if network not in ("none", "nat", "host"):
                raise RunnerError(f"--network {network!r}: use none, nat or host")
            if cpus is not None and cpus <= 0:
                raise RunnerError(f"--cpus {cpus}: must be more than zero")
            if pids is not None and pids <= 0:
                raise RunnerError(f"--pids {pids}: must be more than zero")
            if workdir is not None and not workdir.startswith("/"):
                raise RunnerError(f"-w {workdir!r}: the working directory must be absolute")
            limits = Limits(
                memory_bytes=parse_size(memory, what="--memory") if memory else None,
                cpus=cpus,
                pids=pids,
            )
            seconds = parse_duration(timeout) if timeout else None
            mounts = tuple(parse_volume(v) for v in volume or [])
            environment = parse_env(env or [])
            argv = list(command or [])
            if argv[:1] == ["--"]:
                argv = argv[1:]
            settings = RuntimeEnvironment.from_environ()
            backend = EmbeddedBackend(settings)
            layers, rootfs, defaults = image_spec(settings, image)
            spec = ContainerSpec(
                name=image.rsplit("/", 1)[-1].split(":")[0] or "exec",
                layers=layers,
                rootfs=rootfs,
                image=defaults,
                command=tuple(argv) if argv else None,
                entrypoint=None if entrypoint is None else ((entrypoint,) if entrypoint else ()),
                env=environment,
                cwd=workdir,
                user=user,
                mounts=mounts,
                limits=limits,
                timeout=seconds,
            )
            status = _run_interruptible(backend, spec, network)
        except RunnerError as err:
            typer.echo(f"kapal exec: error: {err}", err=True)
            raise typer.Exit(EXIT_KAPAL_ERROR) from None
        except OSError as err:  # the host refused something kapal needs (a file, a directory)
            where = f" ({err.filename})" if err.filename else ""
            typer.echo(f"kapal exec: error: {err.strerror or err}{where}", err=True)
            raise typer.Exit(EXIT_KAPAL_ERROR) from None
        if status.timed_out or status.oom_killed or status.canceled or status.error:
            typer.echo(f"kapal exec: {status.describe()}", err=True)
        if status.canceled:
            raise typer.Exit(EXIT_CANCELED)
        raise typer.Exit(status.exit_code)

    @app.command("gc")
    def gc_command() -> None:
        """Remove containers, mounts, cgroups and namespaces that crashed workers left behind."""
        try:
            report = collect(RuntimeEnvironment.from_environ())
        except (RunnerError, OSError) as err:
            typer.echo(f"kapal gc: error: {err}", err=True)
            raise typer.Exit(1) from None
        for warning in report.warnings:
            typer.echo(f"kapal gc: warning: {warning}", err=True)
        typer.echo(f"kapal gc: {report.summary()}")


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
