"""`kapal token create` on the server's database, and the app made without a given service
layer (as `create_app(settings)` alone makes it)."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from tests.web.api.conftest import TestClient
from web.app import create_app
from web.cli import build_app
from web.db.session import Database
from web.db.tokens import verify_token
from web.settings import Settings


def test_token_create_prints_a_token_the_database_knows(tmp_path: Path) -> None:
    env = {"KAPAL_DATA_DIR": str(tmp_path), "KAPAL_SECRET_KEY": "k"}
    made = CliRunner().invoke(build_app(), ["token", "create", "ci", "--scope", "read"], env=env)
    assert made.exit_code == 0, made.output
    plaintext = made.stdout.strip()
    assert plaintext.startswith("kapal_")
    database = Database(f"sqlite:///{tmp_path / 'kapal.db'}")
    try:
        with database.transaction() as session:
            token = verify_token(session=session, plaintext=plaintext)
    finally:
        database.dispose()
    assert token is not None
    assert (token.name, [s.value for s in token.scopes]) == ("ci", ["read"])
    again = CliRunner().invoke(build_app(), ["token", "create", "ci"], env=env)
    assert again.exit_code == 1
    assert again.stderr.strip() == (
        "kapal token create: a token named 'ci' already exists; revoke it or pick another name"
    )
    bad = CliRunner().invoke(build_app(), ["token", "create", "x", "--scope", "root"], env=env)
    assert bad.exit_code == 2
    assert "read, write, admin" in bad.stderr


def test_the_app_makes_its_own_services(tmp_path: Path, database_url: str) -> None:
    settings = Settings(data_dir=tmp_path, database_url=database_url, secret_key="k")
    with TestClient(create_app(settings)) as client:
        assert client.get("/healthz").json()["status"] == "ok"
        assert client.get("/api/v1/pipelines").json() == {"items": [], "next_cursor": None}
