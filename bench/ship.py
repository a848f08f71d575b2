"""Service rollout: kapal's (new version beside the old, switch when healthy) vs a `docker run`
replacement, with a client asking the port all along; and the cost of kapal's port proxy.

Run as a script (as root): `.venv/bin/python bench/ship.py [--rounds N] [--no-docker]`.

The service is busybox `httpd` serving a page that names its version (`sh -c 'echo vN > ...;
httpd -f'`), on 127.0.0.1:PORT. A client thread GETs the page every 10 ms during each rollout
and counts answers and failures (refused, reset, a non-200).

    (a) kapal     `runner.ship.services.Services.roll_out`: a keeper process starts version N+1
                  in its own network namespace, its /index.html health check passes, the port
                  proxy switches to it, the old version stops after the drain (0.2 s here)
    (b) docker    the usual single-host replacement: `docker rm -f old` then `docker run -d
                  --network host new` (a private dockerd; skipped when docker.io is missing):
                  the port is closed from the removal until the new httpd listens

Also: the median and p90 latency of 300 sequential GETs through kapal's proxy (a connection
each) against the same GETs straight to a host-network httpd (docker's, or a busybox httpd run
directly when docker is skipped). Figures go to bench/results/ship.json.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from runner.images import ImageStore, bootstrap_busybox  # noqa: E402
from runner.images.bootstrap import write_busybox_tar  # noqa: E402
from runner.runtime.backend import ImageDefaults  # noqa: E402
from runner.settings import RunnerSettings  # noqa: E402
from runner.ship.services import ServiceRequest, Services  # noqa: E402
from tests.support.dockerd import DockerUnavailable, running_dockerd  # noqa: E402


def free_port() -> int:
    """A TCP port nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get(port: int) -> str:
    """GET /index.html on 127.0.0.1:port; the body, or OSError."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/index.html")
        response = conn.getresponse()
        body = response.read().decode().strip()
        if response.status != 200:
            raise OSError(f"HTTP {response.status}")
        return body
    except http.client.HTTPException as exc:
        raise OSError(str(exc)) from exc
    finally:
        conn.close()


def command(version: str, port: int) -> list[str]:
    """The service's command: write its page, serve it."""
    return [
        "/bin/sh",
        "-c",
        f"mkdir -p /www && echo {version} > /www/index.html && exec httpd -f -p {port} -h /www",
    ]


class Client:
    """GETs the page every 10 ms in a thread; counts answers and failures."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.answers = 0
        self.failures = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                get(self.port)
                self.answers += 1
            except OSError:
                self.failures += 1
            self._stop.wait(0.01)

    def __enter__(self) -> Client:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def wait_for(port: int, version: str, timeout: float = 60.0) -> None:
    """Until the port answers `version`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if get(port) == version:
                return
        except OSError:
            pass
        time.sleep(0.01)
    raise SystemExit(f"port {port} never answered {version}")


def latencies(port: int, count: int = 300) -> dict[str, float]:
    """Median and p90 of `count` sequential GETs (ms)."""
    times = []
    for _ in range(count):
        start = time.perf_counter()
        get(port)
        times.append((time.perf_counter() - start) * 1000)
    times.sort()
    return {"median_ms": statistics.median(times), "p90_ms": times[int(len(times) * 0.9)]}


def rollouts(port: int, deploy: Callable[[str], None], rounds: int) -> dict[str, float]:
    """Deploy v0, then v1..v`rounds` with a client on the port; each rollout lasts until the
    port answers the new version. The median rollout time, answers and failures."""
    deploy("v0")
    wait_for(port, "v0")
    seconds, answers, failures = [], 0, 0
    for n in range(1, rounds + 1):
        with Client(port) as client:
            start = time.monotonic()
            deploy(f"v{n}")
            wait_for(port, f"v{n}")
            seconds.append(time.monotonic() - start)
            time.sleep(0.2)
        answers += client.answers
        failures += client.failures
    return {
        "rollout_median_s": statistics.median(seconds),
        "answers": answers,
        "failures": failures,
    }


def main() -> None:
    """Run the benchmark, print the table, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--no-docker", action="store_true")
    args = parser.parse_args()
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="kapal-bench-") as tmp_name, ExitStack() as stack:
        tmp = Path(tmp_name)
        settings = RunnerSettings(data_dir=tmp / "data")
        os.environ["KAPAL_DATA_DIR"] = str(settings.data_dir)  # the keepers' settings
        store = ImageStore(settings.images_dir)
        image = bootstrap_busybox(store, "busybox:latest")
        layers = tuple(store.unpacked_layers(image))
        defaults = ImageDefaults.from_image_config(image.config)
        services = Services(settings.data_dir / "services", settings.data_dir, drain=0.2)
        host_port = free_port()
        stack.callback(services.stop, "bench")

        def roll_out(version: str) -> None:
            services.roll_out(
                ServiceRequest(
                    name="bench",
                    owner="bench",
                    image="busybox:latest",
                    digest=image.digest,
                    layers=layers,
                    defaults=defaults,
                    port=8080,
                    host_port=host_port,
                    health="/index.html",
                    command=tuple(command(version, 8080)),
                ),
                lambda line: None,
            )

        # (a) kapal
        results["kapal"] = rollouts(host_port, roll_out, args.rounds)
        proxied = latencies(host_port)

        # (b) docker
        direct: dict[str, float] | None = None
        if not args.no_docker:
            try:
                engine = stack.enter_context(running_dockerd())
            except DockerUnavailable as err:
                print(f"docker skipped: {err}")
            else:
                tar_path = tmp / "busybox.tar"
                write_busybox_tar(tar_path, 0)
                engine.docker("import", str(tar_path), "kapal-bench-busybox")
                port = free_port()

                def run(version: str) -> None:
                    engine.docker(
                        "run", "-d", "--network", "host", "--name", version,
                        "kapal-bench-busybox", *command(version, port),
                    )  # fmt: skip

                def replace(version: str) -> None:
                    number = int(version[1:])
                    if number:
                        engine.docker("rm", "-f", f"v{number - 1}")
                    run(version)

                results["docker"] = rollouts(port, replace, args.rounds)
                direct = latencies(port)
                engine.docker("rm", "-f", f"v{args.rounds}")
        if direct is None:  # a busybox httpd on the host's network, for the proxy's cost
            port = free_port()
            www = tmp / "www"
            www.mkdir()
            (www / "index.html").write_text("direct\n")
            busybox = next(p / "bin" / "busybox" for p in layers if (p / "bin/busybox").exists())
            httpd = subprocess.Popen([str(busybox), "httpd", "-f", "-p", str(port), "-h", str(www)])
            try:
                wait_for(port, "direct")
                direct = latencies(port)
            finally:
                httpd.terminate()
                httpd.wait()

    print(f"{'rollout':<10}{'median s':>10}{'answers':>10}{'failures':>10}")
    for name, figures in results.items():
        print(
            f"{name:<10}{figures['rollout_median_s']:>10.2f}{figures['answers']:>10}"
            f"{figures['failures']:>10}"
        )
    print(
        f"GET latency through kapal's proxy: median {proxied['median_ms']:.2f} ms, p90 "
        f"{proxied['p90_ms']:.2f} ms; direct: median {direct['median_ms']:.2f} ms, p90 "
        f"{direct['p90_ms']:.2f} ms"
    )
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    report = {
        "benchmark": "ship",
        "rounds": args.rounds,
        "machine": {"cpus": os.cpu_count(), "kernel": platform.release()},
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "rollouts": results,
        "latency": {"proxied": proxied, "direct": direct},
        "targets": {"kapal_failures_max": 0},
    }
    (out_dir / "ship.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"written {out_dir / 'ship.json'}")


if __name__ == "__main__":
    main()
