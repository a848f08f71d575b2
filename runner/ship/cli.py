"""`kapal services` (list, stop), `kapal deployments [ENV]`, and `kapal rollback ENV [--to N]` here.

These read and change the local data dir (`KAPAL_DATA_DIR`): the services `kapal run` (or a
worker on this host) deployed, and the deployments `kapal run` recorded.
"""

from __future__ import annotations

import os
import time
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from runner.errors import RunnerError
from runner.images.store import ImageStore
from runner.owners import DEFAULT_OWNER
from runner.secrets import load_secrets
from runner.settings import RunnerSettings
from runner.ship.deployments import LocalDeployments, current
from runner.ship.keeper import read_json
from runner.ship.settings import deployments_dir, local_shipper, services_for


def _fail(exc: Exception) -> typer.Exit:
    typer.echo(f"error: {exc}", err=True)
    return typer.Exit(1)


def _when(stamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamp))


def register(app: typer.Typer) -> None:
    """Add `services` and `deployments` to the `kapal` application (`rollback`: web.client_cli)."""
    services_app = typer.Typer(help="Services deployed by `deploy: service:` jobs.")
    app.add_typer(services_app, name="services")

    @services_app.callback(invoke_without_command=True)
    def list_services(ctx: typer.Context) -> None:
        """List the services and whether they run."""
        if ctx.invoked_subcommand is not None:
            return
        table = Table(box=None, pad_edge=False)
        for column in ("name", "state", "address", "image", "digest", "version"):
            table.add_column(column)
        for info in services_for(RunnerSettings()).list():
            table.add_row(
                info.name,
                info.state,
                info.address or "-",
                info.image,
                info.digest[:19],
                info.version or "-",
            )
        Console(width=200).print(table)

    @services_app.command("stop")
    def stop(name: str) -> None:
        """Stop a service (every version and its port)."""
        try:
            found = services_for(RunnerSettings()).stop(name)
        except RunnerError as exc:
            raise _fail(exc) from None
        if not found:
            raise _fail(RunnerError(f"there is no service {name!r} (see `kapal services`)"))
        typer.echo(f"stopped {name}")

    @services_app.command("restart")
    def restart(name: str) -> None:
        """Run a service's current version again (after a reboot, or once it exited)."""
        try:
            done = services_for(RunnerSettings()).restart(name, typer.echo)
        except RunnerError as exc:
            raise _fail(exc) from None
        typer.echo(f"{name} runs version {done.version} on {done.address or 'no host port'}")

    @app.command("deployments")
    def deployments(
        environment: Annotated[str | None, typer.Argument(help="Show this one's history.")] = None,
    ) -> None:
        """List environments with their current deployment, or one environment's history."""
        log = LocalDeployments(deployments_dir(RunnerSettings().data_dir))
        table = Table(box=None, pad_edge=False)
        if environment is None:
            for column in ("environment", "deployment", "kind", "digest", "target", "when"):
                table.add_column(column)
            for name in log.environments():
                now = current(log.history(name))
                if now is None:
                    table.add_row(name, "-", "-", "-", "-", "-")
                    continue
                table.add_row(
                    name, str(now.id), now.kind, now.digest, now.target, _when(now.created_at)
                )
        else:
            history = log.history(environment)
            if not history:
                raise _fail(RunnerError(f"nothing was deployed to {environment!r}"))
            for column in ("id", "status", "digest", "target", "when", "who", "job", "note"):
                table.add_column(column)
            for item in history:
                note = f"rollback to {item.rollback_of}" if item.rollback_of else item.message
                job = f"#{item.pipeline_id} {item.job}" if item.pipeline_id else item.job
                table.add_row(
                    str(item.id),
                    item.status,
                    item.digest,
                    item.target,
                    _when(item.created_at),
                    item.user,
                    job,
                    note[:80],
                )
        Console(width=220).print(table)


def rollback_here(environment: str, to: int | None) -> None:
    """`kapal rollback` without a server: re-deploy an earlier deployment this host recorded.

    (The verb itself lives in `web.client_cli`, which talks to a server when `KAPAL_HOST` is set
    and calls this otherwise.)
    """
    settings = RunnerSettings()
    log = LocalDeployments(deployments_dir(settings.data_dir))
    owner = DEFAULT_OWNER
    now = current(log.history(environment))
    if now is not None and now.kind == "service":
        config = read_json(settings.data_dir / "services" / now.target / "service.json")
        owner = str((config or {}).get("owner") or DEFAULT_OWNER)
    try:
        secrets = {k: s.value for k, s in load_secrets(os.environ).items()}
    except RunnerError as exc:
        raise _fail(exc) from None
    shipper = local_shipper(settings, ImageStore(settings.images_dir), owner, None, secrets)
    try:
        done = shipper.rollback(environment, typer.echo, to=to)
    except RunnerError as exc:
        raise _fail(exc) from None
    typer.echo(f"{environment}: deployment {done.id} rolls back to {done.rollback_of}")
