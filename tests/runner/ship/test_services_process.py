"""Services outlive the `kapal` process that deployed them; names and owners are checked."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from runner.errors import RolloutError, ShipError
from runner.images.store import ImageStore
from runner.runtime.backend import ImageDefaults
from runner.settings import RunnerSettings
from runner.ship.keeper import read_json
from runner.ship.services import RolloutResult, ServiceRequest, Services, check_name
from tests.runner.ship.test_services_runtime import DOCKERFILE, get
from tests.support.registry import free_port

KAPAL = [sys.executable, "-m", "web.cli"]
REPO = Path(__file__).resolve().parents[3]

PIPELINE = """\
image-build:
  stage: build
  build: {tags: ["app:1"]}
ship:
  stage: deploy
  deploy:
    image: app:1
    service:
      name: @NAME@
      port: 8080
      host_port: @PORT@
      health: wget -q -O- http://127.0.0.1:8080/index.html
      env: {GREETING: hello}
"""


def kapal(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*KAPAL, *args], env=env, capture_output=True, text=True, timeout=600, cwd=REPO
    )


def test_a_service_outlives_kapal_run_and_stops_on_request(
    tmp_path: Path, kapal_settings: RunnerSettings, busybox_image: str
) -> None:
    name, port = f"keep-{uuid.uuid4().hex[:8]}", free_port()
    project = tmp_path / "p"
    (project / "www").mkdir(parents=True)
    (project / "www" / "index.html").write_text("kept\n")
    (project / "Dockerfile").write_text(DOCKERFILE)
    (project / ".kapal.yml").write_text(
        PIPELINE.replace("@NAME@", name).replace("@PORT@", str(port))
    )
    env = dict(os.environ, KAPAL_DATA_DIR=str(kapal_settings.data_dir))
    try:
        ran = kapal(env, "run", str(project))
        assert ran.returncode == 0, ran.stdout + ran.stderr
        assert "wget -q -O- http://127.0.0.1:8080/index.html` exited with code 0" in ran.stdout
        # the kapal process has exited: the service and its port are still there
        assert get(port) == "kept"
        listed = kapal(env, "services")
        assert name in listed.stdout and "running" in listed.stdout
        assert f"127.0.0.1:{port}" in listed.stdout
        stopped = kapal(env, "services", "stop", name)
        assert stopped.returncode == 0, stopped.stderr
        with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=2):
            pass
        versions = kapal_settings.data_dir / "services" / name / "versions"
        states = {(read_json(v / "status.json") or {}).get("state") for v in versions.iterdir()}
        assert states == {"stopped"}
    finally:
        Services(kapal_settings.data_dir / "services", kapal_settings.data_dir).stop(name)
    unknown = kapal(env, "services", "stop", name + "-none")
    assert unknown.returncode == 1 and "there is no service" in unknown.stderr


@pytest.mark.parametrize("name", ["../etc", "a/b", "", "UPPER", ".hidden", "x" * 64, "a\nb"])
def test_service_names_that_could_leave_the_services_dir_are_refused(name: str) -> None:
    with pytest.raises(ShipError, match="service name"):
        check_name(name)


def test_another_owners_service_is_not_taken_over(tmp_path: Path) -> None:
    services = Services(tmp_path / "services", tmp_path)
    (tmp_path / "services" / "web").mkdir(parents=True)
    (tmp_path / "services" / "web" / "service.json").write_text('{"owner": "repo:1"}')
    request = ServiceRequest(
        name="web",
        owner="repo:2",
        image="app:1",
        digest="sha256:" + "0" * 64,
        layers=(),
        defaults=ImageDefaults(),
    )
    with pytest.raises(ShipError, match="belongs to another repository"):
        services.roll_out(request, print)
    assert not (tmp_path / "services" / "web" / "versions").exists()


SECRET_PIPELINE = """\
image-build:
  stage: build
  build: {tags: ["app:1"]}
ship:
  stage: deploy
  environment: {name: @ENV@}
  deploy:
    image: app:1
    service:
      name: @NAME@
      port: 8080
      env: {TOKEN: $SERVICE_TOKEN, PLAIN: "p-$CI_JOB_NAME"}
      health: test "$TOKEN" = "$(cat /expected)" && test "$PLAIN" = p-ship && echo env-ok
"""


def test_secret_env_reaches_the_service_but_not_the_records(
    tmp_path: Path, kapal_settings: RunnerSettings, busybox_image: str
) -> None:
    secret = f"tok-{uuid.uuid4().hex}"
    name, environment = f"sec-{uuid.uuid4().hex[:8]}", f"env-{uuid.uuid4().hex[:8]}"
    project = tmp_path / "p"
    (project / "www").mkdir(parents=True)
    (project / "www" / "index.html").write_text("x\n")
    (project / "expected").write_text(secret + "\n")
    (project / "Dockerfile").write_text(DOCKERFILE + "COPY expected /expected\n")
    (project / ".kapal.yml").write_text(
        SECRET_PIPELINE.replace("@NAME@", name).replace("@ENV@", environment)
    )
    env = dict(
        os.environ,
        KAPAL_DATA_DIR=str(kapal_settings.data_dir),
        KAPAL_SECRET_SERVICE_TOKEN=secret,
        KAPAL_SERVICE_HEALTH_TIMEOUT="10",
    )
    try:
        for _ in range(2):
            ran = kapal(env, "run", str(project))
            assert ran.returncode == 0, ran.stdout + ran.stderr
            assert "env-ok" in ran.stdout
            (project / "www" / "index.html").write_text(uuid.uuid4().hex)  # a new digest
        records = (kapal_settings.data_dir / "deployments").glob(f"{environment}*.jsonl")
        text = "".join(path.read_text() for path in records)
        assert "$SERVICE_TOKEN" in text and "p-ship" in text and secret not in text
        rolled = kapal(env, "rollback", environment)  # the secret is expanded again
        assert rolled.returncode == 0, rolled.stdout + rolled.stderr
        assert "env-ok" in rolled.stdout
    finally:
        Services(kapal_settings.data_dir / "services", kapal_settings.data_dir).stop(name)


def _request(store: ImageStore, name: str, version: str, host_port: int | None) -> ServiceRequest:
    image = store.resolve("busybox:latest")
    return ServiceRequest(
        name=name,
        owner="test",
        image="busybox:latest",
        digest=image.digest,
        layers=tuple(store.unpacked_layers(image)),
        defaults=ImageDefaults.from_image_config(image.config),
        port=8080,
        host_port=host_port,
        health="/index.html",
        command=(
            "sh",
            "-c",
            f"mkdir -p /www && echo {version} > /www/index.html && exec httpd -f -p 8080 -h /www",
        ),
    )


def test_two_rollouts_of_one_service_wait_for_each_other(
    kapal_settings: RunnerSettings, image_store: ImageStore, busybox_image: str
) -> None:
    services = Services(kapal_settings.data_dir / "services", kapal_settings.data_dir, drain=0.1)
    name, port = f"two-{uuid.uuid4().hex[:8]}", free_port()
    results: dict[str, RolloutResult] = {}

    def deploy(version: str) -> None:
        results[version] = services.roll_out(_request(image_store, name, version, port), print)

    threads = [threading.Thread(target=deploy, args=(v,)) for v in ("a", "b")]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        first, second = sorted(results.values(), key=lambda r: r.version)
        assert first.previous is None and second.previous == first.version
        assert get(port) == ("a" if results["a"] is second else "b")
    finally:
        services.stop(name)


def test_a_host_port_outside_the_allowed_range_is_refused(
    tmp_path: Path, image_store: ImageStore, busybox_image: str
) -> None:
    services = Services(tmp_path / "services", tmp_path, ports=(20000, 20010))
    with pytest.raises(ShipError, match=r"host_port 22 is outside .*20000-20010"):
        services.roll_out(_request(image_store, "low", "x", 22), print)
    assert not (tmp_path / "services" / "low").exists()


def test_a_script_job_with_an_environment_records_a_deployment(
    tmp_path: Path, kapal_settings: RunnerSettings, busybox_image: str
) -> None:
    environment = f"notes-{uuid.uuid4().hex[:8]}"
    (tmp_path / ".kapal.yml").write_text(
        "announce:\n  image: busybox:latest\n  script: [echo shipping]\n"
        f"  environment: {{name: {environment}, url: 'https://example.test/'}}\n"
        "undo:\n  image: busybox:latest\n  script: [echo stop]\n"
        f"  environment: {{name: {environment}, action: stop}}\n"
    )
    env = dict(os.environ, KAPAL_DATA_DIR=str(kapal_settings.data_dir))
    ran = kapal(env, "run", str(tmp_path))
    assert ran.returncode == 0, ran.stdout + ran.stderr
    listed = kapal(env, "deployments", environment)
    assert listed.returncode == 0 and "https://example.test/" in listed.stdout
    assert listed.stdout.count("announce") == 1 and "undo" not in listed.stdout
    refused = kapal(env, "rollback", environment)
    assert refused.returncode == 1
    assert "no earlier deployment to roll back to" in refused.stderr


def test_a_taken_host_port_fails_the_rollout_and_keeps_the_old_version(
    kapal_settings: RunnerSettings, image_store: ImageStore, busybox_image: str
) -> None:
    services = Services(kapal_settings.data_dir / "services", kapal_settings.data_dir, drain=0.1)
    name, port = f"taken-{uuid.uuid4().hex[:8]}", free_port()
    try:
        services.roll_out(_request(image_store, name, "old", port), print)
        with socket.socket() as squatter:
            squatter.bind(("127.0.0.1", 0))
            squatter.listen()
            taken = squatter.getsockname()[1]
            with pytest.raises(RolloutError) as failed:
                services.roll_out(_request(image_store, name, "new", taken), print)
        assert f"cannot publish {name} on 127.0.0.1:{taken}" in str(failed.value)
        assert "the previous version keeps serving" in str(failed.value)
        assert get(port) == "old"
        (info,) = [s for s in services.list() if s.name == name]
        assert (info.state, info.address) == ("running", f"127.0.0.1:{port}")
        versions = kapal_settings.data_dir / "services" / name / "versions"
        running = [
            v.name for v in versions.iterdir() if (read_json(v / "status.json") or {}).get("pid")
        ]
        assert len(running) == 2
        for version in versions.iterdir():  # the new version's keeper was stopped
            status = read_json(version / "status.json") or {}
            if version.name != info.version:
                assert status.get("state") in ("stopped", "healthy")
                assert not _pid_alive(int(status["pid"]))
    finally:
        services.stop(name)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"


def test_a_reused_pid_in_the_state_is_never_signalled(tmp_path: Path) -> None:
    bystander = subprocess.Popen(["sleep", "60"])  # a process that took a keeper's old pid
    try:
        services = Services(tmp_path / "services", tmp_path)
        version = tmp_path / "services" / "web" / "versions" / "v1"
        version.mkdir(parents=True)
        (version / "status.json").write_text(json.dumps({"state": "healthy", "pid": bystander.pid}))
        (tmp_path / "services" / "web" / "service.json").write_text(
            json.dumps({"owner": "o", "version": "v1"})
        )
        (tmp_path / "services" / "web" / "proxy.json").write_text(
            json.dumps({"pid": bystander.pid, "address": "127.0.0.1:1"})
        )
        assert [(s.state, s.address) for s in services.list()] == [("exited", None)]
        assert services.stop("web")
        assert bystander.poll() is None  # untouched
    finally:
        bystander.kill()
        bystander.wait()


def test_restart_runs_the_current_version_again_after_its_processes_died(
    kapal_settings: RunnerSettings, image_store: ImageStore, busybox_image: str
) -> None:
    services = Services(kapal_settings.data_dir / "services", kapal_settings.data_dir, drain=0.1)
    name, port = f"boot-{uuid.uuid4().hex[:8]}", free_port()
    directory = kapal_settings.data_dir / "services" / name
    try:
        first = services.roll_out(_request(image_store, name, "same", port), print)
        keeper = (read_json(directory / "versions" / first.version / "status.json") or {})["pid"]
        proxy = (read_json(directory / "proxy.json") or {})["pid"]
        for pid in (proxy, keeper):  # as a reboot would: no SIGTERM, no clean-up
            os.kill(int(pid), 9)
        deadline = time.monotonic() + 30
        while [s.state for s in services.list() if s.name == name] != ["exited"]:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        with pytest.raises(OSError):
            get(port)
        again = services.restart(name, print)
        assert again.version != first.version and again.digest == first.digest
        assert get(port) == "same"
        assert [s.state for s in services.list() if s.name == name] == ["running"]
    finally:
        services.stop(name)
        subprocess.run(
            [sys.executable, "-m", "web.cli", "gc"],
            env=dict(os.environ, KAPAL_DATA_DIR=str(kapal_settings.data_dir)),
            capture_output=True,
            cwd=REPO,
            check=False,
        )
