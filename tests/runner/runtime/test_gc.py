"""`kapal gc` after a worker was killed with SIGKILL in the middle of a container."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runner.runtime.embedded import EmbeddedBackend
from runner.settings import RunnerSettings
from tests.runner.runtime.conftest import BusyboxImage, leftovers

# A hung container must fail the test, not the CI run.
pytestmark = pytest.mark.timeout(180)


WORKER = """
import sys, time
from pathlib import Path
from runner.runtime.backend import ContainerSpec, Limits, SandboxSpec
from runner.runtime.embedded import EmbeddedBackend
from runner.settings import RunnerSettings

backend = EmbeddedBackend(RunnerSettings(data_dir=Path(sys.argv[1])))
sandbox = backend.setup(SandboxSpec(aliases=("db",), network="nat"))
spec = ContainerSpec(
    layers=tuple(Path(p) for p in sys.argv[2:]),
    command=("sh", "-c", "echo running; sleep 600"),
    limits=Limits(memory_bytes=64 << 20),
)
container = backend.start(sandbox, spec)
for line in backend.logs(container):
    print(container.id, sandbox.id, line.text, flush=True)
    break
time.sleep(600)
"""


def test_gc_cleans_after_a_killed_worker(
    kapal_settings: RunnerSettings, kapal_env: dict[str, str], busybox: BusyboxImage
) -> None:
    worker = subprocess.Popen(
        [sys.executable, "-c", WORKER, str(kapal_settings.data_dir), *map(str, busybox.layers)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).parents[3],
    )
    try:
        assert worker.stdout is not None
        container_id, sandbox_id, text = worker.stdout.readline().split()
        assert text == "running"
        assert _slirp_serving(sandbox_id)
    finally:
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait()
        if worker.stdout is not None:
            worker.stdout.close()
    left = leftovers(kapal_settings, [container_id], [sandbox_id])
    assert any(item.startswith("runc state") for item in left), left
    assert any(item.startswith("mount") for item in left), left
    assert any(item.startswith("cgroup") for item in left), left
    disk = kapal_settings.containers_dir / f"sb-{sandbox_id}"
    assert f"mount {disk}" in left  # the sandbox's size-limited disk
    # slirp4netns ends on its own when the worker dies (it watches a pipe only the worker held).
    deadline = time.monotonic() + 30
    while _slirp_serving(sandbox_id) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _slirp_serving(sandbox_id)

    done = _kapal_gc(kapal_env)
    assert "removed 1 container(s), 1 sandbox(es)" in done.stdout
    assert leftovers(kapal_settings, [container_id], [sandbox_id]) == []


def _kapal_gc(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [str(Path(sys.executable).parent / "kapal"), "gc"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done


def _slirp_serving(sandbox_id: str) -> bool:
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv[0].endswith(b"slirp4netns") and any(f"sb-{sandbox_id}".encode() in a for a in argv):
            return True
    return False


def test_gc_leaves_live_containers_alone(
    kapal_settings: RunnerSettings, busybox: BusyboxImage
) -> None:
    from runner.runtime.backend import SandboxSpec
    from runner.runtime.gc import collect

    backend = EmbeddedBackend(kapal_settings)
    sandbox = backend.setup(SandboxSpec())
    try:
        container = backend.start(sandbox, busybox.spec("sh", "-c", "echo ready; sleep 600"))
        assert next(iter(backend.logs(container))).text == "ready"
        report = collect(kapal_settings)
        assert container.id not in report.containers
        assert sandbox.id not in report.sandboxes
        assert backend.runc.has_state(container.id)
    finally:
        backend.teardown(sandbox)
        backend.drain()
    assert leftovers(kapal_settings, [container.id], [sandbox.id]) == []


def _mounts_under(directory: Path) -> list[str]:
    with open("/proc/self/mountinfo", encoding="utf-8") as info:
        return [line.split()[4] for line in info if line.split()[4].startswith(f"{directory}/")]


def test_gc_cleans_after_a_killed_build(
    kapal_env: dict[str, str], busybox_image: str, tmp_path: Path
) -> None:
    # A `kapal build` SIGKILLed in a RUN step leaves the step's container and the size-limited
    # disk it writes on, mounted in the build's work dir: `kapal gc` removes both.
    (tmp_path / "Dockerfile").write_text(
        f"FROM {busybox_image}\nRUN echo started > /proof && sleep 600\n"
    )
    work = Path(kapal_env["KAPAL_DATA_DIR"]) / "build-cache" / "tmp"
    build = subprocess.Popen(
        [sys.executable, "-m", "web.cli", "build", "--no-cache", str(tmp_path)],
        env={**kapal_env, "KAPAL_JOB_DISK": "64m"},
        cwd=Path(__file__).parents[3],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while not list(work.glob("*/disk/step-*/upper/proof")) and time.monotonic() < deadline:
            assert build.poll() is None, "the build ended before its RUN step was under way"
            time.sleep(0.1)
    finally:
        os.kill(build.pid, signal.SIGKILL)
        build.wait()
    assert list(work.glob("*/disk/step-*/upper/proof")), "the RUN step never started"
    assert _mounts_under(work), "the killed build left no step disk mounted"

    done = _kapal_gc(kapal_env)
    assert "removed 1 container(s)" in done.stdout
    assert re.search(r", [1-9][0-9]* build work dir\(s\)", done.stdout), done.stdout
    assert _mounts_under(work) == []
    assert list(work.iterdir()) == []
