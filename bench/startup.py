"""CLI start-up: `kapal version`, `kapal --help` and `kapal lint` of a small file, as run by a user.

Run: `.venv/bin/python bench/startup.py [--runs N] [--no-everyday]`.

A second table (unless `--no-everyday`) times the other commands a person types all day, doing
real work: `kapal plan` of a small file, `kapal image ls` of the data dir's store,
`kapal deployments`, and `kapal pipelines` / `kapal repo list` against a
`kapal serve --no-worker` the bench starts on a Unix socket of its own (SQLite in a temporary
data dir; stopped at the end). The issue names
no target for them; the table shows what each costs over the interpreter.

Each command runs N times (after 3 warm-ups; the commands take turns, round by round, so that
load from elsewhere hits them alike) as a subprocess of the installed `kapal` script; the
interpreter alone (`python -c pass`, with the venv's site: the floor any Python CLI pays) and
`python -S -c pass` (without site) are measured beside them. Prints medians and p90s with the
targets (issue 11: version and --help <= 40 ms, lint <= 80 ms) and the machine's load, and
writes bench/results/startup.json.

Beside the wall-clock times, the CPU time each run used (user + system, from the child's
rusage): on a shared machine a run waits for a core, which the wall clock counts and the CPU
time does not, so the CPU column stays near the quiet machine's wall time when the load is high.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WARMUP = 3
PIPELINE = """\
stages: [build, test]
build:
  stage: build
  image: busybox:latest
  script: [echo build]
test:
  stage: test
  image: busybox:latest
  script: [echo test]
"""
TARGETS_MS = {"kapal version": 40.0, "kapal --help": 40.0, "kapal lint": 80.0}


def installed_env(**extra: str) -> dict[str, str]:
    """The environment to time kapal in: as installed, with its modules' bytecode cached.

    pip compiles bytecode when it installs kapal; with PYTHONDONTWRITEBYTECODE set (as in some
    development shells) every run would compile every module from source instead, and that
    is not what a user's `kapal` does. The warm-up runs write the cache.
    """
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.update(extra)
    return env


def children_cpu() -> float:
    """Seconds of CPU (user + system) the finished child processes have used so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def summary(times: list[float]) -> dict[str, float]:
    """Median and p90 in milliseconds."""
    ordered = sorted(times)
    p90 = ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]
    return {"median_ms": statistics.median(ordered) * 1000, "p90_ms": p90 * 1000}


def everyday_variants(kapal: str, pipeline_file: Path) -> dict[str, list[str]]:
    """The everyday commands of the second table, doing real work."""
    return {
        "kapal plan": [kapal, "plan", str(pipeline_file), "--branch", "main"],
        "kapal image ls": [kapal, "image", "ls"],
        "kapal deployments": [kapal, "deployments"],
        "kapal pipelines": [kapal, "pipelines"],
        "kapal repo list": [kapal, "repo", "list"],
    }


@contextlib.contextmanager
def kapal_server(kapal: str, tmp: Path) -> Iterator[dict[str, str]]:
    """A `kapal serve --no-worker` on a Unix socket, with one repository; the client's env."""
    token = secrets.token_hex(16)
    socket_path = tmp / "kapal.sock"
    client_env = {"KAPAL_HOST": f"unix://{socket_path}", "KAPAL_TOKEN": token}
    server_env = installed_env(KAPAL_DATA_DIR=str(tmp / "server"), KAPAL_ADMIN_TOKEN=token)
    log = (tmp / "serve.log").open("wb")
    server = subprocess.Popen(
        [kapal, "serve", "--socket", str(socket_path), "--no-worker"],
        env=server_env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        add = [kapal, "repo", "add", "acme/shop", "--clone-url", str(tmp / "shop.git")]
        deadline = time.monotonic() + 60
        while subprocess.run(add, capture_output=True, env={**server_env, **client_env}).returncode:
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"kapal serve did not start; see {tmp / 'serve.log'}")
            time.sleep(0.3)
        yield client_env
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


def main() -> None:
    """Run the benchmark, print the table, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--no-everyday", action="store_true", help="only the first table")
    args = parser.parse_args()
    python = str(Path(sys.executable))
    kapal = str(Path(sys.executable).parent / "kapal")
    with tempfile.TemporaryDirectory(prefix="kapal-bench-") as tmp_name:
        pipeline_file = Path(tmp_name) / ".kapal.yml"
        pipeline_file.write_text(PIPELINE)
        variants = {
            "python -S -c pass": [python, "-S", "-c", "pass"],
            "python -c pass": [python, "-c", "pass"],
            "kapal version": [kapal, "version"],
            "kapal --help": [kapal, "--help"],
            "kapal lint": [kapal, "lint", str(pipeline_file)],
        }
        # the user's data dir (KAPAL_DATA_DIR or the default): `kapal image ls` lists the real
        # store and `kapal deployments` the real records; none of the commands writes there
        env = installed_env()
        with contextlib.ExitStack() as stack:
            if not args.no_everyday:
                server_env = stack.enter_context(kapal_server(kapal, Path(tmp_name)))
                env = {**env, **server_env}
                variants.update(everyday_variants(kapal, pipeline_file))
            for argv in variants.values():
                for _ in range(WARMUP):
                    subprocess.run(argv, capture_output=True, env=env, check=True)
            load_before = os.getloadavg()
            times: dict[str, list[float]] = {name: [] for name in variants}
            cpu: dict[str, list[float]] = {name: [] for name in variants}
            for _ in range(args.runs):
                for name, argv in variants.items():
                    used = children_cpu()
                    start = time.perf_counter()
                    subprocess.run(argv, capture_output=True, env=env, check=True)
                    times[name].append(time.perf_counter() - start)
                    cpu[name].append(children_cpu() - used)
            load_after = os.getloadavg()
    results = {name: summary(values) for name, values in times.items()}
    for name, values in cpu.items():
        results[name]["cpu_median_ms"] = statistics.median(values) * 1000
    floor = results["python -c pass"]["median_ms"]
    cpu_floor = results["python -c pass"]["cpu_median_ms"]
    print(
        f"CLI start-up, {args.runs} runs (ms); load average {load_before[0]:.1f} -> "
        f"{load_after[0]:.1f} on {os.cpu_count()} CPUs"
    )
    print(
        f"{'command':<20}{'median':>9}{'p90':>9}{'- python':>10}{'cpu':>8}{'- python':>10}"
        f"{'target':>9}{'met':>6}"
    )
    for name, figures in results.items():
        target = TARGETS_MS.get(name)
        figures["over_interpreter_ms"] = figures["median_ms"] - floor
        figures["cpu_over_interpreter_ms"] = figures["cpu_median_ms"] - cpu_floor
        met = "-" if target is None else "yes" if figures["median_ms"] <= target else "no"
        print(
            f"{name:<20}{figures['median_ms']:>9.1f}{figures['p90_ms']:>9.1f}"
            f"{figures['over_interpreter_ms']:>10.1f}{figures['cpu_median_ms']:>8.1f}"
            f"{figures['cpu_over_interpreter_ms']:>10.1f}"
            f"{'-' if target is None else f'{target:.0f}':>9}{met:>6}"
        )
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    report = {
        "benchmark": "startup",
        "runs": args.runs,
        "machine": {
            "cpus": os.cpu_count(),
            "kernel": platform.release(),
            "python": platform.python_version(),
            "load_average": [load_before[0], load_after[0]],
        },
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "results": results,
        "targets_ms": TARGETS_MS,
    }
    (out_dir / "startup.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"written {out_dir / 'startup.json'}")


if __name__ == "__main__":
    main()
