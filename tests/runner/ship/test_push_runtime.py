"""`build: push:` and `deploy: to:` through `kapal run`, against real docker-registry instances."""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipeline.plan import DeploySpec, EnvironmentSpec, Job
from runner.images.reference import Reference
from runner.images.registry import RegistryClient
from runner.images.store import ImageStore
from runner.owners import local_owner
from runner.settings import RunnerSettings
from runner.ship.deployments import LocalDeployments
from runner.ship.settings import deployments_dir, local_shipper
from tests.support.registry import run_registry
from tests.support.token_server import run_token_server, token_auth_config
from web.cli import build_app

DOCKERFILE = 'FROM busybox:latest\nRUN echo "@STAMP@" > /stamp\n'

PIPELINE = """\
stages: [build, test, ship]
variables: {CI_REGISTRY: "@REG@"}
image-build:
  stage: build
  build: {tags: ["@REG@/ship/app:1", "@REG@/ship/app:latest"], push: true}
unit:
  stage: test
  image: @REG@/ship/app:1
  script: [grep -q @STAMP@ /stamp]
release:
  stage: ship
  environment: {name: @ENV@}
  deploy: {image: "@REG@/ship/app:1", to: "@REG@/ship/prod:1"}
"""


def kapal(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(build_app(), list(args))
    return result.exit_code, result.stdout + result.stderr


@pytest.fixture
def env(kapal_settings: RunnerSettings, busybox_image: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("KAPAL_DATA_DIR", str(kapal_settings.data_dir))
    for name in ("CI_REGISTRY_USER", "CI_REGISTRY_PASSWORD"):
        monkeypatch.delenv(f"KAPAL_SECRET_{name}", raising=False)
    return f"prod-{uuid.uuid4().hex[:8]}"


def make_project(root: Path, registry: str, environment: str) -> Path:
    root.mkdir(parents=True)
    stamp = uuid.uuid4().hex
    (root / "Dockerfile").write_text(DOCKERFILE.replace("@STAMP@", stamp))
    (root / ".kapal.yml").write_text(
        PIPELINE.replace("@REG@", registry).replace("@ENV@", environment).replace("@STAMP@", stamp)
    )
    return root


def test_push_and_deploy_to_ship_the_tested_digest(
    tmp_path: Path, registry: str, env: str, kapal_settings: RunnerSettings
) -> None:
    project = make_project(tmp_path / "p", registry, env)
    code, out = kapal("run", str(project))
    assert code == 0, out
    tested = ImageStore(kapal_settings.images_dir).for_owner(local_owner(project))
    digest = tested.resolve(f"{registry}/ship/app:1").digest
    for ref in (f"{registry}/ship/app:1", f"{registry}/ship/app:latest", f"{registry}/ship/prod:1"):
        assert f"pushed {ref}@{digest}" in out
        with RegistryClient() as client:
            pulled = client.pull(Reference.parse(ref), ImageStore(tmp_path / "pulled"))
        assert pulled.digest == digest
    assert f"deployed {digest} to {registry}/ship/prod:1" in out
    record = LocalDeployments(deployments_dir(kapal_settings.data_dir)).history(env)[-1]
    assert (record.kind, record.digest, record.target) == (
        "registry",
        digest,
        f"{registry}/ship/prod:1",
    )


def test_rollback_of_a_registry_deployment_pushes_the_earlier_digest(
    tmp_path: Path, registry: str, env: str, kapal_settings: RunnerSettings
) -> None:
    first = make_project(tmp_path / "a", registry, env)
    second = make_project(tmp_path / "b", registry, env)
    assert kapal("run", str(first))[0] == 0
    code, out = kapal("run", str(second))
    assert code == 0, out
    history = LocalDeployments(deployments_dir(kapal_settings.data_dir)).history(env)
    assert history[0].digest != history[1].digest
    code, out = kapal("rollback", env)
    assert code == 0, out
    with RegistryClient() as client:
        pulled = client.pull(
            Reference.parse(f"{registry}/ship/prod:1"), ImageStore(tmp_path / "pulled")
        )
    assert pulled.digest == history[0].digest


def test_refused_credentials_fail_the_push_in_one_line_and_record_nothing(
    tmp_path: Path, env: str, kapal_settings: RunnerSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    with (
        run_token_server(tmp_path, "alice-pusher", "right-password") as tokens,
        run_registry(tmp_path / "reg", auth=token_auth_config(tokens)) as address,
    ):
        project = make_project(tmp_path / "p", address, env)
        monkeypatch.setenv("KAPAL_SECRET_CI_REGISTRY_USER", "alice-pusher")
        monkeypatch.setenv("KAPAL_SECRET_CI_REGISTRY_PASSWORD", "wrong-password")
        code, out = kapal("run", str(project))
        assert code != 0
        line = next(x for x in out.splitlines() if f"push to {address}/ship/app:1 failed" in x)
        assert "credentials" in line and "Traceback" not in out
        assert "wrong-password" not in out
        assert LocalDeployments(deployments_dir(kapal_settings.data_dir)).history(env) == []

        # the repository's secrets are the credentials: the right password pushes
        monkeypatch.setenv("KAPAL_SECRET_CI_REGISTRY_PASSWORD", "right-password")
        code, out = kapal("run", str(project))
        assert code == 0, out
        assert re.search(rf"pushed {re.escape(address)}/ship/prod:1@sha256:[0-9a-f]{{64}}", out)
        users = {r["user"] for r in tokens.requests}
        assert users == {"alice-pusher"}


def test_an_unreachable_registry_fails_the_push_clearly(
    tmp_path: Path, env: str, kapal_settings: RunnerSettings
) -> None:
    project = make_project(tmp_path / "p", "127.0.0.1:9", env)  # nothing listens on port 9
    code, out = kapal("run", str(project))
    assert code != 0
    assert "push to 127.0.0.1:9/ship/app:1 failed: cannot reach registry 127.0.0.1:9" in out
    assert LocalDeployments(deployments_dir(kapal_settings.data_dir)).history(env) == []
    assert json.dumps(out).count("Traceback") == 0


def test_a_deploy_waits_for_the_one_in_progress_to_its_environment(
    registry: str, kapal_settings: RunnerSettings, image_store: ImageStore
) -> None:
    shipper = local_shipper(kapal_settings, image_store, "serial-test")
    environment = f"serial-{uuid.uuid4().hex[:8]}"
    job = Job(
        name="second",
        stage="deploy",
        base_name="second",
        environment=EnvironmentSpec(name=environment),
        deploy=DeploySpec(image="busybox:latest", to=f"{registry}/serial/app:1"),
    )
    lines: list[str] = []
    records = LocalDeployments(deployments_dir(kapal_settings.data_dir))
    deploying = threading.Thread(target=shipper.deploy_job, args=(job, {}, lines.append))
    with shipper._environment_lock(environment, print):  # another pipeline's deploy, under way
        deploying.start()
        deadline = time.monotonic() + 60
        while not any("waiting for another deploy" in x for x in lines):
            assert time.monotonic() < deadline, lines
            time.sleep(0.05)
        time.sleep(0.5)
        assert records.history(environment) == [] and deploying.is_alive()
    deploying.join()
    assert [d.job for d in records.history(environment)] == ["second"]
