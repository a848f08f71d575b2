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
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shutil
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
from runner.artifacts import ArtifactStore  # noqa: E402
from runner.cache import CacheStore  # noqa: E402
from runner.engine import Engine, EngineOptions  # noqa: E402
from runner.engine.recorder import NullRecorder  # noqa: E402
from runner.engine.script import job_script  # noqa: E402
from runner.engine.workspace import copy_working_tree  # noqa: E402
from runner.images import ImageStore, bootstrap_busybox  # noqa: E402
from runner.job_images import StoreImageProvider  # noqa: E402
from runner.runtime.backend import ContainerSpec, ImageDefaults, Mount, SandboxSpec  # noqa: E402
from runner.runtime.embedded import EmbeddedBackend  # noqa: E402
from runner.runtime.runc import find_runtime  # noqa: E402
from runner.settings import RunnerSettings  # noqa: E402

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


def main() -> None:
    """Run the benchmark, print the table, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds; the best is kept")
    args = parser.parse_args()
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
