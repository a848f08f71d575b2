"""`kapal run` on the real runtime, in-process: the working tree is copied unless `--in-place`."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

from runner.settings import RunnerSettings
from web.cli import build_app

PIPELINE = """
image: busybox:latest
touches:
  script: [echo made > made.txt, rm keep.txt]
"""


@pytest.fixture
def project(
    tmp_path: Path,
    kapal_settings: RunnerSettings,
    busybox_image: str,
    monkeypatch: pytest.MonkeyPatch,
) -> Path:
    monkeypatch.setenv("KAPAL_DATA_DIR", str(kapal_settings.data_dir))
    root = tmp_path / "project"
    root.mkdir()
    (root / ".kapal.yml").write_text(PIPELINE)
    (root / "keep.txt").write_text("mine\n")
    return root


def kapal(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(build_app(), list(args))
    return result.exit_code, result.stdout + result.stderr


def test_a_run_works_on_a_copy_of_the_tree(project: Path) -> None:
    code, out = kapal("run", str(project))
    assert code == 0, out
    assert "[touches] $ echo made > made.txt" in out
    assert (project / "keep.txt").read_text() == "mine\n"
    assert not (project / "made.txt").exists()


def test_in_place_lets_jobs_change_the_tree(project: Path) -> None:
    code, out = kapal("run", "--in-place", str(project))
    assert code == 0, out
    assert (project / "made.txt").read_text() == "made\n"
    assert not (project / "keep.txt").exists()


def test_a_missing_project_is_named(tmp_path: Path) -> None:
    code, out = kapal("run", str(tmp_path / "nowhere"))
    assert code == 2
    assert f"{tmp_path / 'nowhere'}: no such file or directory" in out
    assert "Traceback" not in out


FLAGS_PIPELINE = """
stages: [build, test]
image: busybox:latest
count:
  stage: build
  cache: {key: "counter-TOKEN", paths: [.c/]}
  script:
    - mkdir -p .c
    - echo "runs=$(cat .c/n 2>/dev/null || echo 0)"
    - echo $(( $(cat .c/n 2>/dev/null || echo 0) + 1 )) > .c/n
gate:
  stage: test
  when: manual
  script: [echo gate ran]
release-only:
  stage: test
  rules: [{if: '$CI_COMMIT_BRANCH == "release" && $CI_PIPELINE_SOURCE == "schedule"'}]
  script: [echo release ran]
"""


def test_run_flags_reach_the_engine(project: Path) -> None:
    # the data dir is the session's: a key of this test's own starts with no cache
    (project / ".kapal.yml").write_text(FLAGS_PIPELINE.replace("TOKEN", uuid.uuid4().hex))
    code, out = kapal("run", str(project), "--jobs", "1")
    assert code == 0, out
    assert "[count] runs=0" in out and "==> gate: manual" in out
    assert "gate ran" not in out.replace("echo gate ran", "")
    assert "release ran" not in out.replace("echo release ran", "")

    code, out = kapal("run", str(project), "--no-cache")
    assert code == 0 and "[count] runs=0" in out, out  # not restored (and not saved)

    code, out = kapal(
        "run", str(project), "--manual", "--branch", "release", "--source", "schedule"
    )
    assert code == 0, out
    # release is not the default branch: its caches are kept apart (GitLab's -non_protected)
    assert "[count] runs=0" in out and "[gate] gate ran" in out
    assert "[release-only] release ran" in out

    code, out = kapal("run", str(project), "--stage", "build")
    assert code == 0 and "[count] runs=1" in out, out
    assert "==> gate: skipped" in out and "[gate]" not in out
