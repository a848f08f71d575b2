"""The build-test-ship example through `kapal run`, as the README's main command runs it.

Building the Redis service image runs `apt-get install redis-server` once (cached afterwards), so
these tests cost about a minute cold on 2 cores; they share the session's debian:bookworm.
"""

from __future__ import annotations

import json
import shutil
import urllib.request
from pathlib import Path

import pytest

from tests.e2e.conftest import REPO, kapal
from tests.support.registry import free_port

EXAMPLE = REPO / "examples" / "hello-app"


@pytest.mark.slow
def test_the_example_pipeline_passes(debian_image: str, kapal_env: dict[str, str]) -> None:
    port = free_port()  # not 18080: a demo may be serving there
    try:
        done = kapal("run", str(EXAMPLE), "--var", f"STAGING_PORT={port}", env=kapal_env)
        _check_example_output(done.stdout, done.stderr, done.returncode, port)
    finally:
        kapal("services", "stop", "hello-staging", env=kapal_env)


def _check_example_output(out: str, err: str, code: int, port: int) -> None:
    assert code == 0, out + err
    assert "==> app-image: success" in out and "==> redis-image: success" in out
    assert "==> unit: success" in out and "==> integration: success" in out
    assert "[integration] kapal: waiting for hello-redis:bookworm to listen on 6379" in out
    assert "5/5 passed" in out and "3/3 passed" in out  # the JUnit reports were read
    assert "==> ship: success" in out and "[ship] kapal: hello-staging is healthy" in out
    assert "==> production: manual" in out  # the approval gate waits to be played
    assert "success in" in out.splitlines()[-1]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/?name=Ada", timeout=10) as answer:
        assert json.load(answer) == {"message": "Hello, Ada!"}


@pytest.mark.slow
def test_a_failing_unit_test_fails_the_pipeline_at_that_job(
    debian_image: str, kapal_env: dict[str, str], tmp_path: Path
) -> None:
    project = tmp_path / "hello-app"
    shutil.copytree(EXAMPLE, project)
    test_file = project / "tests" / "test_unit.py"
    test_file.write_text(test_file.read_text().replace('"Hello, Ada!")', '"Hello, Bob!")', 1))
    done = kapal("run", str(project), env=kapal_env)
    out = done.stdout
    assert done.returncode == 1, out + done.stderr
    assert "[unit] FAIL: test_greets_by_name" in out
    unit_line = next(line for line in out.splitlines() if line.startswith("==> unit: failed"))
    assert unit_line.endswith("- exited with code 1")
    assert "4/5 passed" in out
    assert "==> integration: success" in out  # same stage, does not need unit
    assert "==> ship: skipped - unit failed" in out
    assert "pipeline #" in out.splitlines()[-1] and "failed" in out.splitlines()[-1]


def test_bad_input_is_a_clear_error(kapal_env: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / ".kapal.yml").write_text("unit:\n  script: [echo hi]\n  image: nope:1\n")
    done = kapal("run", str(tmp_path), env=kapal_env)
    assert done.returncode == 2
    assert "images not in the local store" in done.stderr and "nope:1 (used by unit)" in done.stderr
    assert "Traceback" not in done.stderr
    done = kapal("run", str(tmp_path), "--job", "lint", env=kapal_env)
    assert done.returncode == 2 and "no job named 'lint'" in done.stderr
    (tmp_path / ".kapal.yml").write_text("unit:\n  script: [echo hi\n")
    done = kapal("run", str(tmp_path), env=kapal_env)
    assert done.returncode == 2 and ".kapal.yml:" in done.stderr
    assert "Traceback" not in done.stderr
