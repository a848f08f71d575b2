"""Issue 8 item 8: no container runs unlimited; the operator's caps hold whatever is asked.

A fork bomb and a memory hog run in containers whose spec asks for no limit at all: the backend's
policy gives them the defaults. The default policy itself (pids 4096, 4 GiB, 2 CPUs) is checked
on a running container's cgroups; the attacks use smaller defaults so that they stay cheap on a
shared machine.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from runner.errors import RunnerError
from runner.runtime.backend import Limits, SandboxSpec
from runner.runtime.cgroups import LEAF, current_hierarchies
from runner.runtime.oneshot import run_container
from runner.runtime.policy import ContainerPolicy, PolicyError
from runner.settings import RunnerSettings
from tests.runner.runtime.conftest import BusyboxImage
from tests.security.containers import BackendFactory

pytestmark = pytest.mark.timeout(300)

REPO = Path(__file__).resolve().parents[2]


def _groups(container_id: str) -> dict[str, Path]:
    return {
        name: h.own_dir / f"kapal-{container_id}"
        for h in current_hierarchies()
        for name in h.controllers
    }


def test_unlimited_spec_gets_the_default_limits(
    policy_backend: BackendFactory, busybox: BusyboxImage
) -> None:
    backend = policy_backend(ContainerPolicy())
    sandbox = backend.setup(SandboxSpec())
    try:
        container = backend.start(sandbox, busybox.spec("sh", "-c", "echo ready; sleep 600"))
        assert next(iter(backend.logs(container))).text == "ready"
        groups = _groups(container.id)
        assert (groups["pids"] / LEAF / "pids.max").read_text().strip() == "4096"
        assert (groups["memory"] / "memory.limit_in_bytes").read_text().strip() == str(4 << 30)
        assert (groups["cpu"] / LEAF / "cpu.cfs_quota_us").read_text().strip() == "200000"
        assert container.spec.limits == Limits(memory_bytes=4 << 30, cpus=2.0, pids=4096)
    finally:
        backend.teardown(sandbox)


def test_asking_above_the_caps_gets_the_caps(
    policy_backend: BackendFactory, busybox: BusyboxImage
) -> None:
    caps = Limits(memory_bytes=256 << 20, cpus=1.0, pids=100)
    backend = policy_backend(ContainerPolicy(caps=caps))
    sandbox = backend.setup(SandboxSpec())
    try:
        asked = Limits(memory_bytes=64 << 30, cpus=64.0, pids=1_000_000)
        container = backend.start(
            sandbox, busybox.spec("sh", "-c", "echo ready; sleep 600", limits=asked)
        )
        assert next(iter(backend.logs(container))).text == "ready"
        groups = _groups(container.id)
        assert (groups["pids"] / LEAF / "pids.max").read_text().strip() == "100"
        assert (groups["memory"] / "memory.limit_in_bytes").read_text().strip() == str(256 << 20)
        assert (groups["cpu"] / LEAF / "cpu.cfs_quota_us").read_text().strip() == "100000"
    finally:
        backend.teardown(sandbox)


def test_fork_bomb_is_contained(policy_backend: BackendFactory, busybox: BusyboxImage) -> None:
    # The spec asks for no limit: the policy's default pids limit is what stops the bomb. When
    # a fork fails, busybox's sh gives up, so the bomb ends on its own once it hits the limit.
    backend = policy_backend(ContainerPolicy(defaults=Limits(pids=64, memory_bytes=256 << 20)))
    bomb = "bomb() { bomb | bomb & }; while :; do bomb; done"
    lines: list[str] = []
    status = run_container(
        backend,
        busybox.spec("sh", "-c", bomb, timeout=120.0),
        on_line=lambda line: lines.append(line.text),
    )
    assert not status.timed_out
    assert status.exit_code != 0
    assert any("can't fork: Resource temporarily unavailable" in line for line in lines)
    # The host still forks, and the container's groups are gone (the fixture checks the rest).
    assert subprocess.run([sys.executable, "-c", "pass"], check=False).returncode == 0
    assert not any(_groups(cid)["pids"].exists() for cid in backend.container_ids)


def test_memory_hog_is_oom_killed_under_the_default(
    policy_backend: BackendFactory, busybox: BusyboxImage
) -> None:
    backend = policy_backend(ContainerPolicy(defaults=Limits(memory_bytes=48 << 20)))
    hog = "head -c 500000000 /dev/zero | tail"
    status = run_container(backend, busybox.spec("sh", "-c", hog))
    assert status.oom_killed
    assert status.describe() == "killed: out of memory (limit 48 MiB)"


def test_timeout_is_cut_to_the_maximum(
    policy_backend: BackendFactory, busybox: BusyboxImage
) -> None:
    backend = policy_backend(ContainerPolicy(max_timeout=1.0))
    status = run_container(backend, busybox.spec("sleep", "600", timeout=3600.0))
    assert status.timed_out
    assert status.describe() == "timed out after 1s"
    assert ContainerPolicy(max_timeout=60.0).clamp_timeout(None) == 60.0
    assert ContainerPolicy(max_timeout=60.0).clamp_timeout(10.0) == 10.0


def test_check_limits_names_each_limit_above_its_cap() -> None:
    policy = ContainerPolicy(caps=Limits(memory_bytes=1 << 30, cpus=2.0, pids=10))
    with pytest.raises(PolicyError) as raised:
        policy.check_limits(Limits(memory_bytes=2 << 30, cpus=4.0, pids=11))
    assert str(raised.value) == (
        "memory 2 GiB is above the maximum 1 GiB (KAPAL_MAX_JOB_MEMORY); cpus 4 is above the "
        "maximum 2 (KAPAL_MAX_JOB_CPUS); pids 11 is above the maximum 10 (KAPAL_MAX_JOB_PIDS): "
        "ask for less, or raise the maximum"
    )
    policy.check_limits(Limits(memory_bytes=1 << 30, cpus=2.0, pids=10))  # at the caps: fine


def test_settings_make_the_policy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAPAL_JOB_MEMORY", "512m")
    monkeypatch.setenv("KAPAL_MAX_JOB_TIMEOUT", "2h")
    monkeypatch.setenv("KAPAL_ALLOW_HOST_NETWORK", "false")
    monkeypatch.setenv("KAPAL_JOB_DISK", "1g")
    policy = RunnerSettings(data_dir=tmp_path).container_policy()
    assert policy.defaults == Limits(memory_bytes=512 << 20, cpus=2.0, pids=4096)
    assert policy.max_timeout == 7200.0
    assert not policy.allow_host_network
    assert policy.disk_bytes == 1 << 30
    monkeypatch.setenv("KAPAL_JOB_DISK", "none")
    assert RunnerSettings(data_dir=tmp_path).container_policy().disk_bytes is None
    monkeypatch.setenv("KAPAL_MAX_JOB_TIMEOUT", "soon")
    with pytest.raises(RunnerError, match="KAPAL_MAX_JOB_TIMEOUT: cannot read duration 'soon'"):
        RunnerSettings(data_dir=tmp_path).container_policy()


def test_kapal_run_refuses_limits_above_the_caps(kapal_env: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / ".kapal.yml").write_text("job:\n  image: busybox:latest\n  script: [true]\n")
    done = subprocess.run(
        [sys.executable, "-m", "web.cli", "run", "--memory", "64g", str(tmp_path)],
        env=kapal_env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "memory 64 GiB is above the maximum 16 GiB (KAPAL_MAX_JOB_MEMORY)" in done.stderr
    assert "Traceback" not in done.stderr


def test_kapal_run_memory_hog_fails_with_its_reason(
    kapal_env: dict[str, str], busybox_image: str, tmp_path: Path
) -> None:
    (tmp_path / ".kapal.yml").write_text(
        "hog:\n  image: busybox:latest\n  script: ['head -c 500000000 /dev/zero | tail']\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "web.cli", "run", "--memory", "48m", str(tmp_path)],
        env=kapal_env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "==> hog: failed" in done.stdout
    assert "killed: out of memory (limit 48 MiB)" in done.stdout
