"""Benchmark: a pipeline of 20 trivial jobs in 4 stages vs the same containers under bare runc.

    .venv/bin/python bench/pipeline.py [--rounds N]

Measures, on the busybox image (bootstrapped into a temporary data dir):

- bare runc: `runc run` of a busybox bundle running `true`, 20 times in sequence, and in the
  pipeline's shape (4 stages of 5 containers started in parallel);
- bare runc doing a job's work: the same bundle with the job's own script (the one the engine
  writes: shell re-exec check, `set -e`, `cd`, `$ true` echoed, `true`) and a workspace
  bind-mounted, output read through a pipe; the fair baseline for the per-job target, since
  a kapal job runs that script, not a bare `true`;
- the embedded backend alone: setup, start, logs, wait, teardown of the same 20 containers in
  sequence (what the runtime costs, without the engine);
- kapal: the engine running the 20-job pipeline on the embedded runtime, once with one job at a
  time (per-job cost comparable to bare runc in sequence) and once with 5 at a time (the
  pipeline's natural shape, comparable to bare runc staged).

What still differs from bare runc is the runtime's own work (an overlay root per container, a
sandbox with its network namespace and hosts file, cgroup limits, `runc delete`): that share is
"embedded backend alone" minus "bare runc"; the engine's share is "kapal engine" minus "embedded
backend, job script".

Prints a table with the ratios and writes JSON to bench/results/. The best of N rounds is kept.

Peer: `kapal run` against gitlab-ci-local 4.60's docker executor (issue 11: kapal >= 5x faster),
both run as a user runs them, as subprocesses, on a git repository with 4 trivial jobs (busybox
`true`) in 2 stages, the commands taking turns round by round; medians of N rounds. gitlab-ci-local
runs on a private dockerd (tests.support.dockerd) with `--pull-policy never --network none`; its
helper image docker.io/firecow/gitlab-ci-local-util:latest cannot be pulled here, so it is made
locally: debian:bookworm bootstrapped with rsync and git, `docker load`ed and tagged. Needs
gitlab-ci-local (`npm install gitlab-ci-local@4.60.1` in /opt/kapal-bench, Node 20), rsync on the
host, and docker.io; `--peer-only` skips the 20-job measurements above.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pipeline  # noqa: E402
from bench.startup import installed_env  # noqa: E402
from runner.artifacts import ArtifactStore  # noqa: E402
from runner.cache import CacheStore  # noqa: E402
from runner.engine import Engine, EngineOptions  # noqa: E402
from runner.engine.recorder import NullRecorder  # noqa: E402
from runner.engine.script import job_script  # noqa: E402
from runner.engine.workspace import copy_working_tree  # noqa: E402
from runner.images import ImageStore, bootstrap_busybox, bootstrap_debian  # noqa: E402
from runner.images.archives import export_images  # noqa: E402
from runner.images.bootstrap import write_busybox_tar  # noqa: E402
from runner.job_images import StoreImageProvider  # noqa: E402
from runner.runtime.backend import ContainerSpec, ImageDefaults, Mount, SandboxSpec  # noqa: E402
from runner.runtime.embedded import EmbeddedBackend  # noqa: E402
from runner.runtime.runc import find_runtime  # noqa: E402
from runner.settings import RunnerSettings  # noqa: E402
from tests.support.dockerd import DockerEngine, running_dockerd  # noqa: E402

STAGES = 4
PER_STAGE = 5
JOBS = STAGES * PER_STAGE
PROJECT_DIR = "/builds/bench"
SCRIPT_DIR = "/kapal"


def pipeline_yaml() -> str:
    """20 jobs running `true`, 5 in each of 4 stages."""
    lines = [f"stages: [{', '.join(f's{i}' for i in range(STAGES))}]", "image: busybox:latest"]
    for stage in range(STAGES):
        for n in range(PER_STAGE):
            lines += [f"job-{stage}-{n}:", f"  stage: s{stage}", '  script: ["true"]']
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class JobFiles:
    """What a job's container gets mounted: its script directory and its workspace."""

    scripts: Path
    workspace: Path


def job_files(directory: Path) -> JobFiles:
    """The engine's script for a `true` job, and a one-file workspace, under `directory`."""
    files = JobFiles(directory / "scripts", directory / "workspace")
    files.scripts.mkdir(parents=True)
    files.workspace.mkdir(parents=True)
    (files.scripts / "step_script").write_text(job_script(("true",), project_dir=PROJECT_DIR))
    (files.workspace / ".kapal.yml").write_text(pipeline_yaml())
    return files


def bare_bundle(rootfs: Path, bundle: Path, runc: Path, job: JobFiles | None = None) -> None:
    """A runc bundle over the busybox rootfs (read-only), running `true`, or with `job` the
    job's script with its scripts and workspace bind-mounted as the engine mounts them."""
    bundle.mkdir(parents=True)
    subprocess.run([str(runc), "spec", "--bundle", str(bundle)], check=True)
    config = json.loads((bundle / "config.json").read_text())
    config["root"] = {"path": str(rootfs), "readonly": True}
    config["process"]["args"] = ["/bin/true"]
    config["process"]["terminal"] = False
    if job is not None:
        config["process"]["args"] = ["sh", f"{SCRIPT_DIR}/step_script"]
        config["process"]["cwd"] = PROJECT_DIR
        config["mounts"] += [
            _bind(job.scripts, SCRIPT_DIR, read_only=True),
            _bind(job.workspace, PROJECT_DIR, read_only=False),
        ]
    (bundle / "config.json").write_text(json.dumps(config))


def _bind(source: Path, target: str, *, read_only: bool) -> dict[str, object]:
    options = ["rbind", "ro" if read_only else "rw"]
    return {"destination": target, "type": "bind", "source": str(source), "options": options}


def bare_run(runc: Path, state: Path, bundle: Path, name: str) -> None:
    """One `runc run` to completion, its output read through a pipe as kapal reads a job's."""
    subprocess.run(
        [str(runc), "--root", str(state), "run", "--bundle", str(bundle), name],
        check=True,
        stdin=subprocess.DEVNULL,
        capture_output=True,
    )


def time_bare(runc: Path, state: Path, bundle: Path, staged: bool) -> float:
    """Seconds for 20 bare containers, in sequence or as 4 stages of 5 in parallel."""
    start = time.perf_counter()
    if not staged:
        for i in range(JOBS):
            bare_run(runc, state, bundle, f"bench-seq-{i}")
        return time.perf_counter() - start
    with ThreadPoolExecutor(max_workers=PER_STAGE) as pool:
        for stage in range(STAGES):
            names = [f"bench-par-{stage}-{n}" for n in range(PER_STAGE)]
            list(pool.map(lambda name: bare_run(runc, state, bundle, name), names))
    return time.perf_counter() - start


def time_backend(settings: RunnerSettings, store: ImageStore, job: JobFiles | None) -> float:
    """Seconds for 20 sequential containers through the embedded backend alone (no engine):
    `true`, or with `job` the job's script and mounts."""
    backend = EmbeddedBackend(settings)
    image = store.resolve("busybox:latest")
    spec = ContainerSpec(
        name="bench",
        layers=tuple(store.unpacked_layers(image)),
        image=ImageDefaults.from_image_config(image.config),
        command=("true",),
    )
    if job is not None:
        spec = dataclasses.replace(
            spec,
            command=("sh", f"{SCRIPT_DIR}/step_script"),
            cwd=PROJECT_DIR,
            mounts=(
                Mount(source=job.workspace, target=PROJECT_DIR),
                Mount(source=job.scripts, target=SCRIPT_DIR, read_only=True),
            ),
        )
    start = time.perf_counter()
    for i in range(JOBS):
        sandbox = backend.setup(SandboxSpec(name=f"bench-{i}"))
        try:
            container = backend.start(sandbox, spec)
            for _ in backend.logs(container):
                pass
            backend.wait(container)
        finally:
            backend.teardown(sandbox)
    return time.perf_counter() - start


def time_kapal(settings: RunnerSettings, project: Path, concurrency: int, work: Path) -> float:
    """Seconds for the engine to run the 20-job pipeline with `concurrency` jobs at a time."""
    store = ImageStore(settings.images_dir)
    context = pipeline.TriggerContext(branch="main", project_dir=PROJECT_DIR)
    the_plan = pipeline.plan(pipeline.load(project / ".kapal.yml"), context)
    engine = Engine(
        backend=EmbeddedBackend(settings),
        images=StoreImageProvider(store),
        recorder=NullRecorder(),
        work_dir=work / "runs",
        artifacts=ArtifactStore(work / "artifacts"),
        caches=CacheStore(work / "cache"),
        options=EngineOptions(concurrency=concurrency, project_dir=PROJECT_DIR),
    )
    start = time.perf_counter()
    result = engine.run(the_plan, lambda dest: copy_working_tree(project, dest))
    elapsed = time.perf_counter() - start
    if not result.passed:
        raise SystemExit(f"the benchmark pipeline failed: {result.jobs}")
    return elapsed


GITLAB_CI_LOCAL = "/opt/kapal-bench/node_modules/.bin/gitlab-ci-local"
GCL_HELPER = "docker.io/firecow/gitlab-ci-local-util:latest"
TARBALL_CACHE = Path("/var/cache/kapal-tests")
PEER_STAGES = ("one", "two")
PEER_PER_STAGE = 2


def peer_pipeline_yaml() -> str:
    """4 jobs running `true` in busybox, 2 in each of 2 stages."""
    lines = [f"stages: [{', '.join(PEER_STAGES)}]"]
    for stage in PEER_STAGES:
        for n in range(PEER_PER_STAGE):
            lines += [f"job-{stage}-{n}:", f"  stage: {stage}", "  image: busybox:latest"]
            lines += ['  script: ["true"]']
    return "\n".join(lines) + "\n"


def peer_project(directory: Path) -> Path:
    """A git repository holding the 4-job pipeline as .gitlab-ci.yml (both tools read it)."""
    directory.mkdir(parents=True)
    (directory / ".gitlab-ci.yml").write_text(peer_pipeline_yaml())
    git = ["git", "-c", "user.email=bench@kapal", "-c", "user.name=bench"]
    for argv in (["init", "-q", "-b", "main"], ["add", "."], ["commit", "-q", "-m", "bench"]):
        subprocess.run([*git, *argv], cwd=directory, check=True, capture_output=True)
    return directory


def load_peer_images(engine: DockerEngine, store: ImageStore, work: Path) -> None:
    """busybox:latest and gitlab-ci-local's helper image into the private dockerd."""
    busybox = work / "busybox.tar"
    write_busybox_tar(busybox, 0)
    path = "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    engine.docker("import", "--change", path, str(busybox), "busybox:latest")
    print("bootstrapping gitlab-ci-local's helper image (debian:bookworm + rsync, git)...")
    bootstrap_debian(
        store,
        "debian:bookworm",
        include=("rsync", "git"),
        tag="kapal-bench/gcl-util:latest",
        tarball_cache=TARBALL_CACHE,
    )
    archive = work / "gcl-util.tar"
    export_images(store, ["kapal-bench/gcl-util:latest"], archive)
    engine.docker("load", "-i", str(archive))
    engine.docker("tag", "kapal-bench/gcl-util:latest", GCL_HELPER)


def run_checked(argv: list[str], cwd: Path, env: dict[str, str]) -> float:
    """Seconds `argv` took; exits with its output if it failed."""
    start = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return elapsed


def time_peer(rounds: int, gitlab_ci_local: str) -> dict[str, list[float]]:
    """Seconds per round of `kapal run` and of gitlab-ci-local on the 4-job pipeline."""
    if not Path(gitlab_ci_local).exists():
        raise SystemExit(
            f"{gitlab_ci_local} not found: `npm install gitlab-ci-local@4.60.1` in /opt/kapal-bench"
        )
    with tempfile.TemporaryDirectory(prefix="kapal-bench-peer-") as tmp_name:
        tmp = Path(tmp_name)
        settings = RunnerSettings(data_dir=tmp / "data")
        store = ImageStore(settings.images_dir)
        bootstrap_busybox(store, "busybox:latest")
        project = peer_project(tmp / "project")
        kapal = [str(Path(sys.executable).parent / "kapal"), "run", str(project)]
        kapal_env = installed_env(KAPAL_DATA_DIR=str(settings.data_dir))
        with running_dockerd() as engine:
            load_peer_images(engine, store, tmp)
            gcl = [gitlab_ci_local, "--pull-policy", "never", "--network", "none"]
            gcl_env = dict(os.environ, DOCKER_HOST=engine.host)
            run_checked(kapal, project, kapal_env)  # warm-up: page cache, bytecode, images
            run_checked(gcl, project, gcl_env)
            times: dict[str, list[float]] = {"kapal run": [], "gitlab-ci-local": []}
            for _ in range(rounds):
                times["kapal run"].append(run_checked(kapal, project, kapal_env))
                times["gitlab-ci-local"].append(run_checked(gcl, project, gcl_env))
    return times


def report_peer(times: dict[str, list[float]]) -> dict[str, object]:
    """Print the peer table; return its figures for the JSON."""
    medians = {name: statistics.median(values) for name, values in times.items()}
    speedup = medians["gitlab-ci-local"] / medians["kapal run"]
    load = os.getloadavg()[0]
    print(
        f"\n4 trivial jobs in 2 stages, median of {len(times['kapal run'])} rounds "
        f"(load average {load:.1f} on {os.cpu_count()} CPUs)"
    )
    for name, value in medians.items():
        print(f"{name:<44} {value:>9.3f}")
    met = "met" if speedup >= 5 else "not met"
    print(f"{'gitlab-ci-local / kapal run':<44} {speedup:>8.2f}x (target >= 5x: {met})")
    return {"seconds": times, "median_seconds": medians, "speedup": speedup, "load": load}


def main() -> None:
    """Run the benchmark, print the table, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds; the best is kept")
    parser.add_argument("--gitlab-ci-local", default=GITLAB_CI_LOCAL, help="its executable")
    parser.add_argument("--no-peer", action="store_true", help="skip gitlab-ci-local")
    parser.add_argument("--peer-only", action="store_true", help="only kapal run vs the peer")
    args = parser.parse_args()
    peer = None if args.no_peer else time_peer(max(args.rounds, 5), args.gitlab_ci_local)
    results = ROOT / "bench" / "results"
    results.mkdir(parents=True, exist_ok=True)
    if peer is not None:
        figures = report_peer(peer)
        (results / "pipeline_peer.json").write_text(
            json.dumps(
                {
                    "benchmark": "pipeline_peer",
                    "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "peer": "gitlab-ci-local 4.60.1, docker executor, --network none",
                    **figures,
                    "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
                },
                indent=2,
            )
            + "\n"
        )
        print(f"wrote {(results / 'pipeline_peer.json').relative_to(ROOT)}")
    if args.peer_only:
        return
    runc = find_runtime("")
    with tempfile.TemporaryDirectory(prefix="kapal-bench-") as tmp_name:
        tmp = Path(tmp_name)
        settings = RunnerSettings(data_dir=tmp / "data")
        store = ImageStore(settings.images_dir)
        image = bootstrap_busybox(store, "busybox:latest")
        # a private copy: runc makes the job bundle's mount points in it
        rootfs = tmp / "rootfs"
        shutil.copytree(store.unpacked_layers(image)[0], rootfs, symlinks=True)
        bundle = tmp / "bundle"
        bare_bundle(rootfs, bundle, runc)
        job = job_files(tmp / "job")
        job_bundle = tmp / "job-bundle"
        bare_bundle(rootfs, job_bundle, runc, job)
        state = tmp / "runc-state"
        project = tmp / "project"
        project.mkdir()
        (project / ".kapal.yml").write_text(pipeline_yaml())
        # one warm-up of each, so first-use costs (layer unpack, page cache) are not measured
        time_bare(runc, state, bundle, staged=False)
        time_bare(runc, state, job_bundle, staged=False)
        time_kapal(settings, project, 1, tmp)
        best: dict[str, float] = {}
        for _ in range(args.rounds):
            rounds = {
                "bare_sequential": time_bare(runc, state, bundle, staged=False),
                "bare_staged": time_bare(runc, state, bundle, staged=True),
                "bare_job_sequential": time_bare(runc, state, job_bundle, staged=False),
                "bare_job_staged": time_bare(runc, state, job_bundle, staged=True),
                "backend_sequential": time_backend(settings, store, None),
                "backend_job_sequential": time_backend(settings, store, job),
                "kapal_one_at_a_time": time_kapal(settings, project, 1, tmp),
                "kapal_staged": time_kapal(settings, project, PER_STAGE, tmp),
            }
            for key, value in rounds.items():
                best[key] = min(best.get(key, value), value)
        shutil.rmtree(tmp / "data" / "containers", ignore_errors=True)
    per_job = {
        "bare_runc": best["bare_sequential"] / JOBS,
        "bare_runc_job": best["bare_job_sequential"] / JOBS,
        "backend_alone": best["backend_sequential"] / JOBS,
        "backend_job": best["backend_job_sequential"] / JOBS,
        "kapal": best["kapal_one_at_a_time"] / JOBS,
    }
    ratios = {
        "per_job_kapal_vs_bare": per_job["kapal"] / per_job["bare_runc"],
        "per_job_kapal_vs_bare_job": per_job["kapal"] / per_job["bare_runc_job"],
        "staged_total_kapal_vs_bare": best["kapal_staged"] / best["bare_staged"],
        "staged_total_kapal_vs_bare_job": best["kapal_staged"] / best["bare_job_staged"],
    }
    print(
        f"pipeline of {JOBS} trivial jobs in {STAGES} stages (busybox `true`), "
        f"best of {args.rounds}"
    )
    print(f"{'measure':<44} {'seconds':>9}")
    rows = [
        ("bare runc `true`, 20 in sequence", best["bare_sequential"]),
        ("bare runc `true`, 4 stages x 5 parallel", best["bare_staged"]),
        ("bare runc job script, 20 in sequence", best["bare_job_sequential"]),
        ("bare runc job script, 4 stages x 5 parallel", best["bare_job_staged"]),
        ("embedded backend `true`, 20 in sequence", best["backend_sequential"]),
        ("embedded backend job script, 20 in sequence", best["backend_job_sequential"]),
        ("kapal engine, 1 job at a time", best["kapal_one_at_a_time"]),
        ("kapal engine, 5 jobs at a time", best["kapal_staged"]),
        ("per job: bare runc `true`", per_job["bare_runc"]),
        ("per job: bare runc job script", per_job["bare_runc_job"]),
        ("per job: embedded backend job script", per_job["backend_job"]),
        ("per job: kapal engine", per_job["kapal"]),
        (
            "per job: runtime's share (backend - bare)",
            per_job["backend_job"] - per_job["bare_runc_job"],
        ),
        ("per job: engine's share (kapal - backend)", per_job["kapal"] - per_job["backend_job"]),
    ]
    for label, value in rows:
        print(f"{label:<44} {value:>9.3f}")
    for label, key in (
        ("per-job ratio kapal / bare runc job script", "per_job_kapal_vs_bare_job"),
        ("per-job ratio kapal / bare runc `true`", "per_job_kapal_vs_bare"),
        ("staged total kapal / bare runc job script", "staged_total_kapal_vs_bare_job"),
        ("staged total kapal / bare runc `true`", "staged_total_kapal_vs_bare"),
    ):
        target = " (target <= 2x)" if key == "per_job_kapal_vs_bare_job" else ""
        print(f"{label:<44} {ratios[key]:>8.2f}x{target}")
    results = ROOT / "bench" / "results"
    results.mkdir(parents=True, exist_ok=True)
    out = results / "pipeline.json"
    out.write_text(
        json.dumps(
            {
                "benchmark": "pipeline",
                "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "jobs": JOBS,
                "stages": STAGES,
                "rounds": args.rounds,
                "seconds": best,
                "per_job_seconds": per_job,
                "ratios": ratios,
                "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
