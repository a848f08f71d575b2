"""Fixtures of the web tests: real PostgreSQL and Redis, and a migrated database of each kind.

`database` is parametrized: a test taking it runs on SQLite and on PostgreSQL. Both are migrated
once per session with kapal's own migrations; each test gets a fresh SQLite copy, or the
PostgreSQL database with every table truncated after the test. On it, the service layer
(`services`, its dispatcher keeping what it is sent in `kept`) and a bare git `project`
registered as `repository`, for the modules that do not make their own.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from tests.support.services import PostgresServer, run_redis, start_postgres
from tests.web.service_support import KeptJobs, kept_services, register
from tests.web.test_mirrors import Project
from web.db.encryption import SecretCipher
from web.db.migrate import upgrade
from web.db.models import Base
from web.db.schemas import RepositoryRead
from web.db.session import Database
from web.orchestration import Services


@pytest.fixture(scope="session")
def postgres() -> PostgresServer:
    """Debian's PostgreSQL cluster, started when it is down, with a password test role."""
    return start_postgres()


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Redis server of this session's own on 127.0.0.1 (`redis://127.0.0.1:PORT`).

    Private, so a Celery worker of another test session never takes this session's tasks.
    """
    with run_redis(tmp_path_factory.mktemp("redis")) as url:
        yield url


@pytest.fixture
def postgres_url(postgres: PostgresServer) -> Iterator[str]:
    """The URL of a new, empty PostgreSQL database, dropped after the test."""
    with postgres.database() as url:
        yield url


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated to head once; tests use copies of it."""
    path = tmp_path_factory.mktemp("sqlite-template") / "kapal.db"
    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def migrated_postgres(postgres: PostgresServer) -> Iterator[str]:
    """The URL of a PostgreSQL database migrated to head for the session."""
    with postgres.database() as url:
        upgrade(url)
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(
    request: pytest.FixtureRequest, tmp_path: Path, migrated_sqlite: Path
) -> Iterator[str]:
    """The URL of a migrated, empty database: a SQLite file, then PostgreSQL."""
    if request.param == "sqlite":
        copy = tmp_path / "kapal.db"
        shutil.copyfile(migrated_sqlite, copy)
        yield f"sqlite:///{copy}"
        return
    url: str = request.getfixturevalue("migrated_postgres")
    try:
        yield url
    finally:
        empty_postgres(url)


def empty_postgres(url: str) -> None:
    """Empty every kapal table of the session's PostgreSQL database (ids start again at 1)."""
    cleaner = Database(url)
    try:
        tables = ", ".join(t.name for t in Base.metadata.sorted_tables)
        with cleaner.transaction() as session:
            session.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    finally:
        cleaner.dispose()


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    """A `Database` on a migrated, empty database (SQLite, then PostgreSQL)."""
    db = Database(database_url)
    try:
        yield db
    finally:
        db.dispose()


@pytest.fixture
def cipher() -> SecretCipher:
    """A cipher with a fixed test key."""
    return SecretCipher("a test key, not a secret")


@pytest.fixture
def kept() -> KeptJobs:
    """What the service layer's dispatcher was sent."""
    return KeptJobs()


@pytest.fixture
def services(database: Database, tmp_path: Path, kept: KeptJobs) -> Services:
    """The service layer on the test database, its data dir under tmp_path."""
    return kept_services(database, tmp_path / "data", kept)


@pytest.fixture
def project(tmp_path: Path) -> Project:
    """A git project with its bare origin, under tmp_path."""
    return Project(tmp_path / "repos")


@pytest.fixture
def repository(services: Services, project: Project) -> RepositoryRead:
    """`project` registered with the service layer (a GitHub repository)."""
    return register(services, project)
