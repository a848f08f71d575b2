"""Engines and sessions: SQLite (WAL, busy timeout, foreign keys) or PostgreSQL via psycopg 3.

Lifecycle: make one `Database` per process from the URL in Settings, open a `transaction()` per
unit of work (it commits on success and rolls back on an exception) or `reading()` for reads
that need no one snapshot (no BEGIN or COMMIT sent), `dispose()` at shutdown.
A `Database` is safe to share between threads; a `Session` is not. A process forked with a
`Database` (a Celery prefork worker) calls `after_fork()` in the child before using it.

Concurrency: compare-and-set UPDATEs (`claim_job`, `set_job_status(only_from=...)`) and
`lock_pipeline` behave the same on both databases: PostgreSQL locks the row until commit, SQLite
takes its one write lock (waiting up to the busy timeout) at a transaction's first write.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from sqlalchemy import CursorResult, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

SQLITE_BUSY_TIMEOUT_MS = 30_000
# Connections a process keeps open to PostgreSQL (made as needed), and how many more it may
# open for a burst; a web process and each worker have their own pool.
POSTGRES_POOL_SIZE = 20
POSTGRES_MAX_OVERFLOW = 20


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    """Every SQLite connection: WAL (readers beside one writer), a busy wait, foreign keys."""
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
    finally:
        cursor.close()


def _create_private_file(path: Path) -> None:
    """Create the SQLite file readable by its owner only (it holds payloads, logs, encrypted
    secrets); SQLite gives its -wal and -shm files the same mode."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def make_engine(url: str, **options: Any) -> Engine:
    """An engine for `url` (a SQLite file's directory is made; `postgresql://` means psycopg 3)."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            _create_private_file(Path(parsed.database))
        connect_args = {"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
        engine = create_engine(parsed, connect_args=connect_args, **options)
        event.listen(engine, "connect", _sqlite_on_connect)
        return engine
    # pool_pre_ping: a connection PostgreSQL dropped (restarted, terminated) is replaced at
    # checkout instead of failing the request; a size near the web threads' concurrency, since
    # every connection past `pool_size` is closed at checkin and made anew for the next request
    pooling: dict[str, Any] = {
        "pool_pre_ping": True,
        "pool_size": POSTGRES_POOL_SIZE,
        "max_overflow": POSTGRES_MAX_OVERFLOW,
    }
    return create_engine(parsed, **{**pooling, **options})


def rowcount(result: Any) -> int:
    """Rows an UPDATE or DELETE touched (`Session.execute` is typed as returning any Result)."""
    if not isinstance(result, CursorResult):
        raise TypeError(f"expected the result of an UPDATE or DELETE, got {type(result).__name__}")
    return result.rowcount


class Database:
    """One database: its engine and a session factory (sessions keep rows readable after commit)."""

    def __init__(self, url: str, **engine_options: Any) -> None:
        self.url = url
        self.engine = make_engine(url, **engine_options)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @property
    def dialect(self) -> str:
        """`sqlite` or `postgresql`."""
        return self.engine.dialect.name

    def session(self) -> Session:
        """A new session; the caller commits and closes it (prefer `transaction()`)."""
        return self._sessions()

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session inside one transaction: committed when the block ends, rolled back on error."""
        with self._sessions() as session, session.begin():
            yield session

    @contextmanager
    def reading(self) -> Iterator[Session]:
        """A session for reads that need no one snapshot (a page of a list): each statement
        commits by itself, which spares the BEGIN and COMMIT round trips of `transaction()`."""
        with (
            self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection,
            Session(bind=connection) as session,
        ):
            yield session

    def after_fork(self) -> None:
        """In a forked child: forget the parent's pooled connections without closing them."""
        self.engine.dispose(close=False)

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()
