"""RUN --mount with BuildKit's documented results: cache, bind, secret, tmpfs; ssh refused.

Debian's docker.io has no BuildKit, so these are checked against BuildKit's Dockerfile reference
(what each mount type shows the step, what stays out of the layer), with real runc and overlayfs.
"""

from __future__ import annotations

import hashlib
import os
import stat
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runner.build.builder import Builder, BuildOptions, BuildResult
from runner.build.cache import LayerCache
from runner.build.mounts import MountError, PlannedMount, cache_dir, mounted, parse_mount
from runner.errors import DockerfileError
from runner.images import ImageStore
from runner.images.reference import Reference
from tests.runner.build.conftest import BuildHelper

BASE = "busybox:latest"


def _files(builds: BuildHelper, result: BuildResult) -> set[str]:
    """Every path in the image's layers that the build itself produced (not the base's)."""
    found: set[str] = set()
    base = len(builds.store.resolve(Reference.parse(BASE)).layers)
    for tree in builds.store.unpacked_layers(result.image)[base:]:
        for dirpath, dirnames, filenames in os.walk(tree):
            for name in dirnames + filenames:
                found.add("/" + os.path.relpath(os.path.join(dirpath, name), tree))
    return found


def test_cache_mount_persists_between_builds_and_stays_out_of_the_layer(
    builds: BuildHelper, busybox_image: str
) -> None:
    dockerfile = f"""
        FROM {BASE}
        ARG ROUND
        RUN --mount=type=cache,target=/root/.cache,uid=1000,gid=1000,mode=0750 \\
            echo "$ROUND" >> /root/.cache/rounds && cat /root/.cache/rounds > /seen \\
            && stat -c '%u:%g %a' /root/.cache >> /seen
        """
    ctx = builds.context(dockerfile)
    first = builds.build(ctx, build_args={"ROUND": "one"})
    second = builds.build(ctx, build_args={"ROUND": "two"})
    code, out = builds.run(second.image, "cat", "/seen")
    assert (code, out.splitlines()) == (0, ["one", "two", "1000:1000 750"])
    for result in (first, second):
        assert not any(path.startswith("/root") for path in _files(builds, result))
    # the same id from another target shares the directory; another id does not
    other = f"""
        FROM {BASE}
        RUN --mount=type=cache,id=/root/.cache,target=/elsewhere cat /elsewhere/rounds > /a
        RUN --mount=type=cache,id=fresh,target=/root/.cache ls -A /root/.cache > /b
        """
    result = builds.build(builds.context(other))
    assert builds.run(result.image, "cat", "/a", "/b")[1].splitlines() == ["one", "two"]


def test_cache_mounts_are_per_owner(
    builds: BuildHelper, busybox_image: str, image_store: ImageStore
) -> None:
    dockerfile = f"""
        FROM {BASE}
        ARG WHO
        RUN --mount=type=cache,target=/c echo "$WHO" >> /c/who && cat /c/who > /who
        """
    ctx = builds.context(dockerfile)

    def build_as(owner: str, who: str) -> str:
        store = ImageStore(image_store.root, owner=owner)
        builder = Builder(store=store, cache=LayerCache(builds.cache_dir), backend=builds.backend)
        result = builder.build(BuildOptions(context=ctx, build_args={"WHO": who}))
        return builds.run(result.image, "cat", "/who")[1]

    assert build_as("repo:1", "alice") == "alice"
    assert build_as("repo:2", "mallory") == "mallory"
    assert build_as("repo:1", "alice-again") == "alice\nalice-again"
    assert cache_dir(builds.cache_dir / "mounts", "repo:1", "/c").is_dir()


def test_bind_mounts_from_the_context_and_a_stage(builds: BuildHelper, busybox_image: str) -> None:
    dockerfile = f"""
        FROM {BASE} AS tools
        RUN mkdir -p /opt/tools && echo tool-v1 > /opt/tools/version
        FROM {BASE}
        WORKDIR /work
        RUN --mount=type=bind,source=src,target=src cat src/main.txt > /from-context \\
            && (touch src/new 2>/dev/null && echo writable || echo read-only) >> /from-context
        RUN --mount=type=bind,from=tools,source=/opt/tools,target=/t cat /t/version > /from-stage
        RUN --mount=type=bind,target=/ctx,rw touch /ctx/scribble && ls /ctx > /listing
        RUN --mount=type=bind,source=src/main.txt,target=/one.txt cat /one.txt > /single
        RUN --mount=type=bind,source=rel,target=/r --mount=type=bind,source=abs,target=/a \
            cat /r/main.txt /a/main.txt > /through-links
        """
    files: dict[str, str | bytes] = {
        "src/main.txt": "main-v1\n",
        "src/skip.log": "x",
        ".dockerignore": "*.log\n**/*.log",
    }
    ctx = builds.context(dockerfile, files)
    (ctx / "rel").symlink_to("src")
    (ctx / "abs").symlink_to("/src")  # the context's own /src, as docker build reads it
    result = builds.build(ctx)
    code, out = builds.run(result.image, "cat", "/from-context", "/from-stage", "/single")
    assert code == 0
    assert out.splitlines() == ["main-v1", "read-only", "tool-v1", "main-v1"]
    assert builds.run(result.image, "cat", "/through-links")[1].splitlines() == ["main-v1"] * 2
    listing = builds.run(result.image, "cat", "/listing")[1].splitlines()
    assert "scribble" in listing and "Dockerfile" in listing
    # rw writes are discarded, and targets the image lacked leave no mount point in a layer
    assert not (ctx / "scribble").exists()
    made = _files(builds, result)
    assert not {"/work/src", "/t", "/ctx", "/one.txt"} & made
    # the mounted content is part of the cache key: a changed file reruns the step
    (ctx / "src" / "main.txt").write_text("main-v2\n")
    again = builds.build(ctx)
    assert builds.run(again.image, "cat", "/from-context")[1].splitlines()[0] == "main-v2"


def test_secret_mounts_reach_the_step_only(builds: BuildHelper, busybox_image: str) -> None:
    dockerfile = f"""
        FROM {BASE}
        RUN --mount=type=secret,id=token \\
            --mount=type=secret,id=token,env=TOKEN_VAR \\
            --mount=type=secret,id=api,target=/etc/api.key,uid=1000,mode=0440 \\
            --mount=type=secret,id=absent \\
            sha256sum /run/secrets/token | cut -c1-12 > /hash \\
            && echo "${{#TOKEN_VAR}}" >> /hash && stat -c '%u %a' /etc/api.key >> /hash \\
            && (test -e /run/secrets/absent && echo present || echo absent) >> /hash
        """
    token = b"s3cr3t-token-value"
    ctx = builds.context(dockerfile)
    result = builds.build(ctx, secrets={"token": token, "api": b"k"})
    out = builds.run(result.image, "cat", "/hash")[1].splitlines()
    assert out == [hashlib.sha256(token).hexdigest()[:12], str(len(token)), "1000 440", "absent"]
    for tree in builds.store.unpacked_layers(result.image):
        for dirpath, _dirs, names in os.walk(tree):
            for name in names:
                path = Path(dirpath) / name
                if path.is_file() and not path.is_symlink():
                    assert token not in path.read_bytes()
    assert not {"/run/secrets", "/run/secrets/token", "/etc/api.key"} & _files(builds, result)
    assert b"s3cr3t" not in repr(result.image.config).encode()
    # a pipeline's secret variables serve as secrets by name
    piped = (
        f"FROM {BASE}\n"
        "RUN --mount=type=secret,id=DEPLOY_KEY,required cat /run/secrets/DEPLOY_KEY > /k\n"
    )
    result = builds.build(
        builds.context(piped),
        build_args={"DEPLOY_KEY": "from-pipeline"},
        secret_args=frozenset({"DEPLOY_KEY"}),
    )
    assert builds.run(result.image, "cat", "/k")[1] == "from-pipeline"


def test_a_required_secret_that_is_missing_is_a_clear_error(
    builds: BuildHelper, busybox_image: str
) -> None:
    ctx = builds.context(f"FROM {BASE}\nRUN --mount=type=secret,id=npmrc,required=true true\n")
    with pytest.raises(DockerfileError, match=r"Dockerfile:2: RUN: .*id=npmrc is required"):
        builds.build(ctx)


def test_tmpfs_mount_is_empty_and_leaves_nothing(builds: BuildHelper, busybox_image: str) -> None:
    dockerfile = f"""
        FROM {BASE}
        RUN --mount=type=tmpfs,target=/scratch,size=1m echo x > /scratch/f \\
            && grep -E ' /scratch tmpfs ' /proc/mounts | grep -c size=1024k > /mounted \\
            && (dd if=/dev/zero of=/scratch/big bs=1k count=2048 2>/dev/null && echo fit \\
                || echo full) >> /mounted
        """
    result = builds.build(builds.context(dockerfile))
    assert builds.run(result.image, "cat", "/mounted")[1].splitlines() == ["1", "full"]
    assert not any(p.startswith("/scratch") for p in _files(builds, result))


@pytest.mark.parametrize(
    ("mount", "message"),
    [
        ("type=ssh", "type=ssh is not supported: kapal forwards no SSH agent"),
        ("type=cache", "needs target=PATH"),
        ("type=cache,target=/x,sharing=sometimes", "sharing=sometimes: give shared"),
        ("type=cache,target=/x,mode=999", "mode=999: give an octal mode"),
        ("type=tmpfs,target=/x,uid=1", "type=tmpfs takes no uid"),
        ("type=volume,target=/x", "the types are bind, cache, tmpfs and secret"),
        ("type=bind,target=/x,colour=red", "unknown option 'colour'"),
        ("type=bind,source=nowhere,target=/x", "source=nowhere was not found"),
        ("type=bind,target=/", "may not cover the root"),
    ],
)
def test_bad_mounts_are_clear_errors(
    builds: BuildHelper, busybox_image: str, mount: str, message: str
) -> None:
    ctx = builds.context(f"FROM {BASE}\nRUN --mount={mount} true\n")
    with pytest.raises(DockerfileError, match="Dockerfile:2: RUN: ") as caught:
        builds.build(ctx)
    assert message in str(caught.value)


def test_parse_mount_defaults_follow_buildkit() -> None:
    bind = parse_mount("target=src", "/work")
    assert (bind.kind, bind.target, bind.read_only, bind.source) == ("bind", "/work/src", True, "")
    cache = parse_mount("type=cache,target=/var/cache/apt,sharing=locked", "/")
    assert (cache.id, cache.read_only, cache.sharing) == ("/var/cache/apt", False, "locked")
    secret = parse_mount("type=secret,id=aws", "/")
    assert (secret.target, secret.read_only, secret.required) == ("/run/secrets/aws", True, False)
    named = parse_mount('type=secret,"target=/root/my key"', "/")
    assert (named.id, named.target) == ("my key", "/root/my key")
    assert parse_mount("type=secret,id=t,env=TOKEN", "/").target == ""
    assert parse_mount("type=bind,target=/x,rw=true", "/").read_only is False


_TOKENS = [*"=,\"' /.x01", "type=", "cache", "bind", "secret", "tmpfs", "target", "id", "mode"]
_TOKENS += ["uid", "gid", "size", "from", "source", "env", "rw", "ro", "required", "sharing"]
_TOKENS += ["..", "\n"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(_TOKENS), max_size=30).map("".join))
def test_parse_mount_never_crashes(text: str) -> None:
    try:
        spec = parse_mount(text, "/w")
    except MountError:
        return
    assert spec.target == "" or spec.target.startswith("/")
    assert spec.kind in ("bind", "cache", "tmpfs", "secret")


def test_cache_ids_never_name_a_path(tmp_path: Path) -> None:
    root = tmp_path / "mounts"
    for identifier in ("../../../../etc", "/..", "a/../../b", ""):
        path = cache_dir(root, "repo:1", identifier)
        assert path.parent.parent == root and stat.S_ISDIR(os.stat(root.parent).st_mode)


def test_cache_seeded_from_a_stage_and_read_only(builds: BuildHelper, busybox_image: str) -> None:
    dockerfile = f"""
        FROM {BASE} AS tools
        RUN mkdir -p /opt/seed && echo seeded > /opt/seed/first
        FROM {BASE}
        RUN --mount=type=cache,target=/c,id=seeded,from=tools,source=/opt/seed \\
            cat /c/first > /seen && echo more > /c/second
        RUN --mount=type=cache,target=/c,id=seeded,ro \\
            (ls /c && (touch /c/third 2>/dev/null && echo writable || echo read-only)) > /ro
        """
    result = builds.build(builds.context(dockerfile))
    assert builds.run(result.image, "cat", "/seen")[1] == "seeded"
    assert builds.run(result.image, "cat", "/ro")[1].splitlines() == [
        "first",
        "second",
        "read-only",
    ]


def test_cache_sharing_locked_waits_and_private_gets_its_own(tmp_path: Path) -> None:
    root = tmp_path / "mounts"

    def plan(sharing: str) -> list[PlannedMount]:
        return [PlannedMount(parse_mount(f"type=cache,target=/c,sharing={sharing}", "/"))]

    def enter(sharing: str, work: Path) -> Path:
        work.mkdir()
        with mounted(plan(sharing), work=work, cache_root=root, owner=None, secrets={}) as (m, _):
            return m[0].source

    work = tmp_path / "holder"
    work.mkdir()
    holder = mounted(plan("locked"), work=work, cache_root=root, owner=None, secrets={})
    held_mounts, _env = holder.__enter__()
    held = held_mounts[0].source
    try:
        # while one step holds it, a private user gets a fresh directory, a shared one the same
        assert enter("private", tmp_path / "p") != held
        assert enter("shared", tmp_path / "s") == held
        waited: list[Path] = []
        waiter = threading.Thread(target=lambda: waited.append(enter("locked", tmp_path / "l")))
        waiter.start()
        waiter.join(timeout=0.5)
        assert waiter.is_alive() and not waited  # a locked user waits for the holder
    finally:
        holder.__exit__(None, None, None)
    waiter.join()
    assert waited == [held]  # and gets the same directory once it is free
