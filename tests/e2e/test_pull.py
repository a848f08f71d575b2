"""`kapal run` pulls a job's missing image from a configured registry (a real docker-registry)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from runner.images import ImageStore, RegistryClient
from runner.images.reference import Reference
from tests.e2e.conftest import kapal


def test_a_missing_job_image_is_pulled_from_the_pull_registry(
    registry: str, image_store: ImageStore, busybox_image: str, tmp_path: Path
) -> None:
    remote = Reference.parse(f"{registry}/tools/busybox:1")
    with RegistryClient(insecure=[registry]) as client:
        client.push(image_store, image_store.resolve(busybox_image), remote)
    project = tmp_path / "project"
    project.mkdir()
    (project / ".kapal.yml").write_text(
        f"unit:\n  image: {registry}/tools/busybox:1\n  script: [echo pulled-and-ran]\n"
    )
    env = dict(
        os.environ,
        KAPAL_DATA_DIR=str(tmp_path / "data"),  # an empty store: the image must be pulled
        KAPAL_PULL_REGISTRIES=json.dumps([registry]),
        KAPAL_INSECURE_REGISTRIES=json.dumps([registry]),
    )
    done = kapal("run", str(project), env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "[unit] pulled-and-ran" in done.stdout
    env.pop("KAPAL_PULL_REGISTRIES")
    (project / ".kapal.yml").write_text(
        f"unit:\n  image: {registry}/tools/other:1\n  script: [echo never]\n"
    )
    done = kapal("run", str(project), env=env)
    assert done.returncode == 2 and f"{registry}/tools/other:1 (used by unit)" in done.stderr
