"""Real PostgreSQL and Redis for tests, from Debian's packages (installed by `.ci/setup`).

PostgreSQL: Debian's cluster is started when it is down (`pg_ctlcluster`) and left running; every
caller gets a throwaway database owned by a role that logs in over 127.0.0.1 with a password, as
a deployed kapal would.

Redis: `start_redis()` starts the machine's server on 6379 when nothing listens there. Tests that
run Celery use `run_redis()` instead, a private server on a free port: two test sessions sharing
one broker would run each other's tasks against the wrong database.
"""

from __future__ import annotations

import re
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock

from tests.support.registry import free_port, stop_process

LOCK = Path("/tmp/kapal-test-services.lock")
PASSWORD_FILE = Path("/tmp/kapal-test-postgres.password")
ROLE = "kapal_test"
REDIS_PORT = 6379


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _wait_listening(port: int, what: str) -> None:
    for _ in range(300):
        if _listening(port):
            return
        time.sleep(0.1)
    raise RuntimeError(f"{what} does not listen on 127.0.0.1:{port}")


def _cluster() -> tuple[str, str, int]:
    """Version, name and port of the first PostgreSQL cluster (`pg_lsclusters`)."""
    if shutil.which("pg_lsclusters") is None:
        raise RuntimeError("PostgreSQL is not installed; run `bash .ci/setup`")
    listing = subprocess.run(
        ["pg_lsclusters", "--no-header"], capture_output=True, text=True, check=True
    ).stdout.split("\n")
    for line in listing:
        fields = line.split()
        if len(fields) >= 4:
            return fields[0], fields[1], int(fields[2])
    raise RuntimeError("no PostgreSQL cluster exists; run `pg_createcluster 15 main`")


def _psql(sql: str, database: str = "postgres") -> str:
    """Run SQL as the `postgres` superuser over the Unix socket."""
    done = subprocess.run(
        [
            "runuser",
            "-u",
            "postgres",
            "--",
            "psql",
            "-X",
            "-q",
            "-t",
            "-A",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            database,
            "-c",
            sql,
        ],
        capture_output=True,
        text=True,
        cwd="/",
    )
    if done.returncode != 0:
        raise RuntimeError(f"psql failed on {sql!r}: {done.stderr.strip()}")
    return done.stdout.strip()


@dataclass
class PostgresServer:
    """A running PostgreSQL cluster and a password role for tests on 127.0.0.1."""

    port: int
    password: str

    def url(self, database: str) -> str:
        """The SQLAlchemy URL of `database` as the test role."""
        return f"postgresql+psycopg://{ROLE}:{self.password}@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        """A new empty database owned by the test role; returns its name."""
        name = f"kapal_test_{secrets.token_hex(6)}"
        _psql(f'CREATE DATABASE "{name}" OWNER {ROLE}')
        return name

    def drop_database(self, name: str) -> None:
        """Drop a database made by `create_database`, closing its connections."""
        if not re.fullmatch(r"kapal_test_[0-9a-f]+", name):
            raise ValueError(f"{name} is not a test database")
        _psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    @contextmanager
    def database(self) -> Iterator[str]:
        """A throwaway database for the block; yields its URL."""
        name = self.create_database()
        try:
            yield self.url(name)
        finally:
            self.drop_database(name)


def start_postgres() -> PostgresServer:
    """Start Debian's PostgreSQL cluster if it is down and (re)set the test role's password."""
    with FileLock(str(LOCK)):
        version, name, port = _cluster()
        if not _listening(port):
            subprocess.run(["pg_ctlcluster", version, name, "start"], check=True)
            _wait_listening(port, f"PostgreSQL {version}/{name}")
        # one password for every session at once: resetting it would lock out a concurrent one
        if PASSWORD_FILE.exists():
            password = PASSWORD_FILE.read_text().strip()
        else:
            password = secrets.token_hex(16)
            PASSWORD_FILE.write_text(password + "\n")
            PASSWORD_FILE.chmod(0o600)
        exists = _psql(f"SELECT 1 FROM pg_roles WHERE rolname = '{ROLE}'") == "1"
        verb = "ALTER" if exists else "CREATE"
        _psql(f"{verb} ROLE {ROLE} LOGIN CREATEDB PASSWORD '{password}'")
        return PostgresServer(port=port, password=password)


def start_redis() -> str:
    """Start Redis on 127.0.0.1:6379 if nothing listens there; returns its base URL."""
    with FileLock(str(LOCK)):
        if not _listening(REDIS_PORT):
            binary = shutil.which("redis-server")
            if binary is None:
                raise RuntimeError("redis-server is not installed; run `bash .ci/setup`")
            subprocess.run(
                [
                    binary,
                    "--daemonize",
                    "yes",
                    "--port",
                    str(REDIS_PORT),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ],
                check=True,
                cwd="/tmp",
                stdout=subprocess.DEVNULL,
            )
            _wait_listening(REDIS_PORT, "redis-server")
    return f"redis://127.0.0.1:{REDIS_PORT}"


@contextmanager
def run_redis(workdir: Path) -> Iterator[str]:
    """Run a private Redis on a free 127.0.0.1 port until the block ends; yield its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed; run `bash .ci/setup`")
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = (workdir / "redis.log").open("w")
    process = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        for _ in range(300):
            if process.poll() is not None:
                raise RuntimeError(f"redis-server exited: {(workdir / 'redis.log').read_text()}")
            if _listening(port):
                break
            time.sleep(0.05)
        else:
            raise RuntimeError(f"redis-server does not listen on 127.0.0.1:{port}")
        yield f"redis://127.0.0.1:{port}"
    finally:
        stop_process(process)
        log.close()
