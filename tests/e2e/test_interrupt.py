"""SIGINT to `kapal run` cancels the pipeline and leaves no container, mount or runc state."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from runner.settings import RunnerSettings
from tests.e2e.conftest import KAPAL, REPO, kapal
from tests.support.runtime_leftovers import data_dir_leftovers

PIPELINE = """
stages: [test, later]
image: busybox:latest
sleeper:
  stage: test
  script: [echo started, sleep 600]
  after_script: ["echo after_script saw $CI_JOB_STATUS"]
other:
  stage: test
  script: [sleep 600]
after:
  stage: later
  script: [echo never]
"""


def test_sigint_cancels_and_cleans_up(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = dict(os.environ, KAPAL_DATA_DIR=str(data))
    assert kapal("image", "bootstrap", "busybox", env=env).returncode == 0
    project = tmp_path / "project"
    project.mkdir()
    (project / ".kapal.yml").write_text(PIPELINE)
    settings = RunnerSettings(data_dir=data)
    proc = subprocess.Popen(
        [*KAPAL, "run", str(project)],
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        seen: list[str] = []
        for line in proc.stdout:
            seen.append(line)
            if line.strip() == "[sleeper] started":
                break
        assert seen and seen[-1].strip() == "[sleeper] started", "".join(seen)
        # a container's dirs are on its sandbox's disk (sb-*/ct-*) or, without one, beside it
        containers = [
            p.name.removeprefix("ct-")
            for p in [
                *settings.containers_dir.glob("ct-*"),
                *settings.containers_dir.glob("sb-*/ct-*"),
            ]
        ]
        assert containers  # the jobs' containers are running now
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    out = "".join(seen) + rest
    assert proc.returncode == 130, out
    assert "==> sleeper: canceled" in out and "==> after: canceled" in out
    # as in GitLab 17.0+, the canceled job's after_script still ran, told why
    assert "[sleeper] after_script saw canceled" in out
    assert "never" not in out.replace("echo never", "")
    assert "Traceback" not in out
    assert data_dir_leftovers(settings, containers) == []
