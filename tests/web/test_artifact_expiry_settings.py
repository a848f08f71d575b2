"""KAPAL_ARTIFACTS_EXPIRE_IN: a duration as `artifacts: expire_in:` takes it, or `never`; anything
else refused at start with one line; and `kapal worker --expire-artifacts`, the one-shot sweep."""

from __future__ import annotations

import shutil
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from tests.web.api.test_serve import KAPAL, START_COMMANDS, _env, refused_at_start
from tests.web.service_support import kept_services
from tests.web.test_artifact_expiry import Scene
from web.db.repos import create_repository
from web.db.schemas import Provider, RepositoryCreate
from web.db.session import Database
from web.settings import Settings


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("30 days", 30 * 86400), ("1 week", 604800), ("3600", 3600), ("never", None), ("Never", None)],
)
def test_a_duration_or_never_is_taken(tmp_path: Path, value: str, seconds: int | None) -> None:
    settings = Settings(data_dir=tmp_path, artifacts_expire_in=value)
    assert settings.artifacts_expire_seconds == seconds


def test_the_default_is_thirty_days(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KAPAL_ARTIFACTS_EXPIRE_IN", raising=False)
    assert Settings(data_dir=tmp_path).artifacts_expire_seconds == 30 * 86400


@pytest.mark.parametrize("value", ["soon", "", "0", "0 days", "1 fortnight", "-1 day", "9" * 20])
def test_anything_else_is_refused_naming_the_setting(tmp_path: Path, value: str) -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(data_dir=tmp_path, artifacts_expire_in=value)
    message = caught.value.errors()[0]["msg"]
    assert f"KAPAL_ARTIFACTS_EXPIRE_IN={value!r} is not a duration" in message
    assert '"never"' in message


@given(st.text(max_size=40))
def test_any_text_is_a_duration_never_or_refused(value: str) -> None:
    try:
        settings = Settings(data_dir=Path("/nonexistent/kapal"), artifacts_expire_in=value)
    except ValidationError:
        return
    seconds = settings.artifacts_expire_seconds
    assert seconds is None if value.strip().lower() == "never" else seconds and seconds > 0


def test_serve_and_worker_refuse_a_bad_value_with_one_line(
    tmp_path: Path, migrated_sqlite: Path
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    shutil.copyfile(migrated_sqlite, data / "kapal.db")
    commands = {**START_COMMANDS, ("worker", "--expire-artifacts"): (2, "error: ")}
    env = {"KAPAL_ARTIFACTS_EXPIRE_IN": "a while"}
    for line in refused_at_start(data, env, commands):
        assert "KAPAL_ARTIFACTS_EXPIRE_IN='a while' is not a duration" in line


def test_expire_artifacts_once_sweeps_and_exits(tmp_path: Path, migrated_sqlite: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    shutil.copyfile(migrated_sqlite, data / "kapal.db")
    database = Database(f"sqlite:///{data / 'kapal.db'}")
    try:
        services = kept_services(database, data)
        with database.transaction() as session:
            repository = create_repository(
                session=session,
                cipher=services.cipher(),
                new=RepositoryCreate(
                    name="acme/shop",
                    clone_url="https://example.test/shop.git",
                    provider=Provider.GITHUB,
                    webhook_secret="s",
                ),
            )
        scene = Scene(services, repository.id)
        (expired,) = scene.pipeline(status="failed")
        (young,) = scene.pipeline(status="failed", expire_in=timedelta(days=1))
    finally:
        database.dispose()
    done = subprocess.run(
        [*KAPAL, "worker", "--expire-artifacts"],
        env=_env(data),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "removed the expired artifacts of 1 job attempt(s)"
    assert not scene.tree(expired).exists()
    assert scene.tree(young).is_dir()
