"""Peer check: the same image config and overrides give the same process as `docker run`.

A private dockerd (tests/support/dockerd.py) runs the busybox root filesystem imported with an
Entrypoint, Cmd, Env, WorkingDir; kapal runs the same rootfs with the same config.
"""

from __future__ import annotations

import json
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from runner.images import ImageStore
from runner.images.archives import import_archive
from runner.images.bootstrap import write_busybox_tar
from runner.runtime.backend import ContainerSpec, ImageDefaults, LogLine
from runner.runtime.oneshot import run_container
from tests.runner.runtime.conftest import BusyboxImage, RecordingBackend
from tests.support.dockerd import DockerEngine, docker_installed, running_dockerd

pytestmark = [
    pytest.mark.slow,
    pytest.mark.docker,
    pytest.mark.timeout(300),
    pytest.mark.skipif(not docker_installed(), reason="Debian's docker.io is not installed"),
]

CONFIG = {
    "Entrypoint": ["sh", "-c", 'echo "$0 $* | $GREETING | $(pwd) | $(id -u)"'],
    "Cmd": ["from-cmd", "x"],
    "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "GREETING=hi"],
    "WorkingDir": "/srv",
}
CASES = [
    ([], {}),
    (["arg1", "arg2"], {}),
    (["echo", "no entrypoint"], {"entrypoint": ""}),
    ([], {"entrypoint": "pwd"}),
    (["given"], {"env": "GREETING=changed"}),
    (["given"], {"user": "65534:65534", "workdir": "/tmp"}),
]


@pytest.fixture(scope="module")
def docker_image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DockerEngine, str]]:
    """A private engine holding the busybox rootfs imported with CONFIG."""
    tar = tmp_path_factory.mktemp("peer") / "busybox.tar"
    write_busybox_tar(tar, 0)
    changes = [
        f"ENTRYPOINT {json.dumps(CONFIG['Entrypoint'])}",
        f"CMD {json.dumps(CONFIG['Cmd'])}",
        "ENV GREETING=hi",
        f"WORKDIR {CONFIG['WorkingDir']}",
    ]
    with running_dockerd() as engine:
        args = [item for change in changes for item in ("--change", change)]
        engine.docker("import", *args, str(tar), "kapal-peer")
        yield engine, "kapal-peer"


def docker_output(engine: DockerEngine, image: str, argv: list[str], opts: dict[str, str]) -> str:
    """stdout of `docker run --rm --network=none` with the given overrides."""
    flags: list[str] = []
    if "entrypoint" in opts:
        flags += ["--entrypoint", opts["entrypoint"]]
    if "env" in opts:
        flags += ["-e", opts["env"]]
    if "user" in opts:
        flags += ["-u", opts["user"]]
    if "workdir" in opts:
        flags += ["-w", opts["workdir"]]
    return engine.docker("run", "--rm", "--network=none", *flags, image, *argv)


def kapal_output(
    backend: RecordingBackend, busybox: BusyboxImage, argv: list[str], opts: dict[str, str]
) -> str:
    """stdout of the same container run by kapal."""
    entrypoint = opts.get("entrypoint")
    env = dict([opts["env"].split("=", 1)]) if "env" in opts else {}
    spec = ContainerSpec(
        layers=busybox.layers,
        image=ImageDefaults(
            env=tuple(CONFIG["Env"]),
            working_dir=str(CONFIG["WorkingDir"]),
            entrypoint=tuple(CONFIG["Entrypoint"]),
            cmd=tuple(CONFIG["Cmd"]),
        ),
        command=tuple(argv) or None,
        entrypoint=None if entrypoint is None else ((entrypoint,) if entrypoint else ()),
        env=env,
        user=opts.get("user"),
        cwd=opts.get("workdir"),
    )
    lines: list[LogLine] = []
    status = run_container(backend, spec, on_line=lines.append)
    assert status.ok, lines
    return "".join(line.text + "\n" for line in lines if line.stream == "stdout")


@pytest.mark.parametrize(("argv", "opts"), CASES)
def test_same_process_as_docker_run(
    docker_image: tuple[DockerEngine, str],
    backend: RecordingBackend,
    busybox: BusyboxImage,
    argv: list[str],
    opts: dict[str, str],
) -> None:
    engine, image = docker_image
    expected = docker_output(engine, image, argv, opts)
    assert expected.strip(), "docker printed nothing: the comparison would prove nothing"
    assert kapal_output(backend, busybox, argv, opts) == expected


def test_image_saved_by_docker_runs_the_same_in_kapal(
    docker_image: tuple[DockerEngine, str], backend: RecordingBackend, tmp_path: Path
) -> None:
    # `docker save` -> `kapal image import`: layers, Entrypoint, Cmd, Env and WorkingDir survive.
    engine, image = docker_image
    archive = tmp_path / "saved.tar"
    engine.docker("save", "-o", str(archive), image)
    store = ImageStore(tmp_path / "store")
    import_archive(store, archive)
    saved = store.resolve(f"{image}:latest")
    spec = ContainerSpec(
        layers=tuple(store.unpacked_layers(saved)),
        image=ImageDefaults.from_image_config(saved.config),
        command=("arg1",),
    )
    lines: list[LogLine] = []
    status = run_container(backend, spec, on_line=lines.append)
    assert status.ok, lines
    stdout = "".join(line.text + "\n" for line in lines if line.stream == "stdout")
    assert "| hi | /srv |" in stdout, "the image config did not survive docker save + import"
    assert stdout == docker_output(engine, image, ["arg1"], {})


def test_root_filesystems_match(busybox: BusyboxImage, tmp_path: Path) -> None:
    # The docker side imports write_busybox_tar's output; kapal's layer must be the same tree.
    tar = tmp_path / "busybox.tar"
    write_busybox_tar(tar, 0)
    with tarfile.open(tar) as archive:
        names = {m.name.rstrip("/") for m in archive.getmembers()}
    layer = busybox.layers[0]
    on_disk = {str(p.relative_to(layer)) for p in layer.rglob("*")}
    assert names == on_disk
