"""Issue 8 item 9: jobs and builds reach the outside world but not the host's loopback services.

Each test starts an HTTP server on the host's 127.0.0.1 (what a CI worker's database, Redis or
admin port looks like) and plays a pipeline trying to reach it: a job on the default network,
`network: host` where the operator forbids it, a build RUN step, and `ADD http://127.0.0.1/...`.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from runner.build.builder import Builder, BuildOptions
from runner.build.cache import LayerCache
from runner.errors import BuildStepError, DockerfileError
from runner.images import ImageStore
from runner.runtime.backend import NetworkMode
from runner.runtime.oneshot import run_container
from runner.runtime.policy import ContainerPolicy, PolicyError
from tests.runner.runtime.conftest import BusyboxImage
from tests.security.containers import HOST_SECRET, BackendFactory

pytestmark = pytest.mark.timeout(300)

MIRROR = "deb.debian.org"
REPO = Path(__file__).resolve().parents[2]


def _fetch(
    factory: BackendFactory, image: BusyboxImage, host: str, port: int, network: NetworkMode
) -> tuple[int, str]:
    lines: list[str] = []
    script = rf"printf 'GET / HTTP/1.0\r\n\r\n' | nc -w 5 {host} {port} 2>&1; echo; echo exit=$?"
    status = run_container(
        factory(ContainerPolicy()),
        image.spec("sh", "-c", script),
        on_line=lambda line: lines.append(line.text),
        network=network,
    )
    return status.exit_code, "\n".join(lines)


def test_host_network_reaches_the_server(
    policy_backend: BackendFactory, busybox: BusyboxImage, loopback_server: int
) -> None:
    # The control: the server answers a container that shares the host's network.
    _, out = _fetch(policy_backend, busybox, "127.0.0.1", loopback_server, "host")
    assert HOST_SECRET in out


@pytest.mark.parametrize("network", ["nat", "none"])
@pytest.mark.parametrize("host", ["127.0.0.1", "10.0.2.2"])
def test_job_networks_do_not_reach_host_loopback(
    policy_backend: BackendFactory,
    busybox: BusyboxImage,
    loopback_server: int,
    network: NetworkMode,
    host: str,
) -> None:
    # 10.0.2.2 is slirp4netns' gateway, which it maps to the host's loopback unless told not to.
    _, out = _fetch(policy_backend, busybox, host, loopback_server, network)
    assert HOST_SECRET not in out
    assert "exit=" in out


def test_nat_reaches_the_outside_world(
    policy_backend: BackendFactory, busybox: BusyboxImage
) -> None:
    # Debian's mirror is what a job's `apt-get`/`pip install` needs; DNS goes through slirp4netns.
    try:
        socket.create_connection((MIRROR, 80), timeout=5).close()
    except OSError:
        pytest.skip(f"this machine does not reach {MIRROR}:80 itself")
    lines: list[str] = []
    script = (
        f"nslookup {MIRROR} >/dev/null && echo resolved; "
        f"nc -w 5 {MIRROR} 80 </dev/null && echo connected"
    )
    status = run_container(
        policy_backend(ContainerPolicy()),
        busybox.spec("sh", "-c", script),
        on_line=lambda line: lines.append(line.text),
        network="nat",
    )
    assert lines == ["resolved", "connected"], lines
    assert status.ok


def test_nat_sandbox_has_its_own_interface_and_dns(
    policy_backend: BackendFactory, busybox: BusyboxImage
) -> None:
    lines: list[str] = []
    run_container(
        policy_backend(ContainerPolicy()),
        busybox.spec("sh", "-c", "ls /sys/class/net; grep nameserver /etc/resolv.conf"),
        on_line=lambda line: lines.append(line.text),
        network="nat",
    )
    assert lines == ["lo", "tap0", "nameserver 10.0.2.3"]


def test_host_network_refused_unless_allowed(
    policy_backend: BackendFactory, busybox: BusyboxImage
) -> None:
    backend = policy_backend(ContainerPolicy(allow_host_network=False))
    with pytest.raises(PolicyError, match=r"asks for `network: host`, which this runner does not"):
        run_container(backend, busybox.spec("true"), network="host")
    assert backend.container_ids == []  # refused before anything started


def _builder(image_store: ImageStore, backend: object, tmp_path: Path) -> Builder:
    return Builder(store=image_store, cache=LayerCache(tmp_path / "cache"), backend=backend)  # type: ignore[arg-type]


def _context(tmp_path: Path, dockerfile: str) -> Path:
    context = tmp_path / "context"
    context.mkdir()
    (context / "Dockerfile").write_text(dockerfile)
    return context


def test_build_run_does_not_reach_host_loopback(
    policy_backend: BackendFactory,
    image_store: ImageStore,
    busybox_image: str,
    loopback_server: int,
    tmp_path: Path,
) -> None:
    context = _context(
        tmp_path,
        f"FROM {busybox_image}\nRUN nc -w 5 127.0.0.1 {loopback_server} </dev/null\n",
    )
    builder = _builder(image_store, policy_backend(ContainerPolicy()), tmp_path)
    with pytest.raises(BuildStepError, match="exited with code 1"):
        builder.build(BuildOptions(context=context, no_cache=True))
    # The same step on the host's network (where allowed) does reach it: the attack is real.
    built = builder.build(BuildOptions(context=context, no_cache=True, network="host"))
    assert built.run_steps == 1


def test_build_run_network_host_refused_unless_allowed(
    policy_backend: BackendFactory, image_store: ImageStore, busybox_image: str, tmp_path: Path
) -> None:
    context = _context(tmp_path, f"FROM {busybox_image}\nRUN --network=host true\n")
    builder = _builder(
        image_store, policy_backend(ContainerPolicy(allow_host_network=False)), tmp_path
    )
    with pytest.raises(DockerfileError, match=r"Dockerfile:2: .*does not allow"):
        builder.build(BuildOptions(context=context, no_cache=True))


def test_add_url_refused_under_network_none(
    policy_backend: BackendFactory,
    image_store: ImageStore,
    busybox_image: str,
    loopback_server: int,
    tmp_path: Path,
) -> None:
    url = f"http://127.0.0.1:{loopback_server}/x"
    context = _context(tmp_path, f"FROM {busybox_image}\nADD {url} /x\n")
    builder = _builder(image_store, policy_backend(ContainerPolicy()), tmp_path)
    with pytest.raises(DockerfileError, match=r"this build has no network \(`network: none`\)"):
        builder.build(BuildOptions(context=context, network="none"))


def test_add_url_fetched_through_the_build_network(
    policy_backend: BackendFactory,
    image_store: ImageStore,
    busybox_image: str,
    loopback_server: int,
    tmp_path: Path,
) -> None:
    # By default ADD fetches as a RUN step would: from the NAT network, which has no way to the
    # host's loopback (before, kapal fetched it from the host whatever the build's network).
    url = f"http://127.0.0.1:{loopback_server}/x"
    context = _context(tmp_path, f"FROM {busybox_image}\nADD {url} /x\n")
    builder = _builder(image_store, policy_backend(ContainerPolicy()), tmp_path)
    with pytest.raises(DockerfileError, match=f"downloading {url} failed"):
        builder.build(BuildOptions(context=context))
    host = builder.build(BuildOptions(context=context, network="host"))
    assert host.image is not None


def test_add_url_on_host_network_refused_unless_allowed(
    policy_backend: BackendFactory,
    image_store: ImageStore,
    busybox_image: str,
    loopback_server: int,
    tmp_path: Path,
) -> None:
    url = f"http://127.0.0.1:{loopback_server}/x"
    context = _context(tmp_path, f"FROM {busybox_image}\nADD {url} /x\n")
    backend = policy_backend(ContainerPolicy(allow_host_network=False))
    with pytest.raises(DockerfileError, match="does not allow"):
        _builder(image_store, backend, tmp_path).build(
            BuildOptions(context=context, network="host")
        )


def _kapal_run(env: dict[str, str], project: Path, pipeline_text: str) -> tuple[int, str]:
    project.mkdir()
    (project / ".kapal.yml").write_text(pipeline_text)
    done = subprocess.run(
        [sys.executable, "-m", "web.cli", "run", str(project)],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
    )
    return done.returncode, done.stdout + done.stderr


def test_kapal_run_refuses_network_host_when_not_allowed(
    kapal_env: dict[str, str], busybox_image: str, loopback_server: int, tmp_path: Path
) -> None:
    pipeline_text = (
        "steal:\n  image: busybox:latest\n  network: host\n"
        f"  script: ['nc -w 5 127.0.0.1 {loopback_server} </dev/null && echo reached']\n"
    )
    env = {**kapal_env, "KAPAL_ALLOW_HOST_NETWORK": "false"}
    code, out = _kapal_run(env, tmp_path / "project", pipeline_text)
    assert code == 1, out
    assert "steal" in out and "asks for `network: host`, which this runner does not allow" in out
    assert "reached" not in out.replace("echo reached", "")
    assert "Traceback" not in out


def test_kapal_run_job_default_network_is_nat(
    kapal_env: dict[str, str], busybox_image: str, loopback_server: int, tmp_path: Path
) -> None:
    pipeline_text = (
        "probe:\n  image: busybox:latest\n  script:\n"
        "    - ls /sys/class/net | tr '\\n' ' '; echo\n"
        f"    - nc -w 5 127.0.0.1 {loopback_server} </dev/null && echo reached || echo refused\n"
    )
    code, out = _kapal_run(kapal_env, tmp_path / "project", pipeline_text)
    assert code == 0, out
    assert "lo tap0" in out
    assert "[probe] refused" in out
