"""`deploy: service:` on the real runtime: rollout without downtime, a failed rollout, rollback."""

from __future__ import annotations

import http.client
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from runner.images.store import ImageStore
from runner.owners import local_owner
from runner.settings import RunnerSettings
from runner.ship.deployments import LocalDeployments
from runner.ship.settings import deployments_dir, services_for
from tests.support.registry import free_port
from web.cli import build_app

DOCKERFILE = """\
FROM busybox:latest
COPY www /www
CMD ["httpd", "-f", "-p", "8080", "-h", "/www"]
"""

PIPELINE = """\
stages: [build, test, ship]
image-build:
  stage: build
  build: {tags: ["app:1"]}
unit:
  stage: test
  image: app:1
  script: [grep -q . /www/index.html]
ship:
  stage: ship
  environment: {name: ENV}
  deploy:
    image: app:1
    service: {name: NAME, port: 8080, host_port: PORT, health: HEALTH}
"""


def kapal(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(build_app(), list(args))
    return result.exit_code, result.stdout + result.stderr


def get(port: int, path: str = "/index.html") -> str:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        body = response.read().decode().strip()
        if response.status != 200:
            raise OSError(f"HTTP {response.status}")
        return body
    finally:
        conn.close()


class Project:
    """A project whose `www/index.html` says `version`, shipped as service `name`."""

    def __init__(self, root: Path, name: str, port: int) -> None:
        self.root = root
        self.name = name
        self.port = port
        self.env = f"staging-{name}"
        (root / "www").mkdir(parents=True)
        (root / "Dockerfile").write_text(DOCKERFILE)

    def write(self, version: str, health: str = "/index.html") -> None:
        (self.root / "www" / "index.html").write_text(version + "\n")
        (self.root / ".kapal.yml").write_text(
            PIPELINE.replace("ENV", self.env)
            .replace("NAME", self.name)
            .replace("PORT", str(self.port))
            .replace("HEALTH", health)
        )

    def run(self) -> tuple[int, str]:
        return kapal("run", str(self.root))


@pytest.fixture
def project(
    tmp_path: Path,
    kapal_settings: RunnerSettings,
    busybox_image: str,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Project]:
    monkeypatch.setenv("KAPAL_DATA_DIR", str(kapal_settings.data_dir))
    monkeypatch.setenv("KAPAL_SERVICE_HEALTH_TIMEOUT", "8")
    name = f"web-{uuid.uuid4().hex[:8]}"
    made = Project(tmp_path / "project", name, free_port())
    try:
        yield made
    finally:
        services_for(kapal_settings).stop(name)


class Poller:
    """Asks the service for its page in a loop; counts answers and failures."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.answers: list[str] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.answers.append(get(self.port))
            except OSError as exc:
                self.failures.append(str(exc))
            self._stop.wait(0.02)

    def __enter__(self) -> Poller:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def test_rollout_keeps_the_port_answering_failed_rollout_keeps_old_rollback(
    project: Project, kapal_settings: RunnerSettings
) -> None:
    project.write("v1")
    code, out = project.run()
    assert code == 0, out
    assert "is healthy" in out
    assert get(project.port) == "v1"
    records = LocalDeployments(deployments_dir(kapal_settings.data_dir))
    first = records.history(project.env)[-1]
    store = ImageStore(kapal_settings.images_dir).for_owner(local_owner(project.root))
    assert first.digest == store.resolve("app:1").digest  # the tested image, by digest

    project.write("v2")
    with Poller(project.port) as poller:
        code, out = project.run()
    assert code == 0, out
    assert poller.failures == []
    assert "v1" in poller.answers and "v2" in poller.answers
    assert poller.answers.index("v2") > poller.answers.index("v1")
    assert "v1" not in poller.answers[poller.answers.index("v2") :]  # the old one is gone
    assert get(project.port) == "v2"
    second = records.history(project.env)[-1]
    assert second.digest != first.digest

    project.write("v3", health="/missing.html")
    with Poller(project.port) as poller:
        code, out = project.run()
    assert code != 0
    assert "never became healthy" in out and "HTTP 404" in out
    assert "the previous version keeps serving" in out
    assert poller.failures == [] and set(poller.answers) == {"v2"}
    assert records.history(project.env)[-1].status == "failed"

    code, out = kapal("rollback", project.env)
    assert code == 0, out
    assert get(project.port) == "v1"
    rolled = records.history(project.env)[-1]
    assert (rolled.digest, rolled.rollback_of, rolled.status) == (first.digest, first.id, "success")

    code, out = kapal("services")
    assert code == 0 and project.name in out and "running" in out
    with Poller(project.port) as poller:
        code, out = kapal("services", "restart", project.name)
    assert code == 0 and f"{project.name} runs version" in out, out
    assert poller.failures == [] and get(project.port) == "v1"
    code, out = kapal("deployments", project.env)
    assert code == 0 and f"rollback to {first.id}" in out
