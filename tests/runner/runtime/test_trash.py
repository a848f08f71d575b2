"""A finished container's overlay dirs leave at once and are deleted in the background."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from runner.runtime.embedded import EmbeddedBackend
from runner.runtime.oneshot import run_container
from runner.runtime.trash import Trash, trash_dir
from runner.settings import RunnerSettings
from tests.runner.runtime.conftest import BusyboxImage

pytestmark = pytest.mark.timeout(180)

KAPAL = str(Path(sys.executable).parent / "kapal")


def _littered(containers_dir: Path, name: str) -> Path:
    """A trash entry as a killed process leaves it: an overlay upper with files in it."""
    entry = trash_dir(containers_dir) / name
    (entry / "upper" / "tmp").mkdir(parents=True)
    (entry / "upper" / "tmp" / "big").write_bytes(b"x" * 4096)
    (entry / "work" / "work").mkdir(parents=True)
    return entry


def test_disk_dir_leaves_at_once_and_drain_deletes_it(
    busybox: BusyboxImage, tmp_path: Path
) -> None:
    settings = RunnerSettings(data_dir=tmp_path / "data")
    backend = EmbeddedBackend(settings)
    status = run_container(backend, busybox.spec("sh", "-c", "echo data > /written"))
    assert status.ok, status.describe()
    assert list(settings.containers_dir.glob("ct-*")) == []
    backend.drain()
    assert list(trash_dir(settings.containers_dir).glob("*")) == []


def test_a_new_trash_deletes_what_a_killed_process_left(tmp_path: Path) -> None:
    entry = _littered(tmp_path, "ct-0123456789ab")
    trash = Trash(tmp_path)
    trash.drain()
    assert not entry.exists()


def test_discard_creates_the_trash_and_ignores_missing_dirs(tmp_path: Path) -> None:
    trash = Trash(tmp_path)
    trash.discard(tmp_path / "ct-missing")
    victim = tmp_path / "ct-aaaaaaaaaaaa"
    (victim / "upper").mkdir(parents=True)
    trash.discard(victim)
    assert not victim.exists()
    trash.drain()
    assert list(trash_dir(tmp_path).iterdir()) == []


def test_kapal_gc_empties_the_trash(tmp_path: Path) -> None:
    data = tmp_path / "data"
    entry = _littered(data / "containers", "ct-0123456789ab")
    done = subprocess.run(
        [KAPAL, "gc"],
        env=dict(os.environ, KAPAL_DATA_DIR=str(data)),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "removed 1 container(s)" in done.stdout
    assert not entry.exists()
