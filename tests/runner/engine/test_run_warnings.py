"""`kapal run` prints the plan's warnings before anything runs."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from runner.images import ImageStore, bootstrap_busybox
from runner.settings import RunnerSettings
from web.cli import build_app

PIPELINE = """\
image: busybox:latest
unit:
  id_tokens:
    VAULT_ID_TOKEN: {aud: https://vault.example.com}
  script: [echo hi]
"""


def test_run_prints_the_plans_warnings_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "data"
    monkeypatch.setenv("KAPAL_DATA_DIR", str(data))
    bootstrap_busybox(ImageStore(RunnerSettings(data_dir=data).images_dir), "busybox:latest")
    project = tmp_path / "project"
    project.mkdir()
    (project / ".gitlab-ci.yml").write_text(PIPELINE)
    result = CliRunner().invoke(build_app(), ["run", str(project), "--dry-run"])
    assert result.exit_code == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith(str(project / ".gitlab-ci.yml:3:3: warning:")), lines
    assert "id_tokens" in lines[0]
    assert any("dry run: 1 job(s) would run" in line for line in lines)
