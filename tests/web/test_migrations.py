"""Migrations: up from empty and down to empty on both databases, models and revisions agree,
`kapal migrate`, and the start-up check `kapal serve` makes."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from tests.support.services import PostgresServer
from web.db.migrate import (
    check_migrated,
    current_revision,
    downgrade,
    ensure_migrated,
    head_revision,
    upgrade,
)
from web.db.models import Base
from web.db.session import make_engine
from web.errors import DatabaseError, NotMigratedError
from web.settings import Settings

KAPAL = Path(sys.executable).parent / "kapal"


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of an empty database: a new SQLite file, then a new PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'kapal.db'}"
        return
    postgres: PostgresServer = request.getfixturevalue("postgres")
    with postgres.database() as url:
        yield url


def _tables(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_upgrade_from_empty_and_downgrade_to_empty(empty_url: str) -> None:
    assert _tables(empty_url) == set()
    assert current_revision(empty_url) is None
    upgrade(empty_url)
    assert _tables(empty_url) == set(Base.metadata.tables) | {"alembic_version"}
    assert current_revision(empty_url) == head_revision()
    downgrade(empty_url, "base")
    assert _tables(empty_url) == {"alembic_version"}
    assert current_revision(empty_url) is None
    upgrade(empty_url)  # and up again from there
    assert current_revision(empty_url) == head_revision()


def test_models_match_the_migrations(empty_url: str) -> None:
    """What `alembic check` does: autogenerate against the migrated schema finds nothing."""
    upgrade(empty_url)
    engine = make_engine(empty_url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            diff = compare_metadata(context, Base.metadata)
    finally:
        engine.dispose()
    assert diff == []


def test_check_refuses_an_unmigrated_database(tmp_path: Path, postgres: PostgresServer) -> None:
    with postgres.database() as url:
        settings = Settings(data_dir=tmp_path, database_url=url)
        with pytest.raises(NotMigratedError, match="run `kapal migrate`") as refused:
            check_migrated(settings)
        assert "\n" not in str(refused.value)
        assert postgres.password not in str(refused.value)
        with pytest.raises(NotMigratedError, match="run `kapal migrate`"):
            ensure_migrated(settings)  # a server database is never migrated behind one's back
        upgrade(url)
        check_migrated(settings)
        ensure_migrated(settings)


def test_the_embedded_database_migrates_itself(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    with pytest.raises(NotMigratedError):
        check_migrated(settings)
    ensure_migrated(settings)
    check_migrated(settings)
    assert current_revision(settings.database_url) == head_revision()


def test_a_database_from_a_newer_kapal_is_refused(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    ensure_migrated(settings)
    engine = make_engine(settings.database_url)
    try:
        with engine.begin() as connection:
            connection.exec_driver_sql("UPDATE alembic_version SET version_num = 'ffff'")
    finally:
        engine.dispose()
    with pytest.raises(NotMigratedError, match="ffff"):
        check_migrated(settings)
    with pytest.raises(NotMigratedError, match="cannot migrate"):
        ensure_migrated(settings)


def _kapal(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("KAPAL_")}
    return subprocess.run(
        [str(KAPAL), *args], env=environ | env, capture_output=True, text=True, timeout=300
    )


def test_kapal_migrate(tmp_path: Path, postgres: PostgresServer) -> None:
    data = str(tmp_path)
    refused = _kapal("migrate", "--check", KAPAL_DATA_DIR=data)
    assert refused.returncode == 1
    assert "run `kapal migrate`" in refused.stderr and "Traceback" not in refused.stderr
    done = _kapal("migrate", KAPAL_DATA_DIR=data)
    assert done.returncode == 0, done.stderr
    assert f"migrated from revision none to {head_revision()}" in done.stdout
    again = _kapal("migrate", KAPAL_DATA_DIR=data)
    assert again.returncode == 0 and "already at revision" in again.stdout
    assert _kapal("migrate", "--check", KAPAL_DATA_DIR=data).returncode == 0
    with postgres.database() as url:
        on_postgres = _kapal("migrate", KAPAL_DATA_DIR=data, KAPAL_DATABASE_URL=url)
        assert on_postgres.returncode == 0, on_postgres.stderr
        assert current_revision(url) == head_revision()
        assert postgres.password not in on_postgres.stdout


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("postgresql://kapal_test:wrong@127.0.0.1:1/none", "cannot use the database at"),
        ("mysql://x/y", "kapal runs on SQLite"),
    ],
)
def test_kapal_migrate_errors_are_one_line(tmp_path: Path, url: str, message: str) -> None:
    failed = _kapal("migrate", KAPAL_DATA_DIR=str(tmp_path), KAPAL_DATABASE_URL=url)
    assert failed.returncode in (1, 2)
    assert message in failed.stderr
    assert len(failed.stderr.strip().splitlines()) == 1
    assert "wrong" not in failed.stderr  # the password


def test_kapal_version_imports_no_database_code() -> None:
    probe = (
        "import sys; from web.cli import build_app; "
        "build_app()(['version'], standalone_mode=False); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('sqlalchemy', 'alembic', 'psycopg', 'web')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    assert out.splitlines()[-1] == "['web', 'web.cli']"


def test_an_unreachable_database_is_one_line(tmp_path: Path) -> None:
    url = "postgresql+psycopg://kapal:hunter2-pw@127.0.0.1:1/kapal"
    with pytest.raises(DatabaseError, match="cannot use the database at") as refused:
        check_migrated(Settings(data_dir=tmp_path, database_url=url))
    assert "\n" not in str(refused.value)
    assert "hunter2" not in str(refused.value)
    with pytest.raises(DatabaseError, match="cannot use the database"):
        upgrade(url)


def test_a_data_dir_with_a_percent_sign(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "100% kapal")
    ensure_migrated(settings)
    assert current_revision(settings.database_url) == head_revision()
