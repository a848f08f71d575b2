"""The API while PostgreSQL drops its connections: a request that cannot reach the database is
answered 503 with one line to act on (never a 500 or a traceback), and the same app answers
again once the database takes connections, without a restart.

Played on a real PostgreSQL: the app's backends are ended with `pg_terminate_backend` and new
connections refused (`ALLOW_CONNECTIONS false`), as the `postgres` superuser.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import make_url

from tests.support.services import PostgresServer, _psql
from tests.web.api.conftest import ADMIN, AUTH, RecordingDispatcher, error_of, register
from tests.web.hooks.conftest import delivery, payload
from web.app import create_app
from web.db.migrate import upgrade
from web.db.session import Database
from web.orchestration import Services
from web.settings import Settings


class Outage:
    """Cuts and refuses the connections to one test database, as the superuser."""

    def __init__(self, name: str) -> None:
        self.name = name

    def cut(self) -> int:
        """End every backend connected to the database; the number ended."""
        ended = _psql(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            f"WHERE datname = '{self.name}' AND pid <> pg_backend_pid()"
        )
        return int(ended)

    def refuse(self) -> None:
        """Refuse new connections, then end the ones open."""
        _psql(f'ALTER DATABASE "{self.name}" ALLOW_CONNECTIONS false')
        self.cut()

    def allow(self) -> None:
        """Take connections again."""
        _psql(f'ALTER DATABASE "{self.name}" ALLOW_CONNECTIONS true')


@pytest.fixture
def outage_url(postgres: PostgresServer) -> Iterator[str]:
    """A migrated PostgreSQL database of this test's own (it is cut off, so not shared)."""
    with postgres.database() as url:
        upgrade(url)
        yield url
        Outage(str(make_url(url).database)).allow()  # so it can be dropped


@pytest.fixture
def app_services(tmp_path: Path, outage_url: str) -> Iterator[Services]:
    """The service layer on that database."""
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=outage_url,
        secret_key="test key",
        admin_token=ADMIN,
        public_url="http://kapal.test",
    )
    database = Database(outage_url)
    try:
        yield Services(settings=settings, database=database, dispatcher=RecordingDispatcher())
    finally:
        database.dispose()


@pytest.fixture
def app_client(app_services: Services) -> Iterator[TestClient]:
    """A client of the app on that database."""
    app = create_app(app_services.settings, services=app_services)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def _outage(url: str) -> Outage:
    return Outage(str(make_url(url).database))


def _assert_unavailable(answer: object) -> None:
    from httpx import Response

    assert isinstance(answer, Response)
    assert answer.status_code == 503, answer.text
    message = error_of(answer)
    assert "database" in message and "retry" in message
    assert "\n" not in message
    assert "Traceback" not in answer.text and "psycopg" not in answer.text
    assert answer.headers.get("retry-after")


def test_connections_ended_under_the_app_are_replaced_unseen(
    app_client: TestClient, outage_url: str
) -> None:
    assert app_client.get("/api/v1/pipelines", headers=AUTH).status_code == 200
    assert _outage(outage_url).cut() >= 1  # the app's pooled connection
    again = app_client.get("/api/v1/pipelines", headers=AUTH)
    assert again.status_code == 200, again.text


def test_a_refusing_database_is_503_and_the_app_recovers_without_restart(
    app_client: TestClient, app_services: Services, outage_url: str
) -> None:
    register(app_services)
    outage = _outage(outage_url)
    assert app_client.get("/api/v1/pipelines", headers=AUTH).status_code == 200
    outage.refuse()
    try:
        _assert_unavailable(app_client.get("/api/v1/pipelines", headers=AUTH))
        _assert_unavailable(app_client.get("/api/v1/repos", headers=AUTH))
        headers, body = delivery("github", payload("github_push"), "push")
        _assert_unavailable(app_client.post("/hooks/github", content=body, headers=headers))
        health = app_client.get("/healthz")
        assert health.status_code == 503
    finally:
        outage.allow()
    listed = app_client.get("/api/v1/pipelines", headers=AUTH)
    assert listed.status_code == 200, listed.text
    repos = app_client.get("/api/v1/repos", headers=AUTH)
    assert [r["name"] for r in repos.json()] == ["acme/shop"]
    assert app_client.get("/healthz").status_code == 200
