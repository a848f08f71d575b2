"""BuildKit-only flags, checked against the results BuildKit's Dockerfile reference documents:
COPY --parents, COPY/ADD --exclude, ADD --checksum, RUN --network, FROM --platform, COPY --link.
"""

from __future__ import annotations

import hashlib
import os

import pytest

from runner.build.builder import BuildResult
from runner.build.trees import LayeredTree
from runner.errors import DockerfileError
from runner.images.reference import Reference
from tests.runner.build.conftest import BuildHelper, serve_directory

BASE = "busybox:latest"


def _made(builds: BuildHelper, result: BuildResult) -> set[str]:
    """Paths (files and links) the build added on top of the base image."""
    base = len(builds.store.resolve(Reference.parse(BASE)).layers)
    found: set[str] = set()
    for tree in builds.store.unpacked_layers(result.image)[base:]:
        for dirpath, _dirs, names in os.walk(tree):
            for name in names:
                found.add("/" + os.path.relpath(os.path.join(dirpath, name), tree))
    return found


def test_copy_parents_keeps_source_paths(builds: BuildHelper, busybox_image: str) -> None:
    # BuildKit's reference: `COPY --parents ./x/a.txt ./y/a.txt /parents/` gives /parents/x/a.txt
    # and /parents/y/a.txt; a `/./` pivot keeps the path after it; `**` spans directories
    dockerfile = f"""
        FROM {BASE}
        COPY --parents ./x/a.txt ./y/a.txt /parents/
        COPY --parents ./x/./y/*.txt /pivot/
        COPY --parents src/**/*.py /code
        COPY --parents --chown=7:7 x /whole/
        """
    files: dict[str, str | bytes] = {
        "x/a.txt": "xa",
        "y/a.txt": "ya",
        "x/y/a.txt": "xya",
        "x/y/b.txt": "xyb",
        "src/main.py": "m",
        "src/pkg/mod.py": "p",
        "src/pkg/data.txt": "d",
    }
    result = builds.build(builds.context(dockerfile, files))
    assert _made(builds, result) == {
        "/parents/x/a.txt",
        "/parents/y/a.txt",
        "/pivot/y/a.txt",
        "/pivot/y/b.txt",
        "/code/src/main.py",
        "/code/src/pkg/mod.py",
        "/whole/x/a.txt",
        "/whole/x/y/a.txt",
        "/whole/x/y/b.txt",
    }
    rootfs = LayeredTree(tuple(builds.store.unpacked_layers(result.image)))
    whole = rootfs.locate("whole/x/y")
    assert whole is not None and (whole.stat().st_uid, whole.stat().st_gid) == (7, 7)


def test_copy_exclude_leaves_out_matches(builds: BuildHelper, busybox_image: str) -> None:
    # the reference's example: `COPY --exclude=*.txt hom* /mydir/`, and several --exclude
    dockerfile = f"""
        FROM {BASE}
        COPY --exclude=*.txt hom* /mydir/
        COPY --exclude=*.txt --exclude=*.md hom* /mydir2/
        COPY --exclude=**/*.log --exclude=cache --exclude=!cache/keep app /app
        """
    files: dict[str, str | bytes] = {
        "home.txt": "t",
        "home.md": "m",
        "homer.py": "p",
        "app/run.py": "r",
        "app/debug.log": "l",
        "app/deep/er/trace.log": "l",
        "app/deep/er/kept.py": "k",
        "app/cache/blob": "b",
        "app/cache/keep": "k",
    }
    result = builds.build(builds.context(dockerfile, files))
    assert _made(builds, result) == {
        "/mydir/home.md",
        "/mydir/homer.py",
        "/mydir2/homer.py",
        "/app/run.py",
        "/app/deep/er/kept.py",
        "/app/cache/keep",
    }


def test_add_checksum_is_verified(builds: BuildHelper, busybox_image: str) -> None:
    served = builds.root / "served"
    served.mkdir()
    (served / "tool.bin").write_bytes(b"tool-v1\n")
    good = hashlib.sha256(b"tool-v1\n").hexdigest()
    with serve_directory(served) as port:
        url = f"http://127.0.0.1:{port}/tool.bin"
        ok = builds.context(f"FROM {BASE}\nADD --checksum=sha256:{good} {url} /tool.bin\n")
        result = builds.build(ok, network="host")
        assert builds.run(result.image, "cat", "/tool.bin")[1] == "tool-v1"
        bad = builds.context(f"FROM {BASE}\nADD --checksum=sha256:{'0' * 64} {url} /tool.bin\n")
        with pytest.raises(DockerfileError, match=r"Dockerfile:2: ADD: .*checksum mismatch") as e:
            builds.build(bad, network="host")
        assert f"got sha256:{good}" in str(e.value)
    local = builds.context(f"FROM {BASE}\nADD --checksum=sha256:{good} f.txt /f\n", {"f.txt": "x"})
    with pytest.raises(DockerfileError, match="--checksum verifies one http"):
        builds.build(local)


def test_run_network_per_step(builds: BuildHelper, busybox_image: str) -> None:
    dockerfile = f"""
        FROM {BASE}
        RUN --network=none ls /sys/class/net > /none
        RUN --network=default ls /sys/class/net > /default
        RUN ls /sys/class/net > /plain
        """
    result = builds.build(builds.context(dockerfile))
    out = builds.run(result.image, "cat", "/none", "/default", "/plain")[1].split()
    assert out == ["lo", "lo", "tap0", "lo", "tap0"]
    bad = builds.context(f"FROM {BASE}\nRUN --network=bridge true\n")
    with pytest.raises(DockerfileError, match="--network=bridge: use host, none or default"):
        builds.build(bad)


def test_platform_and_link_flags(builds: BuildHelper, busybox_image: str) -> None:
    dockerfile = f"""
        FROM --platform=$BUILDPLATFORM {BASE} AS a
        FROM --platform=linux/amd64 {BASE}
        COPY --link --from=a /bin/busybox /copied
        """
    result = builds.build(builds.context(dockerfile))
    assert "/copied" in _made(builds, result)
    arm = builds.context(f"FROM --platform=linux/arm64 {BASE}\n")
    with pytest.raises(DockerfileError, match="--platform=linux/arm64 is not supported"):
        builds.build(arm)
