"""Per-container start overhead: kapal's backend, `kapal exec`, bare `runc run`, `docker run`.

Run as a script (as root): `.venv/bin/python bench/container_start.py [--runs N] [--no-docker]`.
Each variant runs `true` in a busybox container N times (after 3 warm-up runs; the variants take
turns, round by round, so that load from elsewhere hits them alike); the tables show the median
and p90 wall time per container and the ratios against bare runc and docker, and the figures are
written to bench/results/container_start.json.

Two tables, because a container started right after another one starts faster:
    cold          each run follows `--gap` seconds (0.1) of idle, as when a person types a
                  command. The headline figures.
    back-to-back  each run starts as soon as the previous variant's ended.
A move into a cgroup (runc writes the container's pid to `cgroup.procs`) first waits for a kernel
RCU grace period unless another move happened a few milliseconds before: measured here, 6-8 ms
(at times 18) after 30 ms without one, 0.03 ms within 10 ms of one. Back to back, bare runc's
move follows the previous variant's container by a few ms and skips that wait; no command a
person runs starts that close to another container. `kapal exec` spends ~40 ms in Python before
runc starts, so it always starts cold, and hides the wait behind runc's start-up instead
(runner.runtime.cgroups, `warm_attach`).

    (a) backend   EmbeddedBackend in-process: setup sandbox + start + wait + teardown, default
                  policy: loopback-only network, a 10 GiB disk per sandbox (runner.runtime.disk)
        backend-nat     the same on the network jobs and builds get by default (slirp4netns)
        backend-nodisk  the same as (a) without the disk cap (`ContainerPolicy(disk_bytes=None)`)
    (b) exec      `kapal exec busybox:latest -- true` as a subprocess, as a user runs it (Python
                  start-up included; no disk cap: a one-shot exec gets one only with --disk)
        exec-disk       the same with `--disk 10g` (the loop-mounted disk jobs get)
    (c) runc      `runc run` of a bundle from `runc spec` over the same busybox root filesystem
    (d) docker    `docker run --rm --network=none` of the same rootfs (`docker import`), on a
                  private dockerd started for the run (skipped when docker.io is not installed)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.startup import installed_env  # noqa: E402
from runner.images import ImageStore, bootstrap_busybox  # noqa: E402
from runner.images.bootstrap import write_busybox_tar  # noqa: E402
from runner.runtime.backend import ContainerSpec, ImageDefaults  # noqa: E402
from runner.runtime.cgroups import (  # noqa: E402
    current_hierarchies,
    move_self_into,
    warm_attach_file,
)
from runner.runtime.embedded import EmbeddedBackend  # noqa: E402
from runner.runtime.oneshot import run_container  # noqa: E402
from runner.runtime.policy import ContainerPolicy  # noqa: E402
from runner.settings import RunnerSettings  # noqa: E402
from tests.support.dockerd import DockerUnavailable, running_dockerd  # noqa: E402

WARMUP = 3


def summary(times: list[float]) -> dict[str, float]:
    """Median and p90 in milliseconds."""
    ordered = sorted(times)
    p90 = ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]
    return {"median_ms": statistics.median(ordered) * 1000, "p90_ms": p90 * 1000}


def checked(argv: list[str], env: dict[str, str] | None = None) -> Callable[[], None]:
    """A callable running `argv` and failing loudly if it fails."""

    def run() -> None:
        done = subprocess.run(argv, capture_output=True, env=env, check=False)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(argv)} failed: {done.stderr.decode()[-500:]}")

    return run


def cgroup_moves(gap: float, runs: int) -> dict[str, float] | None:
    """Median ms of a no-op cgroup move after `gap` s of idle, and right after another move.

    What separates the cold table from the back-to-back one (see the module docstring).
    """
    procs = warm_attach_file(current_hierarchies())
    if procs is None:
        return None

    def timed() -> float:
        start = time.perf_counter()
        move_self_into(procs)
        return (time.perf_counter() - start) * 1000

    after_idle, right_after = [], []
    for _ in range(runs):
        time.sleep(gap)
        after_idle.append(timed())
        right_after.append(timed())
    return {
        "after_idle_ms": statistics.median(after_idle),
        "right_after_another_ms": statistics.median(right_after),
    }


def protocol_name(gap: float) -> str:
    """How a table's runs were spaced: `cold` (idle before each run) or `back-to-back`."""
    return f"cold ({gap * 1000:.0f} ms idle before each run)" if gap else "back-to-back"


def table(times: dict[str, list[float]], gap: float, runs: int) -> dict[str, dict[str, float]]:
    """Print one protocol's table (medians, p90s, ratios) and return its figures."""
    results = {name: summary(values) for name, values in times.items()}
    runc = results["runc"]["median_ms"]
    docker = results.get("docker", {}).get("median_ms")
    print(
        f"\n{protocol_name(gap)}: container start, `true` in busybox, {runs} runs (ms), "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    )
    print(f"{'variant':<16}{'median':>10}{'p90':>10}{'x runc':>10}{'docker/x':>10}")
    for name, figures in results.items():
        figures["vs_runc"] = figures["median_ms"] / runc
        if docker is not None:
            figures["docker_speedup"] = docker / figures["median_ms"]
        speedup = f"{figures['docker_speedup']:.2f}" if docker is not None else "-"
        print(
            f"{name:<16}{figures['median_ms']:>10.1f}{figures['p90_ms']:>10.1f}"
            f"{figures['vs_runc']:>10.2f}{speedup:>10}"
        )
    return results


def main() -> None:
    """Run the benchmark, print the tables, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--no-docker", action="store_true")
    parser.add_argument(
        "--skip", action="append", default=[], help="leave out a variant (e.g. exec-disk)"
    )
    parser.add_argument(
        "--gap",
        type=float,
        default=0.1,
        help="seconds of idle before each run in the cold table (default 0.1)",
    )
    parser.add_argument("--cold-only", action="store_true", help="leave out the back-to-back table")
    args = parser.parse_args()
    protocols = [args.gap] if args.cold_only else [args.gap, 0.0]
    tables: dict[float, dict[str, list[float]]] = {}

    variants: dict[str, Callable[[], None]] = {}
    with tempfile.TemporaryDirectory(prefix="kapal-bench-") as tmp_name, ExitStack() as stack:
        tmp = Path(tmp_name)
        settings = RunnerSettings(data_dir=tmp / "data")
        store = ImageStore(settings.images_dir)
        image = bootstrap_busybox(store, "busybox:latest")
        layers = tuple(store.unpacked_layers(image))
        defaults = ImageDefaults.from_image_config(image.config)

        # (a) the backend in-process
        backend = EmbeddedBackend(settings)
        spec = ContainerSpec(layers=layers, image=defaults, command=("true",))

        def in_process() -> None:
            status = run_container(backend, spec)
            if not status.ok:
                raise SystemExit(f"backend run failed: {status.describe()}")

        variants["backend"] = in_process

        def on_nat() -> None:
            status = run_container(backend, spec, network="nat")
            if not status.ok:
                raise SystemExit(f"backend run on nat failed: {status.describe()}")

        variants["backend-nat"] = on_nat
        no_disk = EmbeddedBackend(settings, ContainerPolicy(disk_bytes=None))

        def without_disk() -> None:
            status = run_container(no_disk, spec)
            if not status.ok:
                raise SystemExit(f"backend run without a disk failed: {status.describe()}")

        variants["backend-nodisk"] = without_disk

        # (b) kapal exec as a subprocess
        env = installed_env(KAPAL_DATA_DIR=str(settings.data_dir))
        kapal = str(Path(sys.executable).parent / "kapal")
        variants["exec"] = checked([kapal, "exec", "busybox:latest", "--", "true"], env)
        variants["exec-disk"] = checked(
            [kapal, "exec", "--disk", "10g", "busybox:latest", "--", "true"], env
        )

        # (c) bare runc on the same root filesystem
        tar_path = tmp / "busybox.tar"
        write_busybox_tar(tar_path, 0)
        bundle = tmp / "bundle"
        (bundle / "rootfs").mkdir(parents=True)
        with tarfile.open(tar_path) as tar:
            tar.extractall(bundle / "rootfs", filter="tar")
        subprocess.run(["runc", "spec"], cwd=bundle, check=True)
        config = json.loads((bundle / "config.json").read_text())
        config["process"]["terminal"] = False
        config["process"]["args"] = ["true"]
        (bundle / "config.json").write_text(json.dumps(config))
        state = tmp / "runc-state"
        variants["runc"] = checked(
            ["runc", "--root", str(state), "run", "--bundle", str(bundle), "bench"]
        )

        # (d) docker run on a private engine
        if not args.no_docker:
            try:
                engine = stack.enter_context(running_dockerd())
                # the image config kapal's busybox has (a tar import has no PATH of its own)
                path = "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
                engine.docker("import", "--change", path, str(tar_path), "kapal-bench-busybox")
                variants["docker"] = checked(
                    engine.command("run", "--rm", "--network=none", "kapal-bench-busybox", "true")
                )
            except DockerUnavailable as err:
                print(f"docker skipped: {err}")

        for name in args.skip:
            variants.pop(name, None)
        # Interleaved rounds, so that load from elsewhere hits every variant alike.
        for run in variants.values():
            for _ in range(WARMUP):
                run()
        for gap in protocols:
            times: dict[str, list[float]] = {name: [] for name in variants}
            for _ in range(args.runs):
                for name, run in variants.items():
                    time.sleep(gap)
                    start = time.perf_counter()
                    run()
                    times[name].append(time.perf_counter() - start)
            tables[gap] = times

    results = {protocol_name(gap): table(times, gap, args.runs) for gap, times in tables.items()}
    moves = cgroup_moves(args.gap, args.runs)
    if moves is not None:
        print(
            f"\na cgroup move (what runc makes for each container): "
            f"{moves['after_idle_ms']:.2f} ms after {args.gap * 1000:.0f} ms idle, "
            f"{moves['right_after_another_ms']:.2f} ms right after another (medians)"
        )
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    report = {
        "benchmark": "container_start",
        "runs": args.runs,
        "machine": {"cpus": os.cpu_count(), "kernel": platform.release()},
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "results": results,
        "gap_s": args.gap,
        "cgroup_move": moves,
        "load_average": os.getloadavg()[0],
        "targets": {
            "backend_vs_runc_max": 2.0,
            "exec_vs_runc_max": 3.0,
            "exec_docker_speedup_min": 1.0,
        },
    }
    (out_dir / "container_start.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"written {out_dir / 'container_start.json'}")


if __name__ == "__main__":
    main()
