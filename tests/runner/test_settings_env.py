"""`EnvSettings` and `ShipEnv` (no pydantic, for `kapal run`) against the pydantic-settings readers.

`RunnerSettings` and `ShipSettings` are kapal's settings classes; `kapal run` reads the same
variables without importing pydantic. These tests keep the two readers equal: the same fields, the
same values for the same environment, and a refusal of what pydantic-settings refuses.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest
from pydantic import ValidationError
from pydantic_settings import SettingsError

from runner.errors import RunnerError
from runner.settings import RunnerSettings
from runner.settings_env import EnvSettings
from runner.ship.local import ShipEnv
from runner.ship.settings import ShipSettings

ACCEPTED = [
    {},
    {"KAPAL_DATA_DIR": "/srv/kapal", "KAPAL_RUNTIME": "crun"},
    {"kapal_job_cpus": "1.5", "KAPAL_JOB_PIDS": " 100 ", "KAPAL_JOB_MEMORY": "2g"},
    {"KAPAL_MAX_JOB_CPUS": "16", "KAPAL_MAX_JOB_PIDS": "9", "KAPAL_MAX_JOB_MEMORY": "32g"},
    {"KAPAL_INSECURE_REGISTRIES": '["localhost:5000", "r.test"]', "KAPAL_PULL_REGISTRIES": "[]"},
    {"KAPAL_REGISTRY_AUTH_FILE": "/etc/kapal/auth.json", "KAPAL_JOB_DISK": "none"},
    {"KAPAL_MAX_JOB_TIMEOUT": "1h 30m", "KAPAL_BUILD_CACHE_MAX": "5g"},
    *({"KAPAL_ALLOW_HOST_NETWORK": word} for word in ("0", "off", "No", "TRUE", "y", "on", "1")),
    {"KAPAL_SERVICE_HEALTH_TIMEOUT": "5", "KAPAL_SERVICE_DRAIN": "0", "KAPAL_SERVICE_PORTS": "1-9"},
    {"KAPAL_UNRELATED": "x", "OTHER": "y"},
    {"KAPAL_GITLAB_URL": "https://gitlab.example.com", "kapal_gitlab_token": "glpat-x"},
    {"KAPAL_JOB_ALLOWED_NETWORKS": "192.0.2.10/32, 10.20.0.0/16"},
]

REFUSED = [
    {"KAPAL_JOB_CPUS": "many"},
    {"KAPAL_JOB_CPUS": "0"},
    {"KAPAL_MAX_JOB_PIDS": "-1"},
    {"KAPAL_JOB_PIDS": "1.5x"},
    {"KAPAL_ALLOW_HOST_NETWORK": "maybe"},
    {"KAPAL_PULL_REGISTRIES": "r.test"},
    {"KAPAL_INSECURE_REGISTRIES": "[1, 2]"},
]

SHIP_REFUSED = [
    {"KAPAL_SERVICE_HEALTH_TIMEOUT": "0"},
    {"KAPAL_SERVICE_DRAIN": "-1"},
    {"KAPAL_SERVICE_DRAIN": "soon"},
]


def _environ(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    for key in [k for k in os.environ if k.lower().startswith("kapal_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)


def test_the_same_fields() -> None:
    assert {f.name for f in dataclasses.fields(EnvSettings)} == set(RunnerSettings.model_fields)
    assert {f.name for f in dataclasses.fields(ShipEnv)} == set(ShipSettings.model_fields)


@pytest.mark.parametrize("env", ACCEPTED)
def test_the_same_values(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    _environ(monkeypatch, env)
    expected = RunnerSettings()
    got = EnvSettings.from_environ(env)
    assert dataclasses.asdict(got) == expected.model_dump()
    assert got.container_policy() == expected.container_policy()
    assert (got.images_dir, got.containers_dir, got.build_cache_dir) == (
        expected.images_dir,
        expected.containers_dir,
        expected.build_cache_dir,
    )
    assert dataclasses.asdict(ShipEnv.from_environ(env)) == ShipSettings().model_dump()


@pytest.mark.parametrize("env", REFUSED)
def test_the_same_refusals(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    _environ(monkeypatch, env)
    with pytest.raises((ValidationError, SettingsError)):
        RunnerSettings()
    name = next(iter(env))
    with pytest.raises(RunnerError, match=name):  # one line naming the variable
        EnvSettings.from_environ(env)


@pytest.mark.parametrize("env", SHIP_REFUSED)
def test_the_same_ship_refusals(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    _environ(monkeypatch, env)
    with pytest.raises(ValidationError):
        ShipSettings()
    with pytest.raises(RunnerError, match=next(iter(env))):
        ShipEnv.from_environ(env)


def test_the_default_data_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _environ(monkeypatch, {})
    monkeypatch.setenv("HOME", str(tmp_path))
    assert EnvSettings.from_environ({}).data_dir == RunnerSettings().data_dir
    assert RunnerSettings().data_dir == tmp_path / ".local" / "share" / "kapal"
