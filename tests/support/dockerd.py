"""A private Docker engine for peer comparisons (`docker run`, `docker build`), no system daemon.

    with running_dockerd() as engine:          # skips nothing: raises DockerUnavailable
        engine.docker("import", "rootfs.tar", "peer-busybox")
        engine.docker("run", "--rm", "--network=none", "peer-busybox", "true")

Lifecycle: `running_dockerd()` starts `dockerd --iptables=false --bridge=none` with its own
temporary --data-root, --exec-root, pid file and unix socket (short paths under /tmp: socket paths
are limited to 108 bytes), waits until it answers, yields a `DockerEngine`, and on exit stops it
(SIGTERM, then SIGKILL after 20 s), unmounts anything left under its directories and removes them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


class DockerUnavailable(RuntimeError):
    """dockerd or the docker client is not installed, or the engine did not come up."""


@dataclass(frozen=True)
class DockerEngine:
    """A running private engine: its socket and a way to call the docker client on it."""

    host: str
    root: Path

    def command(self, *args: str) -> list[str]:
        """argv of `docker -H HOST ARGS`."""
        return ["docker", "-H", self.host, *args]

    def docker(self, *args: str, check: bool = True, timeout: float = 600) -> str:
        """Run `docker ARGS` against this engine; return stdout (raise on failure if `check`)."""
        done = subprocess.run(
            self.command(*args), capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and done.returncode != 0:
            raise RuntimeError(f"docker {' '.join(args)} failed: {done.stderr.strip()}")
        return done.stdout


def docker_installed() -> bool:
    """True when both dockerd and the docker client are on PATH."""
    return shutil.which("dockerd") is not None and shutil.which("docker") is not None


@contextlib.contextmanager
def running_dockerd(start_timeout: float = 60.0) -> Iterator[DockerEngine]:
    """Start a private dockerd, yield it, stop it and remove its files (see module docstring)."""
    if not docker_installed():
        raise DockerUnavailable("dockerd and docker are not installed (Debian: docker.io)")
    root = Path(tempfile.mkdtemp(prefix="kdk-", dir="/tmp"))
    host = f"unix://{root}/d.sock"
    log = (root / "dockerd.log").open("wb")
    process = subprocess.Popen(
        [
            "dockerd",
            "--iptables=false",
            "--ip-masq=false",
            "--bridge=none",
            f"--data-root={root}/data",
            f"--exec-root={root}/x",
            f"--pidfile={root}/d.pid",
            f"--host={host}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    engine = DockerEngine(host=host, root=root)
    try:
        deadline = time.monotonic() + start_timeout
        while True:
            if process.poll() is not None:
                raise DockerUnavailable(f"dockerd exited early; see {root}/dockerd.log")
            probe = subprocess.run(engine.command("version"), capture_output=True, check=False)
            if probe.returncode == 0:
                break
            if time.monotonic() > deadline:
                raise DockerUnavailable(f"dockerd did not answer in {start_timeout:.0f}s")
            time.sleep(0.2)
        yield engine
    finally:
        _stop(process)
        log.close()
        _unmount_below(root)
        shutil.rmtree(root, ignore_errors=True)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _unmount_below(root: Path) -> None:
    prefix = str(root) + "/"
    with open("/proc/self/mountinfo", encoding="utf-8") as info:
        points = [line.split()[4] for line in info if line.split()[4].startswith(prefix)]
    for point in sorted(points, key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)
