"""Build-cache pruning: under the size limit, least recently used first, recent use protected."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from runner.build.cache import LayerCache
from runner.build.cache_prune import cache_size, prune_build_cache
from runner.build.mounts import cache_dir
from tests.runner.build.conftest import BuildHelper
from tests.runner.build.test_cli import KAPAL

BASE = "busybox:latest"
DAY = 86400.0


def _build_three(builds: BuildHelper) -> list[str]:
    """Three builds of one step each, 1 MiB apiece; returns their cache keys (oldest first)."""
    keys: list[str] = []
    keydir = builds.cache_dir / "keys"
    for name in ("old", "middle", "new"):
        before = set(keydir.glob("*.json")) if keydir.exists() else set()
        ctx = builds.root / name
        ctx.mkdir()
        (ctx / "Dockerfile").write_text(
            f"FROM {BASE}\nRUN head -c 1048576 /dev/urandom > /{name} "
            "&& mkdir -p /c && echo x > /c/f\n"
        )
        builds.build(ctx)
        (added,) = set(keydir.glob("*.json")) - before
        keys.append(added.stem)
    return keys


def test_prune_removes_least_recently_used_first(builds: BuildHelper, busybox_image: str) -> None:
    old, middle, new = _build_three(builds)
    now = 1_000_000_000.0
    for age, key in ((3 * DAY, old), (2 * DAY, middle), (1 * DAY, new)):
        os.utime(builds.cache_dir / "keys" / f"{key}.json", (now - age, now - age))
    # a hit makes an entry recently used: `old` is used again, so `middle` is now the oldest
    cache = LayerCache(builds.cache_dir)
    assert cache.lookup(old) is not None
    os.utime(builds.cache_dir / "keys" / f"{old}.json", (now - DAY / 2, now - DAY / 2))
    size = cache_size(builds.cache_dir)
    report = prune_build_cache(builds.cache_dir, size - 1, now=now)
    assert report.entries == 1 and report.bytes_freed >= 1 << 20
    assert cache.lookup(middle) is None
    assert cache.lookup(old) is not None and cache.lookup(new) is not None
    assert cache_size(builds.cache_dir) <= size - (1 << 20)
    # those lookups were uses; two days on, a limit of zero empties the cache
    prune_build_cache(builds.cache_dir, 0, now=time.time() + 2 * DAY)
    assert cache.lookup(old) is None and cache.lookup(new) is None
    assert not any((builds.cache_dir / "trees").iterdir())


def test_recent_entries_and_cache_mounts_are_kept_within_the_grace_period(
    builds: BuildHelper, busybox_image: str
) -> None:
    ctx = builds.context(
        f"FROM {BASE}\nRUN --mount=type=cache,target=/c head -c 65536 /dev/urandom > /c/blob\n"
    )
    builds.build(ctx)
    mount = cache_dir(builds.cache_dir / "mounts", None, "/c")
    assert (mount / "blob").is_file()
    report = prune_build_cache(builds.cache_dir, 0)  # all of it used just now
    assert (report.entries, report.mounts) == (0, 0)
    later = mount.stat().st_mtime + 2 * DAY
    report = prune_build_cache(builds.cache_dir, 0, now=later)
    assert report.mounts == 1 and not mount.exists()


def test_kapal_build_prune_reports(
    kapal_env: dict[str, str], busybox_image: str, tmp_path: Path
) -> None:
    (tmp_path / "Dockerfile").write_text(f"FROM {BASE}\nRUN echo hi > /hi\n")
    env = {**kapal_env, "KAPAL_BUILD_CACHE_MAX": "1g"}
    result = subprocess.run(
        [KAPAL, "build", "--prune", str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "build cache pruned: 0 step layers and 0 cache mounts removed" in result.stdout
    bad = subprocess.run(
        [KAPAL, "build", "--prune", str(tmp_path)],
        env={**kapal_env, "KAPAL_BUILD_CACHE_MAX": "lots"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert bad.returncode == 1 and "KAPAL_BUILD_CACHE_MAX 'lots' is not a size" in bad.stderr
    assert "Traceback" not in bad.stderr
