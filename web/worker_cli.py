"""`kapal worker`: a Celery worker apart from the web process (registered by `web.cli`).

It takes jobs from the broker of `KAPAL_BROKER_URL` and records them in the database of
`KAPAL_DATABASE_URL` (the embedded defaults in the data dir when unset), like the worker
`kapal serve` runs in its own process. More workers, here or on other machines sharing the
database and broker, run more jobs at once; SIGTERM or Ctrl-C lets the running jobs end.

`--queues` names the job tags it serves, `kapal` standing for untagged jobs (the default):
`--queues kapal,docker` runs untagged jobs and jobs tagged `docker` (`web.routing`). It writes a
heartbeat every few seconds (`web.heartbeats`): killed, its running jobs fail "worker lost".
`--expire-artifacts` removes the artifacts past their expiry once and exits, as the workers'
periodic sweep does (`web.artifact_expiry`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

EXIT_BAD_SETUP = 2


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(EXIT_BAD_SETUP)


def run_worker(
    *,
    concurrency: int | None,
    queues: list[str],
    data_dir: Path | None,
    loglevel: str,
    hostname: str | None,
) -> None:
    """Run a worker in this process until it is stopped by a signal."""
    from pydantic import ValidationError
    from sqlalchemy.exc import SQLAlchemyError

    from runner.errors import RunnerError
    from runner.ship.local import ShipEnv
    from web.db.migrate import check_migrated
    from web.errors import WebError
    from web.routing import DEFAULT_QUEUE, worker_queues
    from web.settings import Settings

    served = queues or [DEFAULT_QUEUE]
    try:
        broker_queues = worker_queues(served)
    except WebError as exc:
        raise _fail(str(exc)) from None
    try:
        settings = Settings() if data_dir is None else Settings(data_dir=data_dir)
    except ValidationError as exc:
        raise _fail(f"bad settings: {exc.errors()[0]['msg']}") from None
    try:
        check_migrated(settings)  # an unreachable database is a DatabaseError line too
    except WebError as exc:
        raise _fail(str(exc)) from None
    try:  # an object store the jobs could not use fails them all: say so once, now
        objects = settings.open_object_store()
        if objects is not None:
            objects.check()
    except RunnerError as exc:
        raise _fail(str(exc)) from None
    try:  # a malformed KAPAL_SERVICE_* would fail every pipeline that ships: say so now
        ShipEnv.check()
    except RunnerError as exc:
        raise _fail(str(exc)) from None

    from web.execution import RunningJobs
    from web.heartbeats import Heartbeat
    from web.tasks import create_celery, recover_jobs, worker_name

    app = create_celery(settings)
    name = hostname or worker_name()
    app.worker_name = name
    app.running = RunningJobs()
    concurrency = concurrency or settings.worker_concurrency
    logging.basicConfig(level=loglevel.upper(), format="%(asctime)s %(levelname)s %(message)s")
    heartbeat = Heartbeat(
        app.services,
        name=name,
        queues=served,
        concurrency=concurrency,
        fence=app.running.cancel_running,
        running=app.running,
    )
    try:
        heartbeat.start()
    except (SQLAlchemyError, OSError) as exc:
        raise _fail(f"cannot register the worker in the database: {exc}") from None
    recover_jobs(app.services)
    worker = app.Worker(
        hostname=name,
        pool="threads",
        concurrency=concurrency,
        queues=broker_queues,
        loglevel=loglevel.upper(),
        without_heartbeat=True,
        without_mingle=True,
        without_gossip=True,
        quiet=True,
    )
    try:
        worker.start()
    finally:
        heartbeat.stop()
        app.services.database.dispose()
    if worker.exitcode:
        raise typer.Exit(worker.exitcode)


def expire_artifacts_once(*, data_dir: Path | None) -> int:
    """Remove the artifacts past their expiry now (`web.artifact_expiry`), as the workers'
    periodic sweep does; returns how many job attempts' artifacts were removed."""
    from pydantic import ValidationError

    from runner.errors import RunnerError
    from web.artifact_expiry import expire_artifacts
    from web.db.migrate import check_migrated
    from web.db.session import Database
    from web.errors import WebError
    from web.settings import Settings

    try:
        settings = Settings() if data_dir is None else Settings(data_dir=data_dir)
    except ValidationError as exc:
        raise _fail(f"bad settings: {exc.errors()[0]['msg']}") from None
    try:
        check_migrated(settings)
        objects = settings.open_object_store()
        if objects is not None:
            objects.check()
    except (WebError, RunnerError) as exc:
        raise _fail(str(exc)) from None
    database = Database(settings.database_url)
    try:
        return len(expire_artifacts(settings=settings, database=database))
    finally:
        database.dispose()


def register(app: typer.Typer) -> None:
    """Add `kapal worker` to the `kapal` application."""

    @app.command("worker")
    def worker_command(
        concurrency: Annotated[
            int | None,
            typer.Option(
                "--concurrency", "-c", min=1, help="Jobs run at once (KAPAL_WORKER_CONCURRENCY)."
            ),
        ] = None,
        queues: Annotated[
            list[str] | None,
            typer.Option("--queues", "-Q", help="Queues to take jobs from; repeatable."),
        ] = None,
        data_dir: Annotated[
            Path | None, typer.Option("--data-dir", help="kapal's data dir (KAPAL_DATA_DIR).")
        ] = None,
        loglevel: Annotated[
            str, typer.Option("--loglevel", "-l", help="debug, info, warning or error.")
        ] = "info",
        hostname: Annotated[
            str | None, typer.Option("--hostname", "-n", help="This worker's name.")
        ] = None,
        expire_artifacts: Annotated[
            bool,
            typer.Option(
                "--expire-artifacts",
                help="Remove the artifacts past their expiry once, then exit (takes no jobs).",
            ),
        ] = False,
    ) -> None:
        """Run a worker: take jobs from the broker and run them on this machine."""
        if expire_artifacts:
            removed = expire_artifacts_once(data_dir=data_dir)
            typer.echo(f"removed the expired artifacts of {removed} job attempt(s)")
            return
        if loglevel.lower() not in ("debug", "info", "warning", "error"):
            raise typer.BadParameter(
                f"{loglevel!r}: use debug, info, warning or error", param_hint="--loglevel"
            )
        run_worker(
            concurrency=concurrency,
            queues=[q for entry in queues or () for q in entry.split(",") if q],
            data_dir=data_dir,
            loglevel=loglevel,
            hostname=hostname,
        )
