"""RUN --mount attacks: mount sources, cache ids and mount targets never reach the host.

Every path a mount names is the Dockerfile author's: a bind source is resolved inside the context
or the stage (`runner.confined`), a cache id is hashed into a folder name, a secret's or a cache's
target is a path in the image. Each test plays one attack with the real builder and checks that
the marked host directory is untouched (the `host_dir` fixture) and its secret is nowhere in the
image.
"""

from __future__ import annotations

import os
import textwrap
from pathlib import Path
from typing import Any

import pytest

from runner.build.builder import Builder, BuildOptions, BuildResult
from runner.build.cache import LayerCache
from runner.build.mounts import cache_dir, drop_mount_stubs
from runner.build.trees import LayeredTree
from runner.errors import DockerfileError
from runner.images import ImageStore
from runner.runtime.embedded import EmbeddedBackend
from runner.settings import RunnerSettings
from tests.security import hostfiles
from tests.security.hostfiles import HostDir, contains_secret

pytestmark = pytest.mark.timeout(600)
host_dir = hostfiles.host_dir


class _Build:
    def __init__(self, store: ImageStore, settings: RunnerSettings, root: Path) -> None:
        self.store = store
        self.root = root
        self.cache = root / "build-cache"
        self.builder = Builder(
            store=store, cache=LayerCache(self.cache), backend=EmbeddedBackend(settings)
        )

    def __call__(self, dockerfile: str, **options: Any) -> BuildResult:
        ctx = self.root / "ctx"
        ctx.mkdir(exist_ok=True)
        (ctx / "Dockerfile").write_text(textwrap.dedent(dockerfile).lstrip())
        return self.builder.build(BuildOptions(context=ctx, no_cache=True, **options))

    def holds(self, result: BuildResult, secret: str) -> list[str]:
        trees = self.store.unpacked_layers(result.image)
        return [hit for tree in trees for hit in contains_secret(tree, secret)]


@pytest.fixture
def build(
    image_store: ImageStore, kapal_settings: RunnerSettings, busybox_image: str, tmp_path: Path
) -> _Build:
    """The real builder on a context under tmp_path."""
    return _Build(image_store, kapal_settings, tmp_path)


@pytest.mark.parametrize(
    "source",
    ["../../../../{host}", "../../etc", "{host}", "d", "d/secret.txt", "root{host}/secret.txt"],
)
def test_bind_sources_stay_inside_the_context(
    build: _Build, host_dir: HostDir, source: str
) -> None:
    (build.root / "ctx").mkdir()
    os.symlink(host_dir.path, build.root / "ctx" / "d")
    os.symlink("/", build.root / "ctx" / "root")
    mount = f"type=bind,source={source.format(host=host_dir.path)},target=/m"
    try:
        result = build(
            f"""
            FROM busybox:latest
            RUN --mount={mount} (cat /m /m/* /m/*/* || true) > /out 2>&1
            """
        )
    except DockerfileError as exc:
        assert "was not found in the build context" in str(exc) or "symlink" in str(exc)
        return
    assert build.holds(result, host_dir.secret) == []


def test_bind_source_of_a_stage_symlink_to_the_host_stays_in_the_stage(
    build: _Build, host_dir: HostDir
) -> None:
    dockerfile = f"""
        FROM busybox:latest AS evil
        RUN ln -s {host_dir.path} /escape && ln -s / /up
        FROM busybox:latest
        RUN --mount=type=bind,from=evil,source=/escape,target=/m cat /m/secret.txt > /a || true
        RUN --mount=type=bind,from=evil,source=/up{host_dir.path},target=/m cat /m/* > /b || true
        """
    with pytest.raises(DockerfileError, match="was not found in the source"):
        build(dockerfile)


@pytest.mark.parametrize("identifier", ["../../../../{host}", "/..", "{host}/../{host}"])
def test_cache_ids_cannot_name_a_host_directory(
    build: _Build, host_dir: HostDir, identifier: str
) -> None:
    ident = identifier.format(host=host_dir.path)
    result = build(
        f"""
        FROM busybox:latest
        RUN --mount=type=cache,id={ident},target=/c \\
            (cat /c/secret.txt || true) > /out && echo planted > /c/secret.txt && touch /c/new
        """
    )
    assert build.holds(result, host_dir.secret) == []
    where = cache_dir(build.cache / "mounts", None, ident)
    assert (where / "new").is_file()
    assert where.resolve().is_relative_to((build.cache / "mounts").resolve())


def test_secret_and_cache_targets_are_paths_in_the_image(
    build: _Build, host_dir: HostDir, tmp_path: Path
) -> None:
    host = host_dir.path
    result = build(
        f"""
        FROM busybox:latest
        RUN mkdir -p {host} && ln -s {host} /link
        RUN --mount=type=secret,id=tok,target=../../../..{host}/secret.txt \\
            --mount=type=cache,target=/link/cache \\
            --mount=type=tmpfs,target=/link/tmp \\
            cat {host}/secret.txt > /seen && ls /link > /listing
        """,
        secrets={"tok": b"operator-secret"},
    )
    assert build.holds(result, host_dir.secret) == []
    # the step read the secret at the image's path; the host file there is untouched (fixture)
    rootfs = LayeredTree(tuple(build.store.unpacked_layers(result.image)))
    seen = rootfs.locate("seen")
    assert seen is not None and seen.read_text() == "operator-secret"
    listing = rootfs.locate("listing")
    assert listing is not None and listing.read_text().split() == ["cache", "secret.txt", "tmp"]
    # and the mount points made for them are not in the image
    for stub in ("secret.txt", "cache", "tmp"):
        assert rootfs.locate(f"{str(host).lstrip('/')}/{stub}") is None


def test_mount_stub_cleanup_never_follows_a_symlink_the_step_made(tmp_path: Path) -> None:
    upper = tmp_path / "upper"
    upper.mkdir()
    victim = tmp_path / "victim"
    (victim / "empty").mkdir(parents=True)
    (victim / "file").write_text("")
    os.symlink(victim, upper / "a")  # the step replaced the stub's parent with a link out
    drop_mount_stubs(upper, LayeredTree(()), ["/a/empty", "/a/file"])
    assert (victim / "empty").is_dir() and (victim / "file").is_file()
    assert (upper / "a").is_symlink()
