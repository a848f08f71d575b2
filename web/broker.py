"""The embedded broker: kombu's SQLAlchemy transport over a SQLite file, polled quickly.

kombu's SQLAlchemy transport hands every `broker_transport_options` entry to `create_engine`,
so its `polling_interval` (read by kombu's virtual transport) cannot be set the usual way: the
engine refuses the unknown keyword. `SQLiteTransport` takes `polling_interval` out before the
engine is made, and opens the broker file in WAL mode with a busy timeout, so the web process
publishing and a worker polling every few tens of milliseconds do not stall each other.

Celery reaches it with `broker_url="sqlite:///…"` and `broker_transport=TRANSPORT_PATH` (a
`sqla+sqlite://` URL would force kombu's own transport); `broker_settings` does that mapping.
"""

from __future__ import annotations

import warnings
from typing import Any

from kombu.transport.sqlalchemy import Channel as SQLAlchemyChannel
from kombu.transport.sqlalchemy import Transport as SQLAlchemyTransport
from sqlalchemy import create_engine, event
from sqlalchemy.exc import SADeprecationWarning
from sqlalchemy.orm import configure_mappers

TRANSPORT_PATH = "web.broker:SQLiteTransport"
SQLITE_PREFIX = "sqla+"
# Seconds between two looks at an empty queue: task pickup within ~this on the embedded broker.
POLLING_INTERVAL = 0.05
BUSY_TIMEOUT_SECONDS = 30.0
# kombu's own options, not create_engine's
_KOMBU_OPTIONS = (
    "queue_tablename",
    "message_tablename",
    "callback",
    "errback",
    "max_retries",
    "interval_start",
    "interval_step",
    "interval_max",
    "retry_errors",
    "polling_interval",
)


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    """WAL: the publisher and the polling worker read beside each other; a busy wait."""
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_SECONDS * 1000)}")
        cursor.execute("PRAGMA synchronous=NORMAL")
    finally:
        cursor.close()


class SQLiteChannel(SQLAlchemyChannel):
    """kombu's SQLAlchemy channel, making its engine without kombu's own options."""

    def _open(self) -> Any:
        opened = super()._open()  # type: ignore[no-untyped-call]
        # kombu's models use `lazy="noload"`, deprecated in SQLAlchemy 2.1: configure them once
        # here, quietly, rather than warn at the first query of each process
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SADeprecationWarning)
            configure_mappers()
        return opened

    def _engine_from_config(self) -> Any:
        conninfo = self.connection.client
        options = {k: v for k, v in conninfo.transport_options.items() if k not in _KOMBU_OPTIONS}
        connect_args = dict(options.pop("connect_args", {}))
        connect_args.setdefault("timeout", BUSY_TIMEOUT_SECONDS)
        connect_args.setdefault("check_same_thread", False)
        engine = create_engine(conninfo.hostname, connect_args=connect_args, **options)
        if engine.dialect.name == "sqlite":
            event.listen(engine, "connect", _sqlite_on_connect)
        return engine


class SQLiteTransport(SQLAlchemyTransport):
    """kombu's SQLAlchemy transport whose `polling_interval` option works."""

    Channel = SQLiteChannel
    polling_interval = POLLING_INTERVAL


def broker_settings(url: str) -> dict[str, Any]:
    """Celery settings for the broker at `url` (`broker_url`, maybe `broker_transport`)."""
    if url.startswith(SQLITE_PREFIX + "sqlite"):
        return {
            "broker_url": url[len(SQLITE_PREFIX) :],
            "broker_transport": TRANSPORT_PATH,
            "broker_transport_options": {"polling_interval": POLLING_INTERVAL},
        }
    return {"broker_url": url}
