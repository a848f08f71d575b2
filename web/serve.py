"""`kapal serve`: the web service (webhooks, REST API) and, unless `--no-worker`, a worker.

Start-up, in order, each failure one line on stderr and exit status 1: the settings; the
database (the embedded SQLite default migrates itself, any other must already be at this kapal's
revision: "run `kapal migrate`"); the admin token (KAPAL_ADMIN_TOKEN, else one made and printed
on the first start); the listening socket (TCP, or a Unix socket made with mode 0660); the
embedded worker; then uvicorn serves until SIGINT/SIGTERM, and the worker is stopped. A Unix
socket's path is removed at the stop only while it is still the socket this server bound: in a
restart that overlaps (a new server binding the path while this one drains) the new one keeps it.

With `--workers N` (N > 1) the listening socket is shared by N forked HTTP processes, each with
its own database pool and Celery app (a Python process uses one core at a time: webhooks and API
calls then spread over the machine's cores), and the embedded worker runs in a process of its
own; this process only supervises them: one that dies is started again, and SIGINT/SIGTERM
stops them all (each finishing its requests, the worker canceling its jobs) before it exits.
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import socket
import stat
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Annotated, Any, NamedTuple

import typer

log = logging.getLogger(__name__)

UNIX_SOCKET_MODE = 0o660
# Seconds the processes of `--workers` get to finish once told to stop, and the least time
# between two restarts of one that died.
STOP_GRACE = 40.0
RESTART_PAUSE = 1.0
# Webhook URLs of a server on a socket without KAPAL_PUBLIC_URL: the TCP default a proxy uses.
_DEFAULT_PUBLIC = "http://127.0.0.1:8080"


class ServeError(Exception):
    """`kapal serve` cannot start; the message is the one line to print."""


def _fail(message: str, verb: str = "serve") -> typer.Exit:
    typer.echo(f"kapal {verb}: {message}", err=True)
    return typer.Exit(1)


class SocketFile(NamedTuple):
    """The file a Unix socket was bound to: its path and identity (st_dev, st_ino) then."""

    path: Path
    device: int
    inode: int

    def remove(self) -> None:
        """Unlink the path only while it is still this socket's file (lstat, never followed)
        and nobody listens on it: a server that has bound the path since (an overlapping
        restart) keeps its socket, even one whose file got this one's inode number again."""
        with suppress(FileNotFoundError):
            found = os.lstat(self.path)
            mine = (found.st_dev, found.st_ino) == (self.device, self.inode)
            if stat.S_ISSOCK(found.st_mode) and mine and _connect(self.path) == errno.ECONNREFUSED:
                self.path.unlink()


def _connect(path: Path) -> int:
    """The errno of connecting to the socket at `path` (0: a server listens); never waits."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.setblocking(False)  # a live server's full backlog: EAGAIN, not a wait
        return probe.connect_ex(str(path))


def unix_socket(path: Path) -> socket.socket:
    """A listening Unix socket at `path`, mode 0660 (see `unix_socket_file`)."""
    return unix_socket_file(path)[0]


def unix_socket_file(path: Path) -> tuple[socket.socket, SocketFile]:
    """A listening Unix socket at `path`, mode 0660 from its creation on, and its file.

    A socket file nobody listens on (connecting is refused: a server that died) is replaced; a
    live one, a symlink, or any other file at `path` is refused (ServeError), never removed or
    followed. The caller removes the path with `SocketFile.remove` once it stops listening.
    """
    try:
        found = os.lstat(path)
    except FileNotFoundError:
        pass
    else:
        if stat.S_ISLNK(found.st_mode):
            raise ServeError(f"{path} is a symlink; give the socket's own path, not a link to it")
        if not stat.S_ISSOCK(found.st_mode):
            raise ServeError(f"{path} exists and is not a socket; remove it or pick another path")
        refused = _connect(path)
        if refused in (0, errno.EAGAIN):
            raise ServeError(
                f"another server already listens on {path}; stop it first, or pick another path"
            )
        if refused != errno.ECONNREFUSED:
            raise ServeError(
                f"cannot tell whether a server listens on {path} ({os.strerror(refused)}); "
                "remove it if none does, or pick another path"
            )
        SocketFile(path, found.st_dev, found.st_ino).remove()  # a stale socket
    path.parent.mkdir(parents=True, exist_ok=True)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    previous = os.umask(0o777 & ~UNIX_SOCKET_MODE)
    try:
        listener.bind(str(path))
        # its file as bound, the mode set through it: never through a link put there since
        handle = os.open(path, os.O_PATH | os.O_NOFOLLOW)
        try:
            bound = os.fstat(handle)
            if not stat.S_ISSOCK(bound.st_mode):
                raise ServeError(f"{path} was replaced while kapal serve bound it; start again")
            os.chmod(f"/proc/self/fd/{handle}", UNIX_SOCKET_MODE)
        finally:
            os.close(handle)
    except OSError as exc:
        listener.close()
        raise ServeError(f"cannot listen on {path}: {exc.strerror}") from None
    except ServeError:
        listener.close()
        raise
    finally:
        os.umask(previous)
    listener.listen(128)
    return listener, SocketFile(path, bound.st_dev, bound.st_ino)


def tcp_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (port 0: one the kernel picks)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on connections of such sockets,
    # and without it every answer waits ~40 ms for a delayed ACK (Nagle's algorithm)
    listener = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        listener.bind((host, port))
    except OSError as exc:
        listener.close()
        raise ServeError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    listener.listen(2048)
    return listener


def _settings(overrides: dict[str, Any]) -> Any:
    from pydantic import ValidationError

    from web.settings import Settings

    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in exc.errors()
        )
        raise _fail(f"bad setting: {problems}") from None


def _check_database(settings: Any) -> None:
    from web.db.migrate import ensure_migrated
    from web.errors import WebError

    try:
        ensure_migrated(settings)  # an unreachable database is a DatabaseError line too
    except WebError as exc:
        raise _fail(str(exc)) from None


def _check_rollout_settings() -> None:
    """Refuse to start when a KAPAL_SERVICE_* setting is malformed (one line naming it): every
    pipeline that ships would fail on it, long after the server started."""
    from runner.errors import RunnerError
    from runner.ship.local import ShipEnv

    try:
        ShipEnv.check()
    except RunnerError as exc:
        raise _fail(str(exc)) from None


def _check_object_store(settings: Any) -> None:
    """Refuse to start when KAPAL_OBJECT_STORE is set and cannot be used (one line, naming the
    setting to fix): the jobs' artifacts and caches, and the artifact downloads, need it."""
    from runner.errors import RunnerError

    try:
        objects = settings.open_object_store()
        if objects is not None:
            objects.check()
    except RunnerError as exc:
        raise _fail(str(exc)) from None


def serve(
    *,
    host: str | None,
    port: int | None,
    socket_path: Path | None,
    data_dir: Path | None,
    no_worker: bool,
    workers: int = 1,
) -> None:
    """Run the service until interrupted (see the module docstring)."""
    if workers < 1:
        raise _fail(f"--workers is the number of HTTP processes: 1 or more, not {workers}")
    settings = _settings(
        {
            "data_dir": data_dir,
            "bind_host": host,
            "bind_port": port,
            "bind_socket": socket_path,
            "embedded_worker": False if no_worker else None,
        }
    )
    _check_database(settings)
    _check_object_store(settings)
    _check_rollout_settings()
    from web.api.auth import ensure_admin_token
    from web.db.session import Database
    from web.errors import WebError

    bound: SocketFile | None = None
    try:
        if settings.bind_socket is not None:
            listener, bound = unix_socket_file(Path(settings.bind_socket))
            where = f"unix://{settings.bind_socket}"
            if not settings.public_url:
                settings.public_url = _DEFAULT_PUBLIC
        else:
            listener = tcp_socket(settings.bind_host, settings.bind_port)
            settings.bind_port = listener.getsockname()[1]  # the port the kernel picked for 0
            shown = f"[{settings.bind_host}]" if ":" in settings.bind_host else settings.bind_host
            where = f"http://{shown}:{settings.bind_port}"
    except ServeError as exc:
        raise _fail(str(exc)) from None
    database = Database(settings.database_url)
    try:
        try:
            admin = ensure_admin_token(database=database, settings=settings)
        except WebError as exc:
            raise _fail(str(exc)) from None
        if workers > 1:
            database.dispose()  # the processes make their own; none inherits a connection
            _announce(settings, where, admin, settings.embedded_worker, workers)
            _supervise(settings, listener, workers)
            return
        from web.app import create_app
        from web.tasks import create_celery, start_embedded_worker

        celery = create_celery(settings, database=database)
        app = create_app(settings, services=celery.services)
        worker = None
        if settings.embedded_worker:
            try:
                worker = start_embedded_worker(settings, app=celery)
            except (TimeoutError, OSError) as exc:
                raise _fail(f"the embedded worker did not start: {exc}") from None
        _announce(settings, where, admin, worker is not None)
        try:
            _run_uvicorn(app, listener)
        finally:
            celery.send_waiting()
            if worker is not None:
                worker.stop(timeout=30)
    finally:
        listener.close()
        if bound is not None:
            bound.remove()  # unless a server started since has bound the path
        database.dispose()


def _run_uvicorn(app: Any, listener: socket.socket) -> None:
    """Serve `app` on `listener` until SIGINT/SIGTERM (requests under way finish first)."""
    import uvicorn

    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=5,
    )
    # uvicorn shuts down gracefully on SIGINT/SIGTERM, then raises the signal again with the
    # handler it found: make that handler end this function, not the process
    with _stopped_by_signals():
        uvicorn.Server(config).run(sockets=[listener])


def _serve_http(settings: Any, listener: socket.socket) -> None:
    """One HTTP process of `--workers`: its own database pool and Celery app (no worker)."""
    from web.app import create_app
    from web.db.session import Database
    from web.tasks import create_celery

    database = Database(settings.database_url)
    try:
        celery = create_celery(settings, database=database)
        try:
            _run_uvicorn(create_app(settings, services=celery.services), listener)
        finally:
            celery.send_waiting()
    finally:
        database.dispose()


def _run_worker(settings: Any) -> None:
    """The worker process of `--workers`: the embedded worker until SIGINT/SIGTERM."""
    from web.tasks import create_celery, start_embedded_worker

    stops = {signal.SIGINT, signal.SIGTERM}
    signal.pthread_sigmask(signal.SIG_BLOCK, stops)  # the worker's threads inherit the mask
    celery = create_celery(settings)
    try:
        worker = start_embedded_worker(settings, app=celery)
        try:
            signal.sigwait(stops)
        finally:
            worker.stop(timeout=30)
    finally:
        celery.services.database.dispose()


def _fork(target: Any, *args: Any) -> int:
    """Run `target(*args)` in a forked child that exits when it returns; the child's pid."""
    pid = os.fork()
    if pid:
        return pid
    code = 0
    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_DFL)
        target(*args)
    except BaseException:
        log.exception("kapal serve: process %d failed", os.getpid())
        code = 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _supervise(settings: Any, listener: socket.socket, count: int) -> None:
    """Fork `count` HTTP processes on `listener` (and the worker's, if embedded); start again
    any that dies; on SIGINT/SIGTERM stop them all and return once they have exited."""
    starts: dict[int, tuple[Any, tuple[Any, ...]]] = {}

    def start(target: Any, *args: Any) -> None:
        starts[_fork(target, *args)] = (target, args)

    for _ in range(count):
        start(_serve_http, settings, listener)
    if settings.embedded_worker:
        start(_run_worker, settings)
    try:
        with _stopped_by_signals():
            while True:
                pid, status = os.wait()
                ended = starts.pop(pid, None)
                if ended is None:
                    continue
                sys.stderr.write(
                    f"kapal serve: process {pid} ended ({os.waitstatus_to_exitcode(status)}); "
                    "starting another\n"
                )
                time.sleep(RESTART_PAUSE)
                start(ended[0], *ended[1])
    finally:
        _stop_all(list(starts))


def _stop_all(pids: list[int]) -> None:
    """SIGTERM each process, wait for them (SIGKILL past `STOP_GRACE`)."""
    for pid in pids:
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE
    waiting = set(pids)
    while waiting:
        for pid in list(waiting):
            done, _ = os.waitpid(pid, os.WNOHANG)
            if done:
                waiting.discard(pid)
        if waiting and time.monotonic() > deadline:
            for pid in waiting:
                with suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            for pid in waiting:
                os.waitpid(pid, 0)
            return
        time.sleep(0.05)


class _Stop(Exception):
    """A stop signal arrived after uvicorn's graceful shutdown."""


@contextmanager
def _stopped_by_signals() -> Iterator[None]:
    def stop(_signum: int, _frame: object) -> None:
        raise _Stop

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    except _Stop:
        pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _announce(settings: Any, where: str, admin: str | None, worker: bool, workers: int = 1) -> None:
    from web.db.migrate import describe

    here = "in this process" if workers == 1 else "in a process of its own"
    lines = [
        f"kapal serve: API on {where} (OpenAPI: {where}/openapi.json)"
        if where.startswith("http")
        else f"kapal serve: API on {where} (set KAPAL_HOST={where} for the kapal CLI)",
        f"  database: {describe(settings.database_url)}",
        f"  worker: {here if worker else 'none (run `kapal worker`)'}",
        "  webhook URLs:",
        *(f"    {settings.server_url}/hooks/{p}" for p in ("github", "gitlab", "gitea")),
    ]
    if workers > 1:
        lines.append(f"  HTTP processes: {workers}")
    if not where.startswith("http") and settings.public_url == _DEFAULT_PUBLIC:
        lines.append(
            "    (set KAPAL_PUBLIC_URL to the address a proxy to the socket gives git hosts)"
        )
    if admin is not None:
        lines += [
            f"  admin token (shown this once; export KAPAL_TOKEN={admin}):",
            f"    {admin}",
        ]
    elif settings.admin_token is not None:
        lines.append("  admin token: the one KAPAL_ADMIN_TOKEN holds")
    else:
        lines.append("  admin token: made on the first start (kapal token create NAME for more)")
    sys.stdout.write("\n".join(lines) + "\n")
    sys.stdout.flush()


def register(app: typer.Typer) -> None:
    """Add `serve` and `token` to `app`."""

    @app.command("serve")
    def serve_command(
        host: str = typer.Option(None, "--host", help="Address to listen on [127.0.0.1]."),
        port: int = typer.Option(None, "--port", help="TCP port [8080]; 0 picks a free one."),
        socket_path: Annotated[
            Path | None,
            typer.Option("--socket", help="Listen on this Unix socket (mode 0660) instead of TCP."),
        ] = None,
        data_dir: Annotated[
            Path | None, typer.Option("--data-dir", help="Where kapal keeps its state.")
        ] = None,
        no_worker: bool = typer.Option(
            False, "--no-worker", help="Run no worker in this process (use `kapal worker`)."
        ),
        workers: int = typer.Option(
            1, "--workers", help="HTTP processes sharing the socket (one per core) [1]."
        ),
    ) -> None:
        """Run the kapal service: webhooks, REST API and (unless --no-worker) a worker."""
        serve(
            host=host,
            port=port,
            socket_path=socket_path,
            data_dir=data_dir,
            no_worker=no_worker,
            workers=workers,
        )

    token = typer.Typer(help="API tokens (on the server's database).", no_args_is_help=True)
    app.add_typer(token, name="token")

    @token.command("create")
    def token_create(
        name: str = typer.Argument(..., help="A name to know the token by."),
        scope: Annotated[
            list[str] | None,
            typer.Option("--scope", help="read, write or admin (repeatable) [write]."),
        ] = None,
        repo: str = typer.Option(None, "--repo", help="Limit the token to this repository."),
    ) -> None:
        """Make an API token and print it (this once)."""
        create_token_command(name=name, scopes=scope or ["write"], repo=repo)


def create_token_command(*, name: str, scopes: list[str], repo: str | None) -> None:
    """`kapal token create`: make a token in the database the settings name, print it."""
    settings = _settings({})
    from web.db.repos import get_repository_by_name
    from web.db.schemas import Scope
    from web.db.session import Database
    from web.db.tokens import create_token
    from web.errors import WebError

    try:
        wanted = [Scope(s) for s in scopes]
    except ValueError:
        typer.echo(f"kapal token create: scopes are read, write, admin; got {scopes}", err=True)
        raise typer.Exit(2) from None
    _check_database(settings)
    database = Database(settings.database_url)
    try:
        with database.transaction() as session:
            repository_id = None
            if repo is not None:
                found = get_repository_by_name(session=session, name=repo)
                if found is None:
                    typer.echo(f"kapal token create: no repository named {repo!r}", err=True)
                    raise typer.Exit(1)
                repository_id = found.id
            made = create_token(
                session=session, name=name, scopes=wanted, repository_id=repository_id
            )
    except WebError as exc:
        typer.echo(f"kapal token create: {exc}", err=True)
        raise typer.Exit(1) from None
    finally:
        database.dispose()
    typer.echo(made.plaintext)
