"""`kapal services` (list, stop, restart) and `kapal deployments [ENV]`; `kapal rollback` here.

These read and change the local data dir (`KAPAL_DATA_DIR`): the services `kapal run` (or a
worker on this host) deployed, and the deployments `kapal run` recorded.

Both verbs parse their own argv (argparse) and `kapal` runs them without Typer (`ARGV_COMMANDS`):
they read a few small files, and Typer (a pydantic adapter per option), rich (the tables and
`--help`) and pydantic-settings (for the data dir alone) cost several times that. The data dir
is read with `RuntimeEnvironment` (`kapal services`: with `EnvSettings`, the reader `kapal run`
uses, which checks every `KAPAL_*` variable as `RunnerSettings` does); the tables are printed
as rich printed them (each column as wide as its widest cell, two spaces apart); the services
and deployments modules are imported only once the arguments are good.
(`kapal deployments` and `kapal rollback` themselves live in `web.client_cli`, which asks the
server KAPAL_HOST names, or calls `deployments_main` and `rollback_here` here without one.)
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from runner.argv_commands import ArgvMain, register_argv_command
from runner.errors import RunnerError
from runner.terminal_text import aligned, printable

if TYPE_CHECKING:
    import typer

    from runner.ship.deployments import LocalDeployments
    from runner.ship.services import ServiceInfo, Services

SERVICES_HELP = "Services deployed by `deploy: service:` jobs."
SERVICES_EPILOG = "Without a command: list the services and whether they run."
STOP_HELP = "Stop a service (every version and its port)."
RESTART_HELP = "Run a service's current version again (after a reboot, or once it exited)."
DEPLOYMENTS_HELP = "List environments with their current deployment, or one environment's history."


def services_parser() -> argparse.ArgumentParser:
    """The arguments of `kapal services`: no command (list), `stop NAME`, `restart NAME`."""
    parser = argparse.ArgumentParser(
        prog="kapal services",
        usage="kapal services [stop NAME | restart NAME]",
        description=SERVICES_HELP,
        epilog=SERVICES_EPILOG,
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    for name, text in (("stop", STOP_HELP), ("restart", RESTART_HELP)):
        command = commands.add_parser(
            name, prog=f"kapal services {name}", help=text, description=text
        )
        command.add_argument("name", metavar="NAME", help="The service's name.")
    return parser


def deployments_parser() -> argparse.ArgumentParser:
    """The arguments of `kapal deployments`."""
    parser = argparse.ArgumentParser(prog="kapal deployments", description=DEPLOYMENTS_HELP)
    parser.add_argument("environment", metavar="ENV", nargs="?", help="Show this one's history.")
    return parser


def services_main(argv: list[str]) -> int:
    """`kapal services ARGV`: list, stop or restart services; return the exit code."""
    args = services_parser().parse_args(argv)
    try:
        services = _services(rolling_out=args.command == "restart")
        if args.command is None:
            _print_services(services.list())
        elif args.command == "stop":
            if not services.stop(args.name):
                raise RunnerError(f"there is no service {args.name!r} (see `kapal services`)")
            print(f"stopped {args.name}")
        else:
            done = services.restart(args.name, _say)
            print(f"{args.name} runs version {done.version} on {done.address or 'no host port'}")
    except BrokenPipeError:
        raise  # the reader went away: `kapal` ends quietly (web/cli.py)
    except (RunnerError, OSError) as exc:
        return _error(exc)
    return 0


def deployments_main(argv: list[str]) -> int:
    """`kapal deployments [ENV]`: print the environments, or ENV's history; the exit code."""
    args = deployments_parser().parse_args(argv)
    from runner.runtime.environment import RuntimeEnvironment
    from runner.ship.deployments import LocalDeployments, deployments_dir

    log = LocalDeployments(deployments_dir(RuntimeEnvironment.from_environ().data_dir))
    try:
        if args.environment is None:
            _print_environments(log)
        else:
            _print_history(log, args.environment)
    except BrokenPipeError:
        raise  # the reader went away: `kapal` ends quietly (web/cli.py)
    except (RunnerError, OSError) as exc:
        return _error(exc)
    return 0


# verb -> its `main(argv) -> exit code`, run by `kapal` without Typer
ARGV_COMMANDS: dict[str, ArgvMain] = {"services": services_main}


def register(app: typer.Typer) -> None:
    """Add `services` to the `kapal` application (`deployments` and `rollback` are
    web.client_cli's, which call `deployments_main` and `rollback_here` without a server)."""
    register_argv_command(app, "services", services_main, SERVICES_HELP)


def _services(*, rolling_out: bool) -> Services:
    """The services of the data dir; RunnerError when a setting it reads is malformed.

    A rollout (`restart`) reads the rollout settings (`KAPAL_SERVICE_*`) as `kapal run` does, with
    the shipper's module; listing and stopping only read and signal what is there, without them.
    """
    if rolling_out:
        from runner.settings_env import EnvSettings
        from runner.ship.local import services_for

        return services_for(EnvSettings.from_environ())
    from runner.runtime.environment import RuntimeEnvironment
    from runner.ship.services import Services

    data_dir = RuntimeEnvironment.from_environ().data_dir
    return Services(data_dir / "services", data_dir)  # as services_for makes them


def _print_services(found: list[ServiceInfo]) -> None:
    rows = [
        (
            info.name,
            info.state,
            info.address or "-",
            info.image,
            info.digest[:19],
            info.version or "-",
        )
        for info in found
    ]
    _print_table(("name", "state", "address", "image", "digest", "version"), rows)


def _print_environments(log: LocalDeployments) -> None:
    """Each environment with its current deployment (or dashes when none succeeded)."""
    from runner.ship.deployments import current

    rows: list[Sequence[object]] = []
    for name in log.environments():
        now = current(log.history(name))
        if now is None:
            rows.append((name, "-", "-", "-", "-", "-"))
        else:
            rows.append((name, now.id, now.kind, now.digest, now.target, _when(now.created_at)))
    _print_table(("environment", "deployment", "kind", "digest", "target", "when"), rows)


def _print_history(log: LocalDeployments, environment: str) -> None:
    """Every deployment of `environment`, oldest first; RunnerError when there is none."""
    history = log.history(environment)
    if not history:
        raise RunnerError(f"nothing was deployed to {environment!r}")
    rows: list[Sequence[object]] = []
    for item in history:
        note = f"rollback to {item.rollback_of}" if item.rollback_of else item.message
        job = f"#{item.pipeline_id} {item.job}" if item.pipeline_id else item.job
        when = _when(item.created_at)
        rows.append(
            (item.id, item.status, item.digest, item.target, when, item.user, job, note[:80])
        )
    _print_table(("id", "status", "digest", "target", "when", "who", "job", "note"), rows)


def _print_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """A header line and a line per row: every column as wide as its widest cell (padded, the
    last one too), two spaces apart; never wrapped, whatever the terminal's width."""
    lines = ["  ".join(text + pad for text, pad in row) for row in aligned([headers, *rows])]
    print("\n".join(lines), flush=True)


def _when(stamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamp))


def _say(text: str) -> None:
    print(text, flush=True)


def _error(exc: Exception) -> int:
    print(f"error: {exc}", file=sys.stderr, flush=True)
    return 1


def rollback_here(environment: str, to: int | None) -> int:
    """`kapal rollback` without a server: re-deploy an earlier deployment this host recorded.

    (The verb itself lives in `web.client_cli`, which talks to a server when `KAPAL_HOST` is set
    and calls this otherwise.) The exit status: 1 after printing why when it cannot (a
    malformed KAPAL_* setting too: read without pydantic, as `kapal run` reads them).
    """
    import os

    from runner.images.store import ImageStore
    from runner.owners import DEFAULT_OWNER
    from runner.secrets import load_secrets
    from runner.settings_env import EnvSettings
    from runner.ship.deployments import LocalDeployments, current, deployments_dir
    from runner.ship.local import local_shipper
    from runner.ship.state_files import read_json

    try:
        settings = EnvSettings.from_environ()
        log = LocalDeployments(deployments_dir(settings.data_dir))
        owner = DEFAULT_OWNER
        now = current(log.history(environment))
        if now is not None and now.kind == "service":
            config = read_json(settings.data_dir / "services" / now.target / "service.json")
            owner = str((config or {}).get("owner") or DEFAULT_OWNER)
        secrets = {k: s.value for k, s in load_secrets(os.environ).items()}
        shipper = local_shipper(settings, ImageStore(settings.images_dir), owner, None, secrets)
        done = shipper.rollback(environment, _say, to=to)
    except RunnerError as exc:
        return _error(exc)
    print(f"{printable(environment)}: deployment {done.id} rolls back to {done.rollback_of}")
    return 0
