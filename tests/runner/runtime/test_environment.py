"""`kapal exec`/`kapal gc` read KAPAL_DATA_DIR and KAPAL_RUNTIME as `RunnerSettings` does."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from runner.runtime.environment import RuntimeEnvironment
from runner.settings import RunnerSettings

REPO = Path(__file__).resolve().parents[3]

ENVIRONMENTS = [
    {},
    {"KAPAL_DATA_DIR": "/srv/kapal"},
    {"kapal_data_dir": "/srv/lower-case", "KAPAL_RUNTIME": "/usr/sbin/runc"},
    {"KAPAL_RUNTIME": "crun", "HOME": "/home/someone"},
]


@pytest.mark.parametrize("variables", ENVIRONMENTS)
def test_same_answers_as_runner_settings(
    variables: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("KAPAL_DATA_DIR", "KAPAL_RUNTIME", "kapal_data_dir"):
        monkeypatch.delenv(name, raising=False)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    light, full = RuntimeEnvironment.from_environ(), RunnerSettings()
    assert (light.data_dir, light.runtime) == (full.data_dir, full.runtime)
    assert (light.images_dir, light.containers_dir) == (full.images_dir, full.containers_dir)


def test_exec_path_does_not_import_pydantic_settings() -> None:
    # pydantic-settings costs about 0.2 s of imports: more than runc takes to run a container.
    probe = (
        "import sys, runner.runtime.cli, runner.runtime.embedded; "
        "print('pydantic_settings' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "False"
