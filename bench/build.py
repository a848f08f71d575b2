"""Benchmark: `kapal build` vs `docker build` (legacy builder) on a small Python app, same machine.

Five scenarios, each run by both builders from the same base image (debian:bookworm minbase with
python3, bootstrapped by kapal and `docker load`ed into a private dockerd):

- cold: no build cache (`--no-cache` for both);
- warm: nothing changed, everything cached (`kapal build` answers from its build memo,
  runner.build.memo, without loading the builder);
- after a commit: the context is a git repository with `.git` in its .dockerignore, and
  `git commit --allow-empty` changed only `.git`, which no build sees: still all cached, and
  kapal's memo still answers (it leaves out what .dockerignore excludes);
- touched: one source file's timestamps changed, not its content: every step is still a cache
  hit, but kapal's memo cannot tell, so its builder runs (what a warm build costs without it);
- one file changed: one source file of the app edited, so COPY and the steps after it rerun.

Each scenario runs `--repeat` times per builder; the median is reported. kapal is timed as a user
runs it (the `kapal build` command, Python start-up included) and, for reference, in-process
(the `Builder` called directly). Prints a table with the ratios and writes JSON to
bench/results/build.json.

Usage: .venv/bin/python bench/build.py [--repeat N]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.startup import installed_env  # noqa: E402
from runner.build.builder import Builder, BuildOptions  # noqa: E402
from runner.build.cache import LayerCache  # noqa: E402
from runner.images import ImageStore, bootstrap_debian  # noqa: E402
from runner.images.archives import export_images  # noqa: E402
from runner.runtime.embedded import EmbeddedBackend  # noqa: E402
from runner.settings import RunnerSettings  # noqa: E402
from tests.runner.build.peer import docker_daemon  # noqa: E402

BASE = "debian:bookworm"
TARBALL_CACHE = Path("/var/cache/kapal-tests")
DOCKERFILE = """\
FROM debian:bookworm
ENV PYTHONDONTWRITEBYTECODE=1 APP_HOME=/srv
# stands in for `pip install -r requirements.txt`: about a second of real work
RUN python3 -c "import hashlib; h=b''; \
    [h := hashlib.sha256(h).digest() for _ in range(400000)]; print(h.hex())" > /opt/deps.lock
WORKDIR /srv
COPY app/ ./app/
RUN python3 -m compileall -q /srv/app && python3 -m app.main > /srv/selftest.txt
CMD ["python3", "-m", "app.main"]
"""
APP = {
    "app/__init__.py": "",
    "app/main.py": (
        "from app.greet import greet\n\nif __name__ == '__main__':\n    print(greet('kapal'))\n"
    ),
    "app/greet.py": "def greet(name: str) -> str:\n    return f'hello {name}'\n",
    "app/util/__init__.py": "",
    "app/util/strings.py": "def shout(s: str) -> str:\n    return s.upper()\n",
}


def _timed(action: Callable[[], None]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def _run(cmd: list[str], env: dict[str, str]) -> None:
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")


def main() -> None:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="kapal-bench-build-"))
    try:
        run(work, args.repeat)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(work: Path, repeat: int) -> None:
    """Set up the base in both builders and measure the scenarios."""
    data = work / "data"
    settings = RunnerSettings(data_dir=data)
    store = ImageStore(settings.images_dir)
    print("bootstrapping the base image (debian:bookworm + python3)...", flush=True)
    bootstrap_debian(store, BASE, include=("python3",), tarball_cache=TARBALL_CACHE)
    archive = work / "base.tar"
    export_images(store, [BASE], archive)
    ctx = work / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(DOCKERFILE)
    for name, content in APP.items():
        (ctx / name).parent.mkdir(parents=True, exist_ok=True)
        (ctx / name).write_text(content)
    (ctx / ".dockerignore").write_text(".git\n")
    git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@example.com", "-C", str(ctx)]
    _run([*git, "init", "-q"], dict(os.environ))
    _run([*git, "add", "-A"], dict(os.environ))
    _run([*git, "commit", "-q", "-m", "app"], dict(os.environ))
    kapal_env = installed_env(KAPAL_DATA_DIR=str(data))
    # RUN steps without a network for both builders (dockerd here runs with --bridge=none)
    kapal = [str(ROOT / ".venv" / "bin" / "kapal"), "build", "--network", "none"]
    kapal += ["-t", "bench-app:kapal"]
    backend = EmbeddedBackend(settings)
    builder = Builder(store=store, cache=LayerCache(settings.build_cache_dir), backend=backend)
    edits = iter(range(10_000))

    def commit() -> None:
        _run([*git, "commit", "-q", "--allow-empty", "-m", "bench"], dict(os.environ))

    def touch() -> None:
        os.utime(ctx / "app" / "util" / "strings.py")

    def edit() -> None:
        (ctx / "app" / "greet.py").write_text(
            f"def greet(name: str) -> str:\n    return f'hello {{name}} #{next(edits)}'\n"
        )

    results: dict[str, dict[str, list[float]]] = {}
    with docker_daemon() as docker:
        docker.run("load", "-i", str(archive))
        docker_build = docker.command("build", "-q", "--network", "none", "-t", "bench-app:docker")
        denv = docker.env()
        runners: dict[str, Callable[[bool], None]] = {
            "docker build": lambda cold: _run(
                [*docker_build, *(["--no-cache"] if cold else []), str(ctx)], denv
            ),
            "kapal (CLI)": lambda cold: _run(
                [*kapal, *(["--no-cache"] if cold else []), str(ctx)], kapal_env
            ),
            "kapal (in-process)": lambda cold: (
                builder.build(
                    BuildOptions(
                        context=ctx, tags=("bench-app:kapal",), no_cache=cold, network="none"
                    )
                ),
                None,
            )[1],
        }
        for name, build in runners.items():
            build(True)  # warm-up: caches and page cache primed for every builder alike
            timings: dict[str, list[float]] = {
                "cold": [],
                "warm": [],
                "after a commit": [],
                "touched": [],
                "one file changed": [],
            }
            for _ in range(repeat):
                timings["cold"].append(_timed(lambda b=build: b(True)))
                timings["warm"].append(_timed(lambda b=build: b(False)))
                commit()
                timings["after a commit"].append(_timed(lambda b=build: b(False)))
                touch()
                timings["touched"].append(_timed(lambda b=build: b(False)))
                edit()
                timings["one file changed"].append(_timed(lambda b=build: b(False)))
            results[name] = timings
            print(f"measured {name}", flush=True)
    version = [str(ROOT / ".venv" / "bin" / "kapal"), "version"]
    startup = statistics.median(_timed(lambda: _run(version, kapal_env)) for _ in range(repeat))
    medians = {n: {s: statistics.median(v) for s, v in t.items()} for n, t in results.items()}
    print(f"\nload average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"{'scenario':<18}" + "".join(f"{n:>20}" for n in medians) + "  ratio CLI/docker")
    for scenario in ("cold", "warm", "after a commit", "touched", "one file changed"):
        row = "".join(f"{medians[n][scenario]:>19.3f}s" for n in medians)
        ratio = medians["kapal (CLI)"][scenario] / medians["docker build"][scenario]
        inproc = medians["kapal (in-process)"][scenario] / medians["docker build"][scenario]
        print(f"{scenario:<18}{row}  {ratio:6.2f}x  (in-process {inproc:.2f}x)")
    print(f"\n`kapal version` (CLI start-up alone): {startup:.3f}s")
    out = ROOT / "bench" / "results" / "build.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "benchmark": "build",
                "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "machine": {
                    "cpus": os.cpu_count(),
                    "python": platform.python_version(),
                    "load_average": os.getloadavg()[0],
                },
                "repeat": repeat,
                "seconds": results,
                "median_seconds": medians,
                "kapal_cli_startup_seconds": startup,
                "ratio_vs_docker": {
                    n: {s: medians[n][s] / medians["docker build"][s] for s in medians[n]}
                    for n in medians
                },
            },
            indent=2,
        )
    )
    print(f"\nwrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
