"""Runtime paths: run dirs on tmpfs per data dir, swept when their data dir is gone."""

from __future__ import annotations

import shutil
from pathlib import Path

from runner.runtime.paths import RuntimePaths
from runner.settings import RunnerSettings


def test_run_dirs_per_data_dir_and_sweep(tmp_path: Path) -> None:
    first = RuntimePaths.for_settings(RunnerSettings(data_dir=tmp_path / "a"))
    again = RuntimePaths.for_settings(RunnerSettings(data_dir=tmp_path / "a"))
    busy = RuntimePaths.for_settings(RunnerSettings(data_dir=tmp_path / "b"))
    assert first == again
    assert first.run_root != busy.run_root
    assert first.disk_root == tmp_path / "a" / "containers"
    (busy.run_root / "ct-0123456789ab").mkdir()
    shutil.rmtree(tmp_path / "a")
    shutil.rmtree(tmp_path / "b")
    try:
        RuntimePaths.for_settings(RunnerSettings(data_dir=tmp_path / "c"))
        if first.run_root.is_relative_to(tmp_path):
            return  # no tmpfs: run dirs live (and die) inside their data dirs
        assert not first.run_root.exists()  # abandoned and empty: swept
        assert busy.run_root.exists()  # abandoned but holding a container: left for gc
    finally:
        shutil.rmtree(busy.run_root, ignore_errors=True)
        shutil.rmtree(
            RuntimePaths.for_settings(RunnerSettings(data_dir=tmp_path / "c")).run_root,
            ignore_errors=True,
        )
