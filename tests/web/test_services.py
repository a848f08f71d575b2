"""The real services the web tests run against answer as a deployment's would."""

from __future__ import annotations

import socket

from sqlalchemy import text

from tests.support.services import PostgresServer, start_redis
from web.db.session import Database


def test_postgres_takes_password_logins_over_tcp(postgres_url: str) -> None:
    database = Database(postgres_url)
    try:
        with database.transaction() as session:
            version = session.execute(text("SHOW server_version")).scalar_one()
            user = session.execute(text("SELECT current_user")).scalar_one()
    finally:
        database.dispose()
    assert int(version.split(".")[0]) >= 15
    assert user == "kapal_test"


def test_each_database_is_its_own(postgres: PostgresServer) -> None:
    with postgres.database() as first, postgres.database() as second:
        assert first != second


def test_redis_answers_ping(redis_url: str) -> None:
    host, port = redis_url.removeprefix("redis://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as connection:
        connection.sendall(b"PING\r\n")
        assert connection.recv(64) == b"+PONG\r\n"


def test_the_shared_redis_is_started_when_down() -> None:
    url = start_redis()
    assert url == "redis://127.0.0.1:6379"
    with socket.create_connection(("127.0.0.1", 6379), timeout=5) as connection:
        connection.sendall(b"PING\r\n")
        assert connection.recv(64) == b"+PONG\r\n"
