"""`kapal run` without containers: --list, --dry-run, bad input, option parsing."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipeline.plan import BuildSpec, DeploySpec, EnvironmentSpec, TriggerSpec
from runner.cli import ships
from runner.images import ImageStore, bootstrap_busybox
from runner.settings import RunnerSettings
from tests.runner.engine.conftest import job, plan
from web.cli import build_app

PIPELINE = """
stages: [build, test, ship]
image: busybox:latest
compile:
  stage: build
  script: [make]
unit:
  stage: test
  image: $TEST_IMAGE
  script: [make test]
release:
  stage: ship
  when: manual
  script: [echo release]
ship:
  stage: ship
  deploy: {image: "app:1", to: "r.test/app:1"}
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    data = tmp_path / "data"
    monkeypatch.setenv("KAPAL_DATA_DIR", str(data))
    bootstrap_busybox(ImageStore(RunnerSettings(data_dir=data).images_dir), "busybox:latest")
    root = tmp_path / "project"
    root.mkdir()
    (root / ".kapal.yml").write_text(PIPELINE)
    return root


def kapal(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(build_app(), list(args))
    return result.exit_code, result.stdout, result.stderr


def test_list_shows_every_job(project: Path) -> None:
    code, out, err = kapal("run", str(project), "--list", "--var", "TEST_IMAGE=busybox:latest")
    assert code == 0, out + err
    for name in ("compile", "unit", "release", "ship"):
        assert name in out
    assert "deploy: app:1 to r.test/app:1" in out and "manual" in out


def test_dry_run_checks_images_after_expanding_variables(project: Path) -> None:
    code, out, _ = kapal("run", str(project), "--dry-run", "--var", "TEST_IMAGE=busybox:latest")
    assert code == 0 and "dry run: 4 job(s) would run" in out
    code, _, err = kapal("run", str(project), "--dry-run", "--var", "TEST_IMAGE=missing:2")
    assert code == 2
    assert "missing:2 (used by unit)" in err and "kapal image bootstrap" in err


def test_unknown_job_and_bad_var(project: Path) -> None:
    code, _, err = kapal("run", str(project), "--dry-run", "--job", "nope")
    assert code == 2 and "no job named 'nope'" in err
    code, _, err = kapal("run", str(project), "--var", "NOVALUE")
    assert code == 2 and "expected NAME=value" in err


def test_pipeline_errors_name_the_file_and_line(project: Path) -> None:
    (project / ".kapal.yml").write_text("unit:\n  script: echo\n  when: sometimes\n")
    code, _, err = kapal("run", str(project), "--list")
    assert code == 2 and ".kapal.yml:3" in err and "Traceback" not in err


def test_missing_pipeline_file_and_secrets_file(project: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = kapal("run", str(empty), "--list")
    assert code == 2 and ".kapal.yml" in err
    code, _, err = kapal("run", str(project), "--list", "--secrets-file", str(tmp_path / "nope"))
    assert code == 2 and "cannot read the secrets file" in err


@pytest.mark.parametrize(
    ("fields", "needed"),
    [
        ({}, False),
        ({"environment": EnvironmentSpec(name="review")}, True),  # its deployment record
        ({"deploy": DeploySpec(image="app:1")}, True),
        ({"build": BuildSpec(push=True)}, True),
        ({"trigger": TriggerSpec()}, True),  # a child pipeline may deploy
    ],
)
def test_only_a_pipeline_that_may_ship_gets_the_shipper(
    fields: dict[str, object], needed: bool
) -> None:
    assert ships(plan(job("a"), job("b", **fields))) is needed
