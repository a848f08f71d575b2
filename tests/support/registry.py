"""A real registry for tests: Debian's `docker-registry` (CNCF distribution) on 127.0.0.1.

Each server gets its own config file, storage directory and free port; the packaged
/etc/docker/registry/config.yml (htpasswd, all interfaces) is never used.
"""

from __future__ import annotations

import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import yaml


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """Stop a server the tests started: SIGTERM, then SIGKILL after 10 s."""
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _ephemeral_ports() -> tuple[int, int]:
    """The range the kernel picks outgoing connections' local ports from."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now, outside the kernel's ephemeral
    range: a port from `bind(0)` is handed out again to the next outgoing connection (a
    database client, a registry pull), which then holds it when the test's server binds."""
    low, high = _ephemeral_ports()
    candidates = [p for p in range(20000, 30000) if not low <= p <= high]
    for port in secrets.SystemRandom().sample(candidates, 200):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free TCP port in 20000-29999 on 127.0.0.1")


def registry_config(storage: Path, port: int, auth: dict[str, Any] | None = None) -> dict[str, Any]:
    """The distribution config for a registry on 127.0.0.1:`port` storing under `storage`."""
    config: dict[str, Any] = {
        "version": 0.1,
        "log": {"level": "error", "accesslog": {"disabled": True}},
        "storage": {"filesystem": {"rootdirectory": str(storage)}, "delete": {"enabled": True}},
        "http": {"addr": f"127.0.0.1:{port}", "secret": secrets.token_hex(16)},
    }
    if auth:
        config["auth"] = auth
    return config


@contextmanager
def run_registry(workdir: Path, auth: dict[str, Any] | None = None) -> Iterator[str]:
    """Run a registry until the block ends; yield its address `127.0.0.1:PORT`."""
    binary = shutil.which("docker-registry")
    if binary is None:
        raise RuntimeError("docker-registry is not installed; run `bash .ci/setup`")
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config_path = workdir / "config.yml"
    config_path.write_text(yaml.safe_dump(registry_config(workdir / "data", port, auth)))
    log = (workdir / "registry.log").open("w")
    process = subprocess.Popen(
        [binary, "serve", str(config_path)], stdout=log, stderr=subprocess.STDOUT
    )
    address = f"127.0.0.1:{port}"
    try:
        for _ in range(200):
            if process.poll() is not None:
                raise RuntimeError(
                    f"docker-registry exited: {(workdir / 'registry.log').read_text()[-2000:]}"
                )
            try:
                httpx.get(f"http://{address}/v2/", timeout=1.0)
                break
            except httpx.TransportError:
                time.sleep(0.05)
        else:
            raise RuntimeError(f"docker-registry did not answer on {address}")
        yield address
    finally:
        stop_process(process)
        log.close()
