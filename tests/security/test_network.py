"""Issue 8 item 9: jobs and builds reach the outside world but not the host's services.

Each test starts an HTTP server on the host's 127.0.0.1 (what a CI worker's database, Redis or
admin port looks like) and plays a pipeline trying to reach it: a job on the default network,
`network: host` where the operator forbids it, a build RUN step, and `ADD http://127.0.0.1/...`.
The firewall of a `"nat"` sandbox (runner.runtime.firewall) gets the same treatment: servers on
the host's non-loopback address and on a metadata address (169.254.169.254, on a dummy interface
the tests add) that no job may reach, unless the operator allows their networks, and jobs
trying to lift the rules (nftables, raw and packet sockets).
"""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from runner.build.builder import Builder, BuildOptions
from runner.build.cache import LayerCache
from runner.errors import BuildStepError, ContainerRuntimeError, DockerfileError
from runner.images import ImageStore
from runner.runtime import firewall
from runner.runtime.backend import ContainerSpec, LogLine, Mount, NetworkMode, SandboxSpec
from runner.runtime.oneshot import run_container
from runner.runtime.policy import ContainerPolicy, PolicyError
from tests.runner.runtime.conftest import BusyboxImage
from tests.security.containers import HOST_SECRET, BackendFactory, host_server

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


def test_build_steps_do_not_reach_the_host_addresses(
    policy_backend: BackendFactory,
    image_store: ImageStore,
    busybox_image: str,
    host_address: str,
    lan_server: int,
    tmp_path: Path,
) -> None:
    # RUN steps run in the backend's sandboxes; `ADD <url>` fetches from a namespace of its own.
    url = f"http://{host_address}:{lan_server}/x"
    (tmp_path / "run").mkdir()
    (tmp_path / "add").mkdir()
    run = _context(
        tmp_path / "run",
        f"FROM {busybox_image}\nRUN nc -w 5 {host_address} {lan_server} </dev/null\n",
    )
    add = _context(tmp_path / "add", f"FROM {busybox_image}\nADD {url} /x\n")
    builder = _builder(image_store, policy_backend(ContainerPolicy()), tmp_path)
    with pytest.raises(BuildStepError, match="exited with code 1"):
        builder.build(BuildOptions(context=run, no_cache=True))
    with pytest.raises(DockerfileError, match=f"downloading {url} failed"):
        builder.build(BuildOptions(context=add))
    # The operator's allowed networks hold for both.
    allowed = ContainerPolicy(allowed_networks=(f"{host_address}/32",))
    builder = _builder(image_store, policy_backend(allowed), tmp_path / "allowed")
    assert builder.build(BuildOptions(context=run, no_cache=True)).run_steps == 1
    assert builder.build(BuildOptions(context=add)).image is not None


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


# -- the firewall of "nat" sandboxes ---------------------------------------------------------

METADATA = "169.254.169.254"
DUMMY = "kapaltest0"
HOST_LIB = Path("/lib64/ld-linux-x86-64.so.2").resolve().parent


@pytest.fixture(scope="module")
def host_address() -> str:
    """The host's address on its default route: where a service bound to 0.0.0.0 answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("203.0.113.1", 9))  # sends nothing: only picks the source address
        except OSError:
            pytest.skip("this machine has no default route")
        address: str = probe.getsockname()[0]
    if address.startswith("127."):
        pytest.skip("this machine has no address but loopback")
    return address


@pytest.fixture(scope="module")
def lan_server(host_address: str) -> Iterator[int]:
    """A server on the host's non-loopback address that no job may reach; yields its port."""
    with host_server(host_address) as port:
        yield port


@pytest.fixture(scope="module")
def metadata_server() -> Iterator[int]:
    """A server at 169.254.169.254 (a cloud's metadata service) on an interface of its own."""

    def ip(*args: str, check: bool = True) -> None:
        subprocess.run(["ip", *args], check=check, capture_output=True)

    ip("link", "del", DUMMY, check=False)  # a killed run's
    try:
        try:
            ip("link", "add", DUMMY, "type", "dummy")
        except subprocess.CalledProcessError:  # no dummy driver: a bridge without ports will do
            ip("link", "add", DUMMY, "type", "bridge")
        ip("addr", "add", f"{METADATA}/32", "dev", DUMMY)
        ip("link", "set", DUMMY, "up")
        with host_server(METADATA) as port:
            yield port
    finally:
        ip("link", "del", DUMMY, check=False)


def _run(
    factory: BackendFactory, policy: ContainerPolicy, spec: ContainerSpec, network: NetworkMode
) -> str:
    lines: list[str] = []

    def on_line(line: LogLine) -> None:
        lines.append(line.text)

    run_container(factory(policy), spec, on_line=on_line, network=network)
    return "\n".join(lines)


def _fetch_each(targets: list[tuple[str, int]]) -> str:
    """A script fetching each target, printing the answer (or nc's error) then `done <host>`."""
    return "".join(
        rf"printf 'GET / HTTP/1.0\r\n\r\n' | nc -w 5 {host} {port} 2>&1; echo; echo done {host}; "
        for host, port in targets
    )


def _answers(out: str) -> dict[str, str]:
    """What each target of `_fetch_each` answered, by host."""
    answers: dict[str, str] = {}
    said: list[str] = []
    for line in out.splitlines():
        if line.startswith("done "):
            answers[line.removeprefix("done ")] = "\n".join(said)
            said = []
        else:
            said.append(line)
    return answers


def test_nat_refuses_the_host_addresses_and_metadata(
    policy_backend: BackendFactory,
    busybox: BusyboxImage,
    host_address: str,
    lan_server: int,
    metadata_server: int,
) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind((host_address, 0))
        udp.settimeout(2)
        python, mounts = _host_python(_SEND_UDP.format(host_address, udp.getsockname()[1]))
        script = f"{_quoted(python)}; " + _fetch_each(
            [(host_address, lan_server), (METADATA, metadata_server)]
        )
        spec = busybox.spec("sh", "-c", script, mounts=mounts)
        # The control: on the host's network all answer, so the attack below is real.
        host = _answers(_run(policy_backend, ContainerPolicy(), spec, "host"))
        assert HOST_SECRET in host[host_address] and HOST_SECRET in host[METADATA], host
        assert udp.recv(64) == b"probe"
        nat = _answers(_run(policy_backend, ContainerPolicy(), spec, "nat"))
        for target in (host_address, METADATA):
            assert HOST_SECRET not in nat[target], nat
            # refused at once (a reset), not left to time out
            assert "Connection refused" in nat[target], nat
        udp.settimeout(0.5)  # sent before the fetches above: it would be here by now
        with pytest.raises(TimeoutError):  # UDP too
            udp.recv(64)


def test_allowed_networks_open_only_their_holes(
    policy_backend: BackendFactory,
    busybox: BusyboxImage,
    host_address: str,
    lan_server: int,
    metadata_server: int,
) -> None:
    policy = ContainerPolicy(allowed_networks=(f"{host_address}/32",))
    script = _fetch_each([(host_address, lan_server), (METADATA, metadata_server)])
    nat = _answers(_run(policy_backend, policy, busybox.spec("sh", "-c", script), "nat"))
    assert HOST_SECRET in nat[host_address], nat
    assert HOST_SECRET not in nat[METADATA] and "Connection refused" in nat[METADATA], nat


def _host_python(code: str) -> tuple[list[str], tuple[Mount, ...]]:
    """argv and mounts running this interpreter (and its libraries) inside a busybox container."""
    prefix = Path(sys.base_prefix)
    executable = Path(sys.executable).resolve().relative_to(prefix)
    argv = [
        f"/hostlib/{_loader()}",
        "--library-path",
        "/hostlib:/hostpython/lib",
        f"/hostpython/{executable}",
        "-I",
        "-c",
        code,
    ]
    mounts = (Mount(HOST_LIB, "/hostlib", True), Mount(prefix, "/hostpython", True))
    return argv, mounts


def _loader() -> str:
    """The dynamic loader's name in the host's library directory."""
    loader = Path("/lib64/ld-linux-x86-64.so.2")
    if not loader.exists():
        pytest.skip("the probes run the host's binaries with its x86-64 loader")
    return loader.name


_SEND_UDP = """
import socket
with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
    udp.sendto(b"probe", ("{}", {}))
"""

_SOCKETS = r"""
import errno, socket
for name, family, kind, proto in (
    ("packet", socket.AF_PACKET, socket.SOCK_RAW, 0),
    ("raw", socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP),
):
    try:
        socket.socket(family, kind, proto).close()
        print(name, "opened")
    except OSError as err:
        print(name, errno.errorcode[err.errno])
"""

_PING = r"""
import socket
with socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP) as ping:
    print("ping socket opened")
    ping.settimeout(5)
    ping.sendto(b"\x08\x00\x00\x00\x00\x01\x00\x01kapal", ("10.0.2.2", 0))
    reply = ping.recv(64)
    print("echo reply" if reply[:1] == b"\x00" else f"unexpected {reply!r}")
"""


def _quoted(argv: list[str]) -> str:
    return " ".join("'" + arg.replace("'", "'\\''") + "'" for arg in argv)


def test_job_cannot_lift_the_firewall(
    policy_backend: BackendFactory,
    busybox: BusyboxImage,
    host_address: str,
    lan_server: int,
) -> None:
    python, mounts = _host_python(_SOCKETS)
    nft = [f"/hostlib/{_loader()}", "--library-path", "/hostlib", "/hostnft"]
    script = (
        f"{_quoted(python)}; "
        f"{_quoted(nft)} flush ruleset 2>&1 | head -1; "
        f"{_quoted(nft)} delete table inet kapal 2>&1 | head -1; "
        + _fetch_each([(host_address, lan_server)])
    )
    mounts += (Mount(Path("/usr/sbin/nft"), "/hostnft", True),)
    backend = policy_backend(ContainerPolicy())
    sandbox = backend.setup(SandboxSpec(name="lift", network="nat"))
    try:
        lines: list[str] = []
        container = backend.start(sandbox, busybox.spec("sh", "-c", script, mounts=mounts))
        lines.extend(line.text for line in backend.logs(container))
        backend.wait(container)
        out = "\n".join(lines)
        # No CAP_NET_RAW: no frames written beneath the rules; no CAP_NET_ADMIN: rules stay.
        assert lines[:2] == ["packet EPERM", "raw EPERM"], out
        assert lines[2].startswith("Error:") and "Operation not permitted" in lines[2], out
        assert "Operation not permitted" in lines[3], out
        assert "Connection refused" in _answers(out)[host_address], out
        # Seen from the host, the sandbox's table is whole.
        pin = backend.paths.sandbox_dir(sandbox.id) / "netns"
        listed = subprocess.run(
            ["nsenter", f"--net={pin}", "/usr/sbin/nft", "list", "table", "inet", "kapal"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert f"{host_address}" in listed and "169.254.0.0/16" in listed, listed
    finally:
        backend.teardown(sandbox)


def test_ping_works_without_raw_sockets(
    policy_backend: BackendFactory, busybox: BusyboxImage
) -> None:
    # ICMP datagram sockets (net.ipv4.ping_group_range) are what iputils' ping falls back to.
    argv, mounts = _host_python(_PING)
    spec = busybox.spec(*argv, mounts=mounts, entrypoint=())
    out = _run(policy_backend, ContainerPolicy(), spec, "nat")
    assert out.splitlines() == ["ping socket opened", "echo reply"], out


@pytest.mark.parametrize("broken", ["missing", "failing"])
def test_sandbox_does_not_start_without_its_firewall(
    policy_backend: BackendFactory,
    busybox: BusyboxImage,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    broken: str,
) -> None:
    # What a host without nftables, or a kernel without nf_tables, looks like to kapal.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("slirp4netns", "unshare"):
        found = subprocess.run(["sh", "-c", f"command -v {tool}"], capture_output=True, text=True)
        (bin_dir / tool).symlink_to(found.stdout.strip())
    if broken == "failing":
        fake = bin_dir / "nft"
        fake.write_text(
            "#!/bin/sh\necho 'Error: Could not process rule: No such file' >&2\nexit 1\n"
        )
        fake.chmod(0o755)
    backend = policy_backend(ContainerPolicy())
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setattr(firewall, "_NFT_FALLBACK", str(tmp_path / "no-nft"))
    expected = (
        r"`nft` is not installed: apt-get install nftables"
        if broken == "missing"
        else r"nft -f failed: Error: Could not process rule.*modprobe nf_tables"
    )
    with pytest.raises(ContainerRuntimeError, match=expected):
        backend.setup(SandboxSpec(name="job", network="nat"))
    assert backend.sandbox_ids  # it was tried; policy_backend checks nothing was left behind
    assert not backend.paths.sandbox_dir(backend.sandbox_ids[0]).exists()


@pytest.mark.parametrize("allowed", [False, True])
def test_kapal_run_firewall_and_allowed_networks(
    kapal_env: dict[str, str],
    busybox_image: str,
    host_address: str,
    lan_server: int,
    tmp_path: Path,
    allowed: bool,
) -> None:
    # KAPAL_JOB_ALLOWED_NETWORKS goes from kapal run's settings to the job's sandbox.
    pipeline_text = (
        "probe:\n  image: busybox:latest\n  script:\n"
        f"    - nc -w 5 {host_address} {lan_server} </dev/null && echo reached || echo refused\n"
    )
    env = dict(kapal_env)
    if allowed:
        env["KAPAL_JOB_ALLOWED_NETWORKS"] = f"{host_address}/32"
    code, out = _kapal_run(env, tmp_path / "project", pipeline_text)
    assert code == 0, out
    assert ("[probe] reached" if allowed else "[probe] refused") in out, out


def test_kapal_run_refuses_a_malformed_allow_list(
    kapal_env: dict[str, str], busybox_image: str, tmp_path: Path
) -> None:
    env = {**kapal_env, "KAPAL_JOB_ALLOWED_NETWORKS": "10.0.0.0/8,intranet"}
    code, out = _kapal_run(env, tmp_path / "project", "probe:\n  script: [true]\n")
    assert code != 0 and "Traceback" not in out, out
    assert "KAPAL_JOB_ALLOWED_NETWORKS: 'intranet' is not an address or a network" in out, out


@pytest.mark.parametrize("allowed", [False, True])
def test_kapal_exec_nat_firewall_and_allowed_networks(
    kapal_env: dict[str, str],
    busybox_image: str,
    host_address: str,
    lan_server: int,
    allowed: bool,
) -> None:
    # `kapal exec --network nat` gets a job's firewall, and the operator's allow list opens it.
    env = dict(kapal_env)
    if allowed:
        env["KAPAL_JOB_ALLOWED_NETWORKS"] = f"{host_address}/32"
    exec_nat = [sys.executable, "-m", "web.cli", "exec", "--network", "nat", busybox_image]
    done = subprocess.run(
        [*exec_nat, "--", "sh", "-c", _fetch_each([(host_address, lan_server)])],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0 and done.stderr == "", done.stderr
    answer = _answers(done.stdout)[host_address]
    if allowed:
        assert HOST_SECRET in answer, done.stdout
    else:
        assert HOST_SECRET not in answer and "Connection refused" in answer, done.stdout
