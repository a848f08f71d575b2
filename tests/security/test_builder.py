"""Issue 8 items 3, 4, 5 and 6 (Dockerfile): the builder never reads or writes the host through
symlinks of a build context, an ADDed archive, or a Dockerfile path.

Every test builds for real (the embedded builder, busybox base image) and checks that the host
directory is untouched and that its secret is in no layer of the result.
"""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from runner.build.builder import Builder, BuildOptions, BuildResult
from runner.build.cache import LayerCache
from runner.errors import BuildError, DockerfileError
from runner.images import ImageStore
from runner.job_images import BuildRequest, embedded_builder
from runner.runtime.embedded import EmbeddedBackend
from runner.settings import RunnerSettings
from tests.security import hostfiles
from tests.security.hostfiles import HostDir, contains_secret
from web.cli import build_app

pytestmark = pytest.mark.timeout(600)
host_dir = hostfiles.host_dir


class _Quiet:
    def step(self, number: int, total: int, stage: str, text: str) -> None:
        pass

    def cached(self) -> None:
        pass

    def line(self, line: object) -> None:
        pass

    def done(self, seconds: float) -> None:
        pass

    def note(self, text: str) -> None:
        pass


BuildFn = Callable[..., BuildResult]


@pytest.fixture
def build(
    image_store: ImageStore, kapal_settings: RunnerSettings, busybox_image: str, tmp_path: Path
) -> BuildFn:
    """Build a context with the real builder; returns the result (DockerfileError propagates)."""

    def run(context: Path, **options: Any) -> BuildResult:
        builder = Builder(
            store=image_store,
            cache=LayerCache(tmp_path / "build-cache"),
            backend=EmbeddedBackend(kapal_settings),
            reporter=_Quiet(),
        )
        return builder.build(BuildOptions(context=context, no_cache=True, **options))

    return run


def _context(root: Path, dockerfile: str, files: dict[str, bytes] | None = None) -> Path:
    ctx = root / "ctx"
    ctx.mkdir(parents=True, exist_ok=True)
    (ctx / "Dockerfile").write_text(textwrap.dedent(dockerfile).lstrip())
    for name, data in (files or {}).items():
        (ctx / name).parent.mkdir(parents=True, exist_ok=True)
        (ctx / name).write_bytes(data)
    return ctx


def _layers_hold(store: ImageStore, result: BuildResult, secret: str) -> list[str]:
    return [
        hit for tree in store.unpacked_layers(result.image) for hit in contains_secret(tree, secret)
    ]


def _image_files(store: ImageStore, result: BuildResult) -> set[str]:
    found = set()
    for tree in store.unpacked_layers(result.image):
        for dirpath, dirnames, filenames in os.walk(tree):
            for name in dirnames + filenames:
                found.add("/" + os.path.relpath(os.path.join(dirpath, name), tree))
    return found


@pytest.mark.parametrize(
    "source", ["d/secret.txt", "d/sub/note.txt", "d/sub/", "root{host}/secret.txt", "root{host}/"]
)
def test_copy_from_a_context_symlink_to_the_host_copies_no_host_file(
    build: BuildFn, image_store: ImageStore, host_dir: HostDir, tmp_path: Path, source: str
) -> None:
    ctx = _context(tmp_path, f"FROM busybox:latest\nCOPY {source.format(host=host_dir.path)} /t/\n")
    os.symlink(host_dir.path, ctx / "d")
    os.symlink("/", ctx / "root")
    try:
        result = build(ctx)
    except DockerfileError as exc:
        assert "not found in the build context" in str(exc)
        assert host_dir.secret not in str(exc)
        return
    assert _layers_hold(image_store, result, host_dir.secret) == []


def test_context_symlinks_resolve_inside_the_context_as_docker_does(
    build: BuildFn, image_store: ImageStore, tmp_path: Path
) -> None:
    ctx = _context(
        tmp_path,
        """
        FROM busybox:latest
        COPY rel/a.txt abs/a.txt /t/
        COPY rel/ /dir/
        """,
        {"real/a.txt": b"in the context\n"},
    )
    os.symlink("real", ctx / "rel")
    os.symlink("/real", ctx / "abs")  # absolute: from the context's root, as in docker build
    result = build(ctx)
    files = _image_files(image_store, result)
    assert {"/t/a.txt", "/dir/a.txt"} <= files


def _tar(*members: tuple[tarfile.TarInfo, bytes | None]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            info.size = len(data or b"")
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return out.getvalue()


def _link(name: str, target: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.SYMTYPE
    info.linkname = target
    return info


def _dir(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    return info


@pytest.mark.parametrize("chmod", ["", "--chmod=777 "])
def test_add_tar_link_then_directory_source_writes_nothing_on_the_host(
    build: BuildFn, image_store: ImageStore, host_dir: HostDir, tmp_path: Path, chmod: str
) -> None:
    # the tar makes /t/sub -> <host dir>; the directory source then writes sub/file and sub/
    ctx = _context(
        tmp_path,
        f"FROM busybox:latest\nADD {chmod}x.tar dir /t/\n",
        {
            "x.tar": _tar((_link("sub", str(host_dir.path)), None)),
            "dir/sub/file": b"written by the build\n",
            "dir/sub/secret.txt": b"overwritten\n",
        },
    )
    try:
        result = build(ctx)
    except DockerfileError as exc:
        assert "Traceback" not in str(exc)
        return
    assert "/t/sub/file" in _image_files(image_store, result)


def _cve_2025_4517(target: Path, payload: bytes) -> bytes:
    """A tar that defeats tarfile's `data` filter on 3.11.7 (nested long symlinks, PATH_MAX)."""
    comp = "d" * 247
    steps = "abcdefghijklmnop"
    members: list[tuple[tarfile.TarInfo, bytes | None]] = []
    path = ""
    for step in steps:
        members.append((_dir(os.path.join(path, comp)), None))
        members.append((_link(os.path.join(path, step), comp), None))
        path = os.path.join(path, comp)
    linkpath = os.path.join("/".join(steps), "l" * 254)
    members.append((_link(linkpath, "../" * len(steps)), None))
    # the kernel climbs from the destination (what `linkpath` really is) to `/`; realpath, which
    # gives up past PATH_MAX, climbs only within the 17 names of `linkpath` and sees no escape
    climb = "../" * (len(steps) + 1)
    members.append((_link("escape", linkpath + "/" + climb + str(target).lstrip("/")), None))
    members.append((tarfile.TarInfo("escape/pwned"), payload))
    return _tar(*members)


def test_crafted_tar_of_the_cve_2025_4517_class_stays_in_the_destination(
    build: BuildFn, image_store: ImageStore, host_dir: HostDir, tmp_path: Path
) -> None:
    ctx = _context(
        tmp_path,
        "FROM busybox:latest\nADD poc.tar /x/\n",
        {"poc.tar": _cve_2025_4517(host_dir.path, b"pwned\n")},
    )
    try:
        result = build(ctx)
    except DockerfileError as exc:  # a clear refusal is fine; an OSError traceback is not
        assert "poc.tar" in str(exc)
    else:
        assert f"/x{host_dir.path}/pwned" in _image_files(image_store, result)
    assert not (host_dir.path / "pwned").exists()


def test_a_dockerfile_outside_the_repository_is_refused_unread(
    build: BuildFn, host_dir: HostDir, tmp_path: Path
) -> None:
    # the host file's first line is not a Dockerfile instruction: a parse error would show it
    repo = tmp_path / "repo"
    ctx = _context(repo, "FROM busybox:latest\n")
    os.symlink(host_dir.path / "secret.txt", ctx / "Dockerfile.link")
    for dockerfile in (
        ctx / "Dockerfile.link",
        ctx / ("../" * 12 + str(host_dir.path).lstrip("/") + "/secret.txt"),
        (ctx / "Dockerfile.link").resolve(),  # as the engine passes it
    ):
        with pytest.raises(DockerfileError) as info:
            build(ctx, dockerfile=dockerfile, dockerfile_root=repo)
        assert host_dir.secret not in str(info.value)
    # a Dockerfile elsewhere in the repository, even through a link inside it, is fine
    os.symlink("ctx/Dockerfile", repo / "Dockerfile.top")
    build(ctx, dockerfile=repo / "Dockerfile.top", dockerfile_root=repo)


def test_a_pipeline_build_request_keeps_the_dockerfile_in_the_repository(
    image_store: ImageStore, kapal_settings: RunnerSettings, host_dir: HostDir, tmp_path: Path
) -> None:
    # what a `build:` job hands the builder: paths resolved on the host, plus the repository
    repo = tmp_path / "repo"
    ctx = _context(repo, "FROM busybox:latest\n")
    os.symlink(host_dir.path / "secret.txt", ctx / "Dockerfile.link")
    build = embedded_builder(EmbeddedBackend(kapal_settings), tmp_path / "build-cache")
    lines: list[str] = []
    request = BuildRequest(
        context=ctx,
        dockerfile=(ctx / "Dockerfile.link").resolve(),
        tags=(),
        build_args={},
        dockerfile_root=repo,
    )
    with pytest.raises(DockerfileError) as info:
        build(image_store, request, lines.append)
    assert "must be inside the repository" in str(info.value)
    assert host_dir.secret not in str(info.value) + "\n".join(lines)


@pytest.mark.parametrize("how", ["dotdot", "link"])
def test_a_build_job_naming_a_host_file_as_dockerfile_shows_none_of_it(
    kapal_settings: RunnerSettings,
    busybox_image: str,
    host_dir: HostDir,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    how: str,
) -> None:
    monkeypatch.setenv("KAPAL_DATA_DIR", str(kapal_settings.data_dir))
    project = tmp_path / "project"
    project.mkdir()
    subprocess.run(["git", "init", "-q", str(project)], check=True)
    if how == "link":
        os.symlink(host_dir.path / "secret.txt", project / "Dockerfile")
        subprocess.run(["git", "-C", str(project), "add", "Dockerfile"], check=True)
        dockerfile = "Dockerfile"
    else:
        dockerfile = "../" * 20 + str(host_dir.path / "secret.txt").lstrip("/")
    (project / ".kapal.yml").write_text(
        f"image-build:\n  build:\n    context: .\n    dockerfile: {dockerfile}\n"
        "    tags: [leak:latest]\n"
    )
    result = CliRunner().invoke(build_app(), ["run", str(project)])
    out = result.stdout + result.stderr
    assert result.exit_code != 0, out
    assert host_dir.secret not in out


@pytest.mark.timeout(300)
def test_an_image_whose_passwd_is_a_fifo_does_not_hang_the_builder(
    build: BuildFn, tmp_path: Path
) -> None:
    # --chown=name reads the image's /etc/passwd on the host: a fifo there must not block it
    ctx = _context(
        tmp_path,
        """
        FROM busybox:latest
        RUN rm /etc/passwd && mkfifo /etc/passwd
        COPY --chown=nobody f /f
        """,
        {"f": b"f\n"},
    )
    with pytest.raises(DockerfileError, match="is not in the image's /etc/passwd"):
        build(ctx)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("target", ["host", "fifo"])
def test_a_dockerignore_linked_out_of_the_context_or_to_a_fifo_is_not_read(
    build: BuildFn, tmp_path: Path, target: str
) -> None:
    # a host file's lines would become patterns (an oracle on its content); a fifo (or a link
    # to /dev/zero) would block the build or fill the host's memory
    ctx = _context(tmp_path, "FROM busybox:latest\nCOPY f /f\n", {"f": b"f\n"})
    if target == "fifo":
        os.mkfifo(ctx / "fifo")
        os.symlink("fifo", ctx / ".dockerignore")
        with pytest.raises(BuildError, match="dockerignore"):
            build(ctx)
        return
    host_file = tmp_path / "host-patterns"
    host_file.write_text("*\n")  # read as patterns, it would exclude f
    os.symlink(host_file, ctx / ".dockerignore")
    build(ctx)
