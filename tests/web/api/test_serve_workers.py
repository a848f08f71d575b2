"""`kapal serve --workers N`: N forked HTTP processes share the socket, the embedded worker runs
in a process of its own, one that dies is started again, and SIGTERM stops them all; a signed
push delivered to it runs to success."""

from __future__ import annotations

import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from runner.images import ImageStore
from tests.web.api.test_hooks import push_of
from tests.web.api.test_serve import KAPAL, PIPELINE, Served, _env, cli, read_banner, secret_of
from tests.web.hooks.conftest import delivery
from tests.web.test_mirrors import Project


def _children(pid: int) -> set[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return {int(child) for child in text.split()}


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def _wait_for(what: str, check: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


@contextmanager
def _kapal_serve(*args: str, data_dir: Path) -> Iterator[subprocess.Popen[str]]:
    """`kapal serve ARGS` until the block ends (then killed if it is still running)."""
    process = subprocess.Popen(
        [*KAPAL, "serve", *args], env=_env(data_dir), stdout=subprocess.PIPE, text=True
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        assert process.stdout is not None
        process.stdout.close()


def test_two_http_processes_and_a_worker_process_restarted_and_stopped(tmp_path: Path) -> None:
    with _kapal_serve("--port", "0", "--workers", "2", data_dir=tmp_path / "data") as process:
        banner = read_banner(process)
        assert "HTTP processes: 2" in banner
        assert "worker: in a process of its own" in banner
        url = re.search(r"API on (http://127\.0\.0\.1:\d+) ", banner)
        assert url, banner
        _wait_for("three processes", lambda: len(_children(process.pid)) == 3)
        first = _children(process.pid)
        with httpx.Client(base_url=url.group(1), timeout=30) as client:
            _wait_for("an answer", lambda: client.get("/healthz").status_code == 200)
            # a process killed is started again, and the others answer meanwhile
            victim = min(first)
            subprocess.run(["kill", "-9", str(victim)], check=True)
            _wait_for(
                "a process started again",
                lambda: victim not in _children(process.pid) and len(_children(process.pid)) == 3,
            )
            for _ in range(20):
                assert client.get("/healthz").status_code == 200
        running = _children(process.pid)
        process.send_signal(signal.SIGTERM)
        assert process.wait(90) == 0
        assert not [pid for pid in running if _alive(pid)]


def test_workers_below_one_is_refused_in_one_line(tmp_path: Path) -> None:
    done = subprocess.run(
        [*KAPAL, "serve", "--port", "0", "--workers", "0"],
        env=_env(tmp_path / "data"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        "kapal serve: --workers is the number of HTTP processes: 1 or more, not 0"
    ]


def test_a_delivered_push_runs_through_two_http_processes_and_the_worker_process(
    tmp_path: Path, image_store: ImageStore, busybox_image: str
) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "images").symlink_to(image_store.root)
    socket = tmp_path / "run" / "kapal.sock"
    with _kapal_serve("--socket", str(socket), "--workers", "2", data_dir=data_dir) as process:
        served = Served(process, read_banner(process), socket)
        transport = httpx.HTTPTransport(uds=str(socket))
        with httpx.Client(transport=transport, base_url="http://kapal", timeout=120) as client:
            _wait_for("an answer", lambda: socket.exists() and _healthy(client))
            project = Project(tmp_path / "repos")
            sha = project.commit({".kapal.yml": PIPELINE})
            project.push()
            added = cli(served, "repo", "add", "acme/shop", "--clone-url", str(project.origin))
            assert added.returncode == 0, added.stderr
            headers, body = delivery("github", push_of(sha), "push", secret=secret_of(added.stdout))
            answer = client.post("/hooks/github", content=body, headers=headers)
            assert answer.status_code == 201, answer.text
            pipeline_id = answer.json()["pipeline_id"]

            def finished() -> bool:
                status = client.get(f"/api/v1/pipelines/{pipeline_id}").json()["status"]
                return status in ("success", "failed", "canceled", "skipped")

            _wait_for("the pipeline to finish", finished, timeout=180)
            assert client.get(f"/api/v1/pipelines/{pipeline_id}").json()["status"] == "success"
        process.send_signal(signal.SIGTERM)
        assert process.wait(90) == 0


def _healthy(client: httpx.Client) -> bool:
    try:
        return client.get("/healthz").status_code == 200
    except httpx.TransportError:
        return False
