"""`kapal serve` as a process: it refuses an un-migrated PostgreSQL database with one line,
listens on a Unix socket of mode 0660, prints its URLs and admin token, runs a pushed
pipeline in its embedded worker, and the CLI drives it all over the socket."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from runner.images import ImageStore
from tests.web.api.test_hooks import push_of
from tests.web.hooks.conftest import delivery
from tests.web.test_mirrors import Project

KAPAL = [sys.executable, "-m", "web.cli"]
PIPELINE = """
image: busybox:latest
build:
  script:
    - echo "building $CI_COMMIT_SHORT_SHA"
    - for i in 1 2 3; do echo "step $i"; done
"""


def _env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAPAL_")}
    return env | {"KAPAL_DATA_DIR": str(data_dir), "KAPAL_SECRET_KEY": "test key"} | extra


def test_serve_refuses_an_unmigrated_postgres_with_one_line(
    postgres_url: str, tmp_path: Path
) -> None:
    done = subprocess.run(
        [*KAPAL, "serve", "--port", "0", "--no-worker"],
        env=_env(tmp_path, KAPAL_DATABASE_URL=postgres_url),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("kapal serve: the database at postgresql+psycopg://")
    assert "run `kapal migrate` first" in lines[0]
    assert "password" not in lines[0].split("@")[0].split(":")[-1] or "***" in lines[0]


def test_serve_refuses_a_path_that_is_not_a_socket(tmp_path: Path) -> None:
    target = tmp_path / "precious"
    target.write_text("keep me")
    done = subprocess.run(
        [*KAPAL, "serve", "--socket", str(target), "--no-worker"],
        env=_env(tmp_path / "data"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert done.stderr.strip() == (
        f"kapal serve: {target} exists and is not a socket; remove it or pick another path"
    )
    assert target.read_text() == "keep me"


class Served:
    """A `kapal serve` process and what it printed at start."""

    def __init__(self, process: subprocess.Popen[str], banner: str, socket: Path) -> None:
        self.process = process
        self.banner = banner
        self.socket = socket

    @property
    def admin_token(self) -> str:
        found = re.search(r"export KAPAL_TOKEN=(\S+)\)", self.banner)
        assert found, self.banner
        return found.group(1)


@pytest.fixture(params=["embedded", "postgres-redis"])
def served(
    request: pytest.FixtureRequest, tmp_path: Path, image_store: ImageStore, busybox_image: str
) -> Iterator[Served]:
    """`kapal serve --socket` with its embedded worker, its images from the session's store:
    on the embedded default, then on PostgreSQL (migrated by `kapal migrate`) and Redis."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "images").symlink_to(image_store.root)
    env = _env(data_dir)
    if request.param == "postgres-redis":
        env["KAPAL_DATABASE_URL"] = request.getfixturevalue("postgres_url")
        env["KAPAL_BROKER_URL"] = request.getfixturevalue("redis_url")
        migrated = subprocess.run(
            [*KAPAL, "migrate"], env=env, capture_output=True, text=True, timeout=300
        )
        assert migrated.returncode == 0, migrated.stderr
    socket = tmp_path / "run" / "kapal.sock"
    errors = (tmp_path / "serve.err").open("w")
    process = subprocess.Popen(
        [*KAPAL, "serve", "--socket", str(socket), "--data-dir", str(data_dir)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=errors,
        text=True,
    )
    try:
        banner = read_banner(process, tmp_path / "serve.err")
        deadline = time.monotonic() + 60
        transport = httpx.HTTPTransport(uds=str(socket))
        with httpx.Client(transport=transport, base_url="http://kapal") as client:
            while True:
                try:
                    if client.get("/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "kapal serve did not answer"
                time.sleep(0.1)
        yield Served(process, banner, socket)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        assert process.stdout is not None
        process.stdout.close()
        errors.close()


def read_banner(process: subprocess.Popen[str], errors: Path | None = None) -> str:
    """What `kapal serve` prints at start, up to its admin token line(s)."""
    assert process.stdout is not None
    banner = ""
    while True:
        line = process.stdout.readline()
        if not line:
            told = errors.read_text() if errors is not None else ""
            raise AssertionError(f"kapal serve ended ({process.wait()}): {told}")
        banner += line
        if line.startswith("  admin token"):
            if "shown this once" in line:
                banner += process.stdout.readline()
            return banner


def secret_of(repo_add_output: str) -> str:
    """The webhook secret `kapal repo add` made and printed."""
    return repo_add_output.split("webhook secret (shown this once): ")[1].split()[0]


def cli(served: Served, *args: str, token: str | None = None) -> subprocess.CompletedProcess[str]:
    env = _env(Path(served.socket).parent / "cli") | {
        "KAPAL_HOST": f"unix://{served.socket}",
        "KAPAL_TOKEN": token or served.admin_token,
    }
    return subprocess.run([*KAPAL, *args], env=env, capture_output=True, text=True, timeout=300)


def test_serve_on_a_socket_runs_a_pushed_pipeline_driven_by_the_cli(
    served: Served, tmp_path: Path
) -> None:
    mode = os.stat(served.socket).st_mode
    assert stat.S_ISSOCK(mode)
    assert stat.S_IMODE(mode) == 0o660
    assert f"API on unix://{served.socket}" in served.banner
    assert "/hooks/github" in served.banner and "/hooks/gitlab" in served.banner
    assert "worker: in this process" in served.banner

    project = Project(tmp_path / "repos")
    sha = project.commit({".kapal.yml": PIPELINE})
    project.push()
    added = cli(served, "repo", "add", "acme/shop", "--clone-url", str(project.origin))
    assert added.returncode == 0, added.stderr
    made = cli(served, "trigger", "acme/shop", "--ref", "main")
    assert made.returncode == 0, made.stderr
    pipeline_id = made.stdout.split()[1]
    shown = cli(served, "pipeline", pipeline_id, "--json")
    job_id = json.loads(shown.stdout)["jobs"][0]["id"]
    followed = cli(served, "logs", "-f", str(job_id))
    assert followed.returncode == 0, followed.stderr
    assert f"building {sha[:8]}" in followed.stdout
    assert "step 1\nstep 2\nstep 3\n" in followed.stdout
    assert followed.stderr.strip() == f"job {job_id} success, exit code 0"
    deadline = time.monotonic() + 60
    while True:
        listed = cli(served, "pipelines", "--repo", "acme/shop")
        row = listed.stdout.splitlines()[1].split()
        if row[1] == "success" or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert row[:4] == [pipeline_id, "success", "main", sha[:12]]
    # the same push delivered as GitHub would: signed, and once more (a redelivery)
    hook = push_of(sha)
    headers, body = delivery("github", hook, "push", secret=secret_of(added.stdout))
    transport = httpx.HTTPTransport(uds=str(served.socket))
    with httpx.Client(transport=transport, base_url="http://kapal", timeout=120) as client:
        first = client.post("/hooks/github", content=body, headers=headers)
        assert first.status_code == 201, first.text
        again = client.post("/hooks/github", content=body, headers=headers)
        assert again.status_code == 200
        assert again.json()["pipeline_id"] == first.json()["pipeline_id"]
        forged = client.post("/hooks/github", content=body + b" ", headers=headers)
        assert forged.status_code == 401
    hooked = str(first.json()["pipeline_id"])
    deadline = time.monotonic() + 120
    while True:
        state = json.loads(cli(served, "pipeline", hooked, "--json").stdout)
        if state["status"] in ("success", "failed") or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert (state["status"], state["source"], state["sha"]) == ("success", "push", sha)
    denied = cli(served, "cancel", pipeline_id, token="kapal_not-a-token")
    assert denied.returncode == 1
    assert "unknown, revoked or expired" in denied.stderr
    assert "Traceback" not in denied.stderr


def test_a_stopped_server_removes_its_socket(served: Served) -> None:
    served.process.send_signal(signal.SIGTERM)
    assert served.process.wait(60) == 0
    assert not served.socket.exists()


def test_the_admin_token_is_printed_on_the_first_start_only(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    banners = []
    for where in (["--socket", str(tmp_path / "kapal.sock")], ["--port", "0"]):
        process = subprocess.Popen(
            [*KAPAL, "serve", *where, "--no-worker"],
            env=_env(data_dir),
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            banners.append(read_banner(process))
            if where[0] == "--port":  # TCP on the port the kernel picked, as printed
                url = re.search(r"API on (http://127\.0\.0\.1:\d+) ", banners[-1])
                assert url, banners[-1]
                assert httpx.get(f"{url.group(1)}/healthz", timeout=30).status_code == 200
                assert f"{url.group(1)}/hooks/github" in banners[-1]
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(60)
            assert process.stdout is not None
            process.stdout.close()
    assert "shown this once" in banners[0]
    assert "kapal_" in banners[0]
    assert "kapal_" not in banners[1]
    shutil.rmtree(data_dir)


def test_served_tcp_connections_send_without_delay() -> None:
    """Each answer leaves at once (TCP_NODELAY), not after the peer's delayed ACK."""
    import asyncio
    import socket as sockets

    from web.serve import tcp_socket

    listener = tcp_socket("127.0.0.1", 0)
    seen: list[int] = []

    async def main() -> None:
        def accepted(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            sock = writer.get_extra_info("socket")
            seen.append(sock.getsockopt(sockets.IPPROTO_TCP, sockets.TCP_NODELAY))
            writer.close()

        server = await asyncio.start_server(accepted, sock=listener)
        async with server:
            port = listener.getsockname()[1]
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            for _ in range(100):
                if seen:
                    break
                await asyncio.sleep(0.01)
            writer.close()
            await writer.wait_closed()

    try:
        asyncio.run(main())
    finally:
        listener.close()
    assert seen and seen[0] != 0


def test_serve_says_in_one_line_when_the_database_is_unreachable(tmp_path: Path) -> None:
    with sockets_free_port() as port:
        url = f"postgresql+psycopg://kapal:hunter2@127.0.0.1:{port}/kapal"
        done = subprocess.run(
            [*KAPAL, "serve", "--port", "0", "--no-worker"],
            env=_env(tmp_path, KAPAL_DATABASE_URL=url),
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert done.returncode == 1
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    where = f"postgresql+psycopg://kapal:***@127.0.0.1:{port}/kapal"
    assert lines[0].startswith(f"kapal serve: cannot use the database at {where}: ")
    assert "hunter2" not in done.stderr


@contextlib.contextmanager
def sockets_free_port() -> Iterator[int]:
    """A TCP port nothing listens on (held closed for the block)."""
    import socket as sockets

    with sockets.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        yield probe.getsockname()[1]


# how `kapal serve` and `kapal worker` each refuse a bad setting: exit status and prefix
START_COMMANDS = {
    ("serve", "--port", "0", "--no-worker"): (1, "kapal serve: "),
    ("worker", "-n", "refused"): (2, "error: "),
}


def refused_at_start(
    data: Path, env: dict[str, str], commands: dict[tuple[str, ...], tuple[int, str]]
) -> list[str]:
    """Run each command on `data` (a migrated data dir) with `env`; each must refuse to start
    with one line, its own status and prefix. The lines, in order."""
    said = []
    for command, (status, prefix) in commands.items():
        done = subprocess.run(
            [*KAPAL, *command],
            env=_env(data, **env),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == status, done.stderr
        lines = done.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith(prefix), done.stderr
        said.append(lines[0])
    return said


@pytest.mark.parametrize(
    ("setting", "value"),
    [("KAPAL_SERVICE_PORTS", "80"), ("KAPAL_SERVICE_DRAIN", "-1")],
)
def test_serve_and_worker_refuse_a_malformed_rollout_setting_at_start(
    tmp_path: Path, migrated_sqlite: Path, setting: str, value: str
) -> None:
    # without the check, each would start and every pipeline that ships would fail on it
    data = tmp_path / "data"
    data.mkdir()
    shutil.copyfile(migrated_sqlite, data / "kapal.db")
    for line in refused_at_start(data, {setting: value}, START_COMMANDS):
        assert f"{setting}={value!r}" in line
