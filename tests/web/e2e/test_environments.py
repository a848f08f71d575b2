"""Environments on the service, end to end on a real worker, runtime and registry: a manual
deploy job is an approval gate recorded with who played it, the API lists environments with
their current deployment and history, and a rollback through the API restores an earlier digest.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr
from starlette.exceptions import StarletteDeprecationWarning

from runner.images.reference import Reference
from runner.images.registry import RegistryClient
from runner.images.store import ImageStore
from runner.ship.settings import services_for
from tests.runner.ship.test_services_runtime import DOCKERFILE, get
from tests.support.registry import free_port
from tests.web.api.conftest import LiveServer
from tests.web.e2e.conftest import wait_for
from tests.web.test_mirrors import Project
from web.app import create_app
from web.db.environments import DeploymentRead, list_deployments, list_environments
from web.db.schemas import RepositoryRead
from web.orchestration import Services, create_pipeline_for_ref, play_job
from web.settings import Settings
from web.tasks import EmbeddedWorker

with warnings.catch_warnings():
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

ADMIN = "admin-environments-token"
AUTH = {"Authorization": f"Bearer {ADMIN}"}

PIPELINE = """\
stages: [build, ship]
image-build:
  stage: build
  build: {tags: ["app:1"]}
production:
  stage: ship
  when: manual
  environment: {name: production}
  deploy: {image: "app:1", to: "@REG@/acme/shop:production"}
"""


@pytest.fixture
def client(service_settings: Settings, services: Services) -> Iterator[TestClient]:
    settings = service_settings.model_copy(update={"admin_token": SecretStr(ADMIN)})
    with TestClient(create_app(settings, services=services), raise_server_exceptions=False) as c:
        yield c


def _ship(
    services: Services, project: Project, repository: RepositoryRead, registry: str, who: str
) -> tuple[int, str]:
    """Commit a new image, run its pipeline, play the gate as `who`; (pipeline id, digest)."""
    stamp = uuid.uuid4().hex
    project.commit(
        {
            ".kapal.yml": PIPELINE.replace("@REG@", registry),
            "Dockerfile": f'FROM busybox:latest\nRUN echo "{stamp}" > /stamp\n',
        }
    )
    project.push()
    pipeline_id = create_pipeline_for_ref(
        services=services, repository_id=repository.id, ref="main"
    ).id
    detail = wait_for(
        services,
        pipeline_id,
        until=lambda p: any(j.name == "production" and j.status == "manual" for j in p.jobs),
    )
    gate = next(j for j in detail.jobs if j.name == "production")
    before = len(_deployments(services, repository.id))
    time.sleep(0.5)  # the gate holds: nothing ships until it is played
    held = wait_for(services, pipeline_id, until=lambda p: True)
    assert next(j.status for j in held.jobs if j.name == "production") == "manual"
    assert len(_deployments(services, repository.id)) == before
    play_job(services=services, job_id=gate.id, who=who)
    detail = wait_for(
        services,
        pipeline_id,
        # the pipeline row and its jobs are read by two statements (two snapshots on
        # PostgreSQL): wait until both show the end
        until=lambda p: (
            p.status not in ("created", "pending", "running", "manual")
            and any(j.name == "production" and j.status == "success" for j in p.jobs)
        ),
    )
    assert detail.status == "success", detail.jobs
    store = ImageStore(services.settings.images_dir).for_owner(f"repo:{repository.id}")
    return pipeline_id, store.resolve("app:1").digest


def _deployments(services: Services, repository_id: int) -> list[DeploymentRead]:
    with services.database.transaction() as session:
        return [
            deployment
            for env in list_environments(session=session, repository_id=repository_id)
            for deployment in list_deployments(session=session, environment_id=env.id)
        ]


def test_manual_gate_deployments_api_and_rollback(
    services: Services,
    worker: EmbeddedWorker,
    project: Project,
    repository: RepositoryRead,
    registry: str,
    client: TestClient,
    tmp_path: Path,
) -> None:
    assert client.get("/api/v1/environments", headers=AUTH).json() == []
    first_pipeline, first = _ship(services, project, repository, registry, "alice-approver")
    second_pipeline, second = _ship(services, project, repository, registry, "bob-approver")
    assert first != second

    (env,) = client.get("/api/v1/environments", headers=AUTH).json()
    assert env["name"] == "production" and env["repository_id"] == repository.id
    current = env["current"]
    assert (current["digest"], current["pipeline_id"], current["approved_by"]) == (
        second,
        second_pipeline,
        "bob-approver",
    )
    history = client.get(f"/api/v1/environments/{env['id']}/deployments", headers=AUTH).json()
    assert [(d["digest"], d["approved_by"], d["kind"], d["pipeline_id"]) for d in history] == [
        (second, "bob-approver", "registry", second_pipeline),
        (first, "alice-approver", "registry", first_pipeline),
    ]
    anonymous = client.post(f"/api/v1/environments/{env['id']}/rollback", json={})
    assert anonymous.status_code == 401

    answer = client.post(f"/api/v1/environments/{env['id']}/rollback", headers=AUTH, json={})
    assert answer.status_code == 201, answer.text
    rolled = answer.json()
    assert (rolled["digest"], rolled["rollback_of"]) == (first, history[1]["id"])
    with RegistryClient() as registry_client:
        pulled = registry_client.pull(
            Reference.parse(f"{registry}/acme/shop:production"), ImageStore(tmp_path / "pulled")
        )
    assert pulled.digest == first
    (env,) = client.get("/api/v1/environments", headers=AUTH).json()
    assert env["current"]["id"] == rolled["id"]

    missing = client.post("/api/v1/environments/999999/rollback", headers=AUTH, json={})
    assert missing.status_code == 404
    refused = client.post(
        f"/api/v1/environments/{env['id']}/rollback", headers=AUTH, json={"to": 999999}
    )
    assert refused.status_code == 409 and "no deployment 999999" in refused.json()["error"]

    # `kapal rollback` against the server (KAPAL_HOST): back to the second deployment's digest
    settings = services.settings.model_copy(update={"admin_token": SecretStr(ADMIN)})
    server = LiveServer(settings, services, tmp_path / "run" / "kapal.sock")
    server.start()
    try:
        env_vars = {**os.environ, "KAPAL_HOST": server.url, "KAPAL_TOKEN": ADMIN}
        cli = [sys.executable, "-m", "web.cli", "rollback", "production"]
        done = subprocess.run(
            [*cli, "--to", str(history[0]["id"])], env=env_vars, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert f"rolls back to {history[0]['id']}" in done.stdout
        unknown = subprocess.run(
            [*cli[:-1], "staging"], env=env_vars, capture_output=True, text=True
        )
        assert unknown.returncode == 1
        assert "no environment named 'staging'" in unknown.stderr
        assert "Traceback" not in unknown.stderr
        # `kapal deployments` against the server: the environment and its history
        listed = subprocess.run(
            [*cli[:-2], "deployments"], env=env_vars, capture_output=True, text=True
        )
        assert listed.returncode == 0, listed.stderr
        [header, row] = listed.stdout.splitlines()
        assert header.split()[:3] == ["ENVIRONMENT", "REPO", "DEPLOYMENT"]
        assert row.split()[:2] == ["production", str(repository.id)] and second in row
        shown = subprocess.run(
            [*cli[:-2], "deployments", "production", "--repo", str(repository.id), "--json"],
            env=env_vars,
            capture_output=True,
            text=True,
        )
        assert shown.returncode == 0, shown.stderr
        # newest first: the CLI's rollback, the API's, then the two shipped
        assert [d["digest"] for d in json.loads(shown.stdout)] == [second, first, second, first]
        table = subprocess.run(
            [*cli[:-2], "deployments", "production"], env=env_vars, capture_output=True, text=True
        )
        lines = table.stdout.splitlines()
        assert lines[0].split()[:2] == ["ID", "STATUS"] and len(lines) == 5  # oldest first
        assert f"rollback to {history[0]['id']}" in lines[-1]
        missing_env = subprocess.run(
            [*cli[:-2], "deployments", "staging"], env=env_vars, capture_output=True, text=True
        )
        assert missing_env.returncode == 1
        assert "no environment named 'staging' on this server" in missing_env.stderr
    finally:
        server.stop()
    (env,) = client.get("/api/v1/environments", headers=AUTH).json()
    assert env["current"]["digest"] == second and env["current"]["rollback_of"] == history[0]["id"]


SERVICE_PIPELINE = """\
stages: [build, ship]
image-build:
  stage: build
  build: {tags: ["web:1"]}
staging:
  stage: ship
  environment: {name: staging}
  deploy:
    image: web:1
    service: {name: @NAME@, port: 8080, host_port: @PORT@, health: /index.html}
"""


def test_a_worker_deploys_a_service_answering_http(
    services: Services,
    worker: EmbeddedWorker,
    project: Project,
    repository: RepositoryRead,
    client: TestClient,
) -> None:
    name, port = f"srv-{uuid.uuid4().hex[:8]}", free_port()
    project.commit(
        {
            ".kapal.yml": SERVICE_PIPELINE.replace("@NAME@", name).replace("@PORT@", str(port)),
            "Dockerfile": DOCKERFILE,
            "www/index.html": "from the worker\n",
        }
    )
    project.push()
    pipeline_id = create_pipeline_for_ref(
        services=services, repository_id=repository.id, ref="main"
    ).id
    try:
        detail = wait_for(services, pipeline_id)
        assert detail.status == "success", detail.jobs
        assert get(port) == "from the worker"
        (env,) = client.get("/api/v1/environments", headers=AUTH).json()
        assert (env["name"], env["current"]["kind"], env["current"]["target"]) == (
            "staging",
            "service",
            name,
        )
        assert env["current"]["approved_by"] is None  # no gate: nobody approved it
    finally:
        services_for(services.settings).stop(name)
