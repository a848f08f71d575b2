"""The service's settings: defaults in the data dir, URL checks, the generated encryption key."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError
from sqlalchemy import text

from tests.support.threads import run_at_once
from web.db.migrate import ensure_migrated
from web.db.session import Database
from web.errors import SecretKeyError
from web.settings import Settings


def test_defaults_live_in_the_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("KAPAL_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("KAPAL_DATA_DIR", str(tmp_path))
    settings = Settings()
    assert settings.database_url == f"sqlite:///{tmp_path}/kapal.db"
    assert settings.broker_url == f"sqla+sqlite:///{tmp_path}/broker.db"
    assert settings.uses_sqlite
    assert settings.webhook_body_limit == 4 * 1024 * 1024
    assert settings.public_reads
    assert settings.server_url == "http://127.0.0.1:8080"


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("KAPAL_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("KAPAL_DATABASE_URL", "postgresql://kapal:pw@db.local/kapal")
    monkeypatch.setenv("KAPAL_BROKER_URL", "redis://127.0.0.1:6379/0")
    monkeypatch.setenv("KAPAL_PUBLIC_READS", "false")
    monkeypatch.setenv("KAPAL_WEBHOOK_BODY_LIMIT", "1024")
    monkeypatch.setenv("KAPAL_PUBLIC_URL", "https://ci.example/")
    settings = Settings()
    assert settings.database_url == "postgresql+psycopg://kapal:pw@db.local/kapal"
    assert not settings.uses_sqlite
    assert settings.broker_url == "redis://127.0.0.1:6379/0"
    assert not settings.public_reads
    assert settings.webhook_body_limit == 1024
    assert settings.server_url == "https://ci.example"


@pytest.mark.parametrize("url", ["mysql://x/y", "kapal.db", "oracle+cx://a"])
def test_an_unsupported_database_is_refused(tmp_path: Path, url: str) -> None:
    with pytest.raises(ValidationError, match="kapal runs on SQLite"):
        Settings(data_dir=tmp_path, database_url=url)


def test_the_key_is_generated_once_with_mode_0600(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    key = settings.encryption_key()
    path = tmp_path / "data" / "secret.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(key) >= 40
    assert Settings(data_dir=tmp_path / "data").encryption_key() == key
    assert sorted(p.name for p in path.parent.iterdir()) == ["secret.key"]


def test_concurrent_first_starts_agree_on_one_key(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    keys = run_at_once(8, lambda _: settings.encryption_key())
    assert all(isinstance(k, str) for k in keys), keys
    assert len(set(keys)) == 1


def test_a_set_key_wins_and_writes_nothing(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, secret_key=SecretStr("from the environment"))
    assert settings.encryption_key() == "from the environment"
    assert not (tmp_path / "secret.key").exists()
    with pytest.raises(SecretKeyError, match="empty"):
        Settings(data_dir=tmp_path, secret_key=SecretStr("  ")).encryption_key()


def test_a_symlinked_key_file_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_text("attacker chosen key\n")
    data = tmp_path / "data"
    data.mkdir()
    (data / "secret.key").symlink_to(target)
    with pytest.raises(SecretKeyError, match="symlink"):
        Settings(data_dir=data).encryption_key()
    assert target.read_text() == "attacker chosen key\n"


def test_an_emptied_key_file_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "secret.key").write_text("")
    with pytest.raises(SecretKeyError, match="is empty"):
        Settings(data_dir=tmp_path).encryption_key()


def test_the_embedded_database_is_private(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    ensure_migrated(settings)
    database = Database(settings.database_url)
    try:
        with database.transaction() as session:
            session.execute(text("SELECT 1"))
    finally:
        database.dispose()
    files = sorted((tmp_path / "data").iterdir())
    assert [f.name for f in files][:1] == ["kapal.db"]
    assert {stat.S_IMODE(f.stat().st_mode) for f in files} == {0o600}


def test_the_key_comes_from_kapal_encryption_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not KAPAL_SECRET_KEY: `kapal run` hands every KAPAL_SECRET_* variable to jobs."""
    monkeypatch.setenv("KAPAL_SECRET_KEY", "a job secret named KEY")
    assert Settings(data_dir=tmp_path).secret_key is None
    monkeypatch.setenv("KAPAL_ENCRYPTION_KEY", "the server's key")
    assert Settings(data_dir=tmp_path).encryption_key() == "the server's key"
    assert Settings(data_dir=tmp_path, secret_key=SecretStr("given")).encryption_key() == "given"
    assert not (tmp_path / "secret.key").exists()
