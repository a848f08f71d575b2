"""The development setup: `docker-compose.dev.yml` and kapal's `Dockerfile`.

No Docker engine runs here, so the services are not started: the file is checked for the
services and keys the setup needs, every `KAPAL_*` variable it sets is checked to be a real
setting that parses, the Dockerfile is parsed by kapal's own builder, and `docker-compose
config` validates the file when the compose tool is installed (Debian's `docker-compose`)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from runner.build.dockerfile import parse_dockerfile
from web.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.dev.yml"


def _compose() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(loaded, dict)
    return loaded


def test_the_compose_file_has_web_a_privileged_worker_postgres_redis_and_a_registry() -> None:
    services = _compose()["services"]
    assert {"web", "worker", "postgres", "redis", "registry", "migrate"} <= set(services)
    web, worker = services["web"], services["worker"]
    assert worker["privileged"] is True
    assert worker["command"][0] == "worker" and "--queues" in worker["command"]
    assert web["command"][:1] == ["serve"] and "--no-worker" in web["command"]
    for service in (web, worker, services["migrate"]):
        env = service["environment"]
        assert env["KAPAL_DATABASE_URL"].startswith("postgresql+psycopg://")
        assert "@postgres:5432/" in env["KAPAL_DATABASE_URL"]
        assert env["KAPAL_BROKER_URL"].startswith("redis://redis:6379")
        assert service["build"] == "." or service["build"] == {"context": "."}
    # artifacts and caches: one volume both web and every worker mount at the shared dir
    shared = web["environment"]["KAPAL_SHARED_DIR"]
    for service in (web, worker):
        assert f"shared:{shared}" in service["volumes"]
    assert "shared" in _compose()["volumes"]
    assert worker["environment"]["KAPAL_SHARE_REGISTRY"].startswith("registry:5000/")
    for service in (web, worker):
        assert service["depends_on"]["migrate"]["condition"] == "service_completed_successfully"


def test_every_kapal_variable_of_the_compose_file_is_a_setting_that_parses(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    env: dict[str, str] = _compose()["services"]["worker"]["environment"]
    fields = {name.upper() for name in Settings.model_fields}
    aliases = {
        str(f.validation_alias).upper()
        for f in Settings.model_fields.values()
        if f.validation_alias
    }
    for name, value in env.items():
        assert name.startswith("KAPAL_")
        assert name.removeprefix("KAPAL_") in fields or name in aliases, name
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("KAPAL_DATA_DIR", str(tmp_path))
    settings = Settings()
    assert settings.shared_dir == Path(env["KAPAL_SHARED_DIR"])
    assert settings.artifacts_dir == Path(env["KAPAL_SHARED_DIR"]) / "artifacts"
    assert settings.share_registry == "registry:5000/kapal"
    assert settings.insecure_registries == ["registry:5000"]
    assert settings.pull_registries == ["registry:5000"]


def test_the_dockerfile_parses_with_kapals_builder_and_copies_what_exists() -> None:
    dockerfile = parse_dockerfile((ROOT / "Dockerfile").read_text(), "Dockerfile")
    text = (ROOT / "Dockerfile").read_text()
    copied = [
        word
        for line in text.splitlines()
        if line.startswith("COPY ")
        for word in line.split()[1:-1]
    ]
    assert copied and all((ROOT / path).exists() for path in copied), copied
    assert dockerfile is not None
    assert 'ENTRYPOINT ["kapal"]' in text


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose not installed")
def test_docker_compose_config_accepts_the_file() -> None:
    done = subprocess.run(
        ["docker-compose", "-f", str(COMPOSE), "config", "--quiet"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
