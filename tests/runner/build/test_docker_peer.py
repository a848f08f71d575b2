"""Peer check: the same Dockerfiles built by kapal and by `docker build` give the same rootfs.

Both builders start from the same base (kapal's busybox image, exported by kapal, `docker load`ed).
Docker runs its legacy builder (Debian's docker.io has no BuildKit/buildx), which does not know
heredocs: for the heredoc case docker builds the equivalent Dockerfile without heredocs.
What legitimately differs is listed in `tests.runner.build.peer.IGNORED`.
"""

from __future__ import annotations

import io
import itertools
import json
import tarfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from runner.errors import DockerfileError
from runner.images import ImageStore
from runner.images.archives import export_images
from tests.runner.build.conftest import BuildHelper
from tests.runner.build.peer import (
    DockerPeer,
    differences,
    docker_daemon,
    rootfs_of_kapal,
    rootfs_of_tar,
)
from tests.support.dockerd import docker_installed

pytestmark = [
    pytest.mark.slow,
    pytest.mark.docker,
    pytest.mark.skipif(not docker_installed(), reason="Debian's docker.io is not installed"),
]
BASE = "busybox:latest"
_names = itertools.count()
_CONFIG_KEYS = (
    "Env",
    "Cmd",
    "Entrypoint",
    "WorkingDir",
    "User",
    "Labels",
    "ExposedPorts",
    "Volumes",
    "StopSignal",
    "Healthcheck",
    "OnBuild",
)


@pytest.fixture(scope="module")
def docker(
    image_store: ImageStore, busybox_image: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DockerPeer]:
    """A private dockerd with kapal's busybox image loaded into it."""
    archive = tmp_path_factory.mktemp("peer") / "busybox.tar"
    export_images(image_store, [busybox_image], archive)
    with docker_daemon() as peer:
        peer.run("load", "-i", str(archive))
        yield peer


def _write(ctx: Path, files: dict[str, str]) -> None:
    for name, content in files.items():
        path = ctx / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            textwrap.dedent(content).lstrip() if name.endswith("Dockerfile") else content
        )


def _compare(
    builds: BuildHelper,
    docker: DockerPeer,
    files: dict[str, str],
    *,
    docker_dockerfile: str | None = None,
    build_args: dict[str, str] | None = None,
    target: str | None = None,
) -> None:
    ctx = builds.root / f"ctx{next(_names)}"
    ctx.mkdir()
    _write(ctx, files)
    result = builds.build(ctx, build_args=build_args or {}, target=target)
    ours = rootfs_of_kapal(builds.store.unpacked_layers(result.image))
    dockerfile = ctx / "Dockerfile"
    if docker_dockerfile is not None:
        dockerfile = builds.root / f"docker{next(_names)}.Dockerfile"
        dockerfile.write_text(textwrap.dedent(docker_dockerfile).lstrip())
    tag = f"peer-{next(_names)}:latest"
    args = ["build", "-q", "--network", "none", "-t", tag, "-f", str(dockerfile)]
    for name, value in (build_args or {}).items():
        args += ["--build-arg", f"{name}={value}"]
    if target:
        args += ["--target", target]
    docker.run(*args, str(ctx))
    theirs = rootfs_of_tar(docker.export_rootfs(tag, builds.root / f"{tag}.tar"))
    assert differences(ours, theirs) == []
    theirs_config = json.loads(docker.run("inspect", "--format", "{{json .Config}}", tag))
    ours_config = result.image.config["config"]
    for key in _CONFIG_KEYS:
        assert (key, ours_config.get(key) or None) == (key, theirs_config.get(key) or None)


def test_peer_multi_stage_and_copy_from(builds: BuildHelper, docker: DockerPeer) -> None:
    dockerfile = f"""
        FROM {BASE} AS build
        RUN mkdir -p /out/bin && echo built > /out/bin/tool && chmod 755 /out/bin/tool
        FROM {BASE} AS unused
        RUN echo never > /never
        FROM {BASE}
        COPY --from=build /out /opt/app
        COPY --from=0 /out/bin/tool /usr/local/bin/tool
        """
    _compare(builds, docker, {"Dockerfile": dockerfile})


def test_peer_onbuild_triggers_of_a_base_image(builds: BuildHelper, docker: DockerPeer) -> None:
    # the parent is built by each builder under the same tag; the child runs its triggers first
    # (ARG, COPY from the child's context, RUN, LABEL) and keeps only its own ONBUILD line
    parent = builds.root / "onbuild-parent"
    parent.mkdir()
    _write(
        parent,
        {
            "Dockerfile": f"""
                FROM {BASE}
                ONBUILD ARG FLAVOUR=plain
                ONBUILD COPY app.txt /onbuild/
                ONBUILD RUN echo "flavour=$FLAVOUR" > /onbuild/flavour
                ONBUILD LABEL from.trigger=yes
                """
        },
    )
    builds.build(parent, tags=("onbuild-parent:1",))
    docker.run("build", "-q", "--network", "none", "-t", "onbuild-parent:1", str(parent))
    child = """
        FROM onbuild-parent:1
        ONBUILD RUN echo own
        RUN cat /onbuild/flavour /onbuild/app.txt > /onbuild/seen
        """
    _compare(builds, docker, {"Dockerfile": child, "app.txt": "child-app"})


def test_peer_dockerignore(builds: BuildHelper, docker: DockerPeer) -> None:
    files = {
        "Dockerfile": f"FROM {BASE}\nCOPY . /src/\n",
        ".dockerignore": (
            "*.log\n**/tmp\nsecrets\n!secrets/public.txt\nDockerfile\ndocs/**\n!docs/public\n"
        ),
        "a.txt": "a",
        "docs/draft.md": "d",
        "docs/public/index.html": "i",
        "docs/public/img/logo.svg": "l",
        "debug.log": "x",
        "deep/er/tmp": "x",
        "deep/er/kept.txt": "k",
        "secrets/key": "k",
        "secrets/public.txt": "p",
    }
    _compare(builds, docker, files)


def test_peer_whiteouts(builds: BuildHelper, docker: DockerPeer) -> None:
    dockerfile = f"""
        FROM {BASE}
        RUN mkdir -p /data/keep /data/gone /data/replace && echo 1 > /data/keep/f \\
            && echo 2 > /data/gone/f && echo 3 > /data/replace/old && echo 4 > /data/file
        RUN rm -r /data/gone /data/file && rm -r /data/replace && mkdir /data/replace \\
            && echo new > /data/replace/new && rm /bin/ls
        """
    _compare(builds, docker, {"Dockerfile": dockerfile})


def test_peer_user_workdir_env(builds: BuildHelper, docker: DockerPeer) -> None:
    dockerfile = f"""
        FROM {BASE}
        ENV APP_HOME=/srv/app GREETING="hi there"
        WORKDIR $APP_HOME
        RUN echo "$GREETING" > greeting && pwd > where
        COPY --chown=1000:1000 app.txt ./
        COPY --chown="1000:0"\tapp.txt quoted-flag.txt
        COPY -- app.txt /dash-dash/
        COPY --chown=1000:1000 app.txt /made/for/owner/
        COPY --chown=1000:1000 app.txt sub/new/named.txt
        USER 1000:1000
        RUN id -u > /tmp/uid && id -g >> /tmp/uid
        WORKDIR sub
        LABEL org.example.app="peer test" tier=web
        LABEL org.example.legacy the legacy form
        EXPOSE 8080 9000/udp
        VOLUME /data
        STOPSIGNAL SIGQUIT
        HEALTHCHECK --interval=10s --retries=2 CMD wget -q -O- localhost:8080
        ENTRYPOINT ["/bin/sh", "-c"]
        CMD echo "$GREETING"
        ONBUILD RUN echo child
        """
    _compare(builds, docker, {"Dockerfile": dockerfile, "app.txt": "app"})


def test_peer_heredocs(builds: BuildHelper, docker: DockerPeer) -> None:
    kapal = f"""
        FROM {BASE}
        ARG NAME=world
        RUN <<EOF
        mkdir -p /etc/app
        echo "hello $NAME" > /etc/app/greeting
        EOF
        COPY <<CONF /etc/app/app.conf
        name=$NAME
        CONF
        RUN cat <<A > /a.txt
        first line
        A
        """
    plain = f"""
        FROM {BASE}
        ARG NAME=world
        RUN mkdir -p /etc/app && echo "hello $NAME" > /etc/app/greeting
        COPY app.conf /etc/app/app.conf
        RUN echo "first line" > /a.txt
        """
    files = {"Dockerfile": kapal, "app.conf": "name=world\n"}
    _compare(builds, docker, files, docker_dockerfile=plain)


@pytest.mark.parametrize(
    ("line", "docker_says"),
    [
        ('CMD [ "echo", [ "nested json" ] ]', "arrays must be comprised of strings only"),
        ("ENV PATH", "ENV must have two arguments"),
    ],
)
def test_peer_parse_errors(
    builds: BuildHelper, docker: DockerPeer, line: str, docker_says: str
) -> None:
    ctx = builds.root / f"ctx{next(_names)}"
    ctx.mkdir()
    _write(ctx, {"Dockerfile": f"FROM {BASE}\n{line}\n"})
    with pytest.raises(DockerfileError, match=r"Dockerfile:2: "):
        builds.build(ctx)
    with pytest.raises(RuntimeError, match=docker_says):
        docker.run("build", "-q", "--network", "none", str(ctx))


def test_peer_arg_scoping(builds: BuildHelper, docker: DockerPeer) -> None:
    dockerfile = """
        ARG TAG=latest
        ARG GLOBAL=global
        FROM busybox:${TAG}
        ARG TAG
        ARG LOCAL=default
        ARG GIVEN
        ENV FROM_ENV=${LOCAL}-${GLOBAL:-unset}
        RUN echo "tag=$TAG local=$LOCAL given=$GIVEN global=$GLOBAL env=$FROM_ENV" > /args
        """
    _compare(builds, docker, {"Dockerfile": dockerfile}, build_args={"GIVEN": "cli"})


def test_peer_copy_rules(builds: BuildHelper, docker: DockerPeer) -> None:
    dockerfile = f"""
        FROM {BASE}
        COPY *.txt /texts/
        COPY dir /contents
        COPY dir/nested/ /nested-contents/
        COPY run.sh /usr/local/bin/run
        COPY one.txt /renamed.txt
        COPY dir/nested/deep.txt /made/parents/
        """
    files = {
        "Dockerfile": dockerfile,
        "one.txt": "1",
        "two.txt": "2",
        "dir/top": "t",
        "dir/nested/deep.txt": "d",
        "run.sh": "#!/bin/sh\necho run\n",
    }
    _compare(builds, docker, files)


def test_peer_add_local_tar_and_target(builds: BuildHelper, docker: DockerPeer) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        # setuid/setgid and group/other-write bits and owners survive ADD's extraction in Docker
        for name, data, mode, owner in (
            ("pkg/a", b"a", 0o640, 0),
            ("pkg/sub/b", b"bb", 0o640, 0),
            ("pkg/bin/su", b"su", 0o4755, 0),
            ("pkg/shared", b"s", 0o2775, 1000),
            ("pkg/open", b"o", 0o666, 12),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = mode
            info.uid = info.gid = owner
            tar.addfile(info, io.BytesIO(data))
        sticky = tarfile.TarInfo("pkg/tmp")
        sticky.type = tarfile.DIRTYPE
        sticky.mode = 0o1777
        tar.addfile(sticky)
    dockerfile = f"""
        FROM {BASE} AS first
        ADD bundle.tar /opt/
        RUN echo stage-one > /opt/marker
        FROM first AS second
        RUN echo not-in-target > /opt/second
        """
    files = {"Dockerfile": dockerfile}
    _compare_with_binary(builds, docker, files, {"bundle.tar": buffer.getvalue()}, "first")


def _compare_with_binary(
    builds: BuildHelper,
    docker: DockerPeer,
    files: dict[str, str],
    binary: dict[str, bytes],
    target: str,
) -> None:
    ctx = builds.root / f"ctx{next(_names)}"
    ctx.mkdir()
    _write(ctx, files)
    for name, data in binary.items():
        (ctx / name).write_bytes(data)
    result = builds.build(ctx, target=target)
    ours = rootfs_of_kapal(builds.store.unpacked_layers(result.image))
    tag = f"peer-{next(_names)}:latest"
    docker.run("build", "-q", "--network", "none", "--target", target, "-t", tag, str(ctx))
    theirs = rootfs_of_tar(docker.export_rootfs(tag, builds.root / f"{tag}.tar"))
    assert differences(ours, theirs) == []


def test_docker_loads_and_runs_kapal_image(
    builds: BuildHelper, docker: DockerPeer, image_store: ImageStore
) -> None:
    ctx = builds.root / "runctx"
    ctx.mkdir()
    _write(
        ctx,
        {
            "Dockerfile": f"""
                FROM {BASE}
                COPY hello.txt /hello.txt
                RUN echo from-run >> /hello.txt
                ENV WHO=kapal
                CMD ["sh", "-c", "cat /hello.txt; echo built by $WHO"]
                """,
            "hello.txt": "hello\n",
        },
    )
    builds.build(ctx, tags=("kapal-built/peer:1",))
    archive = builds.root / "built.tar"
    export_images(image_store, ["kapal-built/peer:1"], archive)
    docker.run("load", "-i", str(archive))
    out = docker.run("run", "--rm", "--network", "none", "kapal-built/peer:1")
    assert out.splitlines() == ["hello", "from-run", "built by kapal"]
