"""Issue 8 items 1, 2 and 11: artifacts and caches never read or write the host through symlinks.

Each test runs a real pipeline with `kapal run` (in-process, real runc) whose jobs plant symlinks
in their workspace, or whose repository holds them, and checks the host directory is untouched
and its secret reached neither the artifact store, the cache, nor a later job's output.
"""

from __future__ import annotations

import os
import stat
import subprocess
import textwrap
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from typer.testing import CliRunner

from runner.artifacts import ArtifactStore, collect_paths, read_workspace_file
from runner.cache import CacheStore
from runner.cli import next_pipeline_id
from runner.settings import RunnerSettings
from tests.security import hostfiles
from tests.security.hostfiles import HostDir, contains_secret
from web.cli import build_app

pytestmark = pytest.mark.timeout(600)
host_dir = hostfiles.host_dir


@pytest.fixture
def project(
    tmp_path: Path,
    kapal_settings: RunnerSettings,
    busybox_image: str,
    monkeypatch: pytest.MonkeyPatch,
) -> Path:
    monkeypatch.setenv("KAPAL_DATA_DIR", str(kapal_settings.data_dir))
    root = tmp_path / "project"
    root.mkdir()
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    return root


def kapal_run(project: Path, pipeline: str) -> tuple[int, str]:
    (project / ".kapal.yml").write_text(textwrap.dedent(pipeline).lstrip())
    result = CliRunner().invoke(build_app(), ["run", str(project)])
    return result.exit_code, result.stdout + result.stderr


def test_collecting_through_a_symlink_to_the_host_stores_no_host_file(
    project: Path, host_dir: HostDir, kapal_settings: RunnerSettings
) -> None:
    host = host_dir.path
    key = f"leak-{uuid.uuid4().hex}"
    code, out = kapal_run(
        project,
        f"""
        image: busybox:latest
        stages: [make, use]
        leak:
          stage: make
          script:
            - ln -s / hostroot
            - ln -s {host} hostdir
          artifacts:
            paths: [hostroot{host}/secret.txt, hostroot{host}/sub/, hostdir/]
          cache:
            key: {key}
            paths: [hostroot{host}/secret.txt, hostdir/]
        read:
          stage: use
          script:
            - cat hostroot{host}/secret.txt hostdir/secret.txt || true
            - find . -name '*.txt'
        """,
    )
    assert code == 0, out
    assert host_dir.secret not in out
    assert "Traceback" not in out
    # the job's log says what was left out and why
    assert f"left out hostroot{host_dir.path}/secret.txt: reached through a symlink" in out
    data = kapal_settings.data_dir
    assert contains_secret(data / "artifacts", host_dir.secret) == []
    assert contains_secret(data / "cache", host_dir.secret) == []


def test_restoring_through_a_committed_symlink_writes_nothing_on_the_host(
    project: Path, host_dir: HostDir
) -> None:
    # the repository commits `out -> <host dir>`; a job stores out/evil.txt from its own
    # workspace, and the next job's restore must not follow the link
    os.symlink(host_dir.path, project / "out")
    subprocess.run(["git", "-C", str(project), "add", "out"], check=True)
    code, out = kapal_run(
        project,
        """
        image: busybox:latest
        stages: [make, use]
        make:
          stage: make
          script: [rm out, mkdir out, echo evil > out/evil.txt, echo evil > out/secret.txt]
          artifacts: {paths: [out/]}
        use:
          stage: use
          script: [ls -la, cat out/evil.txt || true]
        """,
    )
    assert code == 0, out
    assert "Traceback" not in out
    assert not (host_dir.path / "evil.txt").exists()


def test_a_job_cannot_plant_a_link_that_a_later_restore_writes_through(
    project: Path, host_dir: HostDir
) -> None:
    # the first job leaves `out -> <host>` as an artifact; a later job restores another job's
    # out/evil.txt over it: the link may be restored, the file never lands on the host
    code, out = kapal_run(
        project,
        f"""
        image: busybox:latest
        stages: [one, two, three]
        plant:
          stage: one
          script: [ln -s {host_dir.path} out]
          artifacts: {{paths: [out]}}
        write:
          stage: two
          needs: []
          script: [mkdir -p real, echo evil > real/evil.txt, mkdir out2, cp real/evil.txt out2/]
          artifacts: {{paths: [real/]}}
        use:
          stage: three
          needs: [plant, write]
          script: [ls -la]
        """,
    )
    assert code == 0, out
    assert not (host_dir.path / "evil.txt").exists()


def test_stored_artifacts_lose_setuid_bits_and_device_nodes(
    project: Path, kapal_settings: RunnerSettings
) -> None:
    job = f"suid-{uuid.uuid4().hex[:8]}"
    code, out = kapal_run(
        project,
        f"""
        image: busybox:latest
        {job}:
          script:
            - cp /bin/busybox tool && chmod 6755 tool
            - mknod devnull c 1 3 && mkfifo pipe
          artifacts: {{paths: [tool, devnull, pipe]}}
        """,
    )
    assert code == 0, out
    [stored] = list((kapal_settings.data_dir / "artifacts").glob(f"*/{job}"))
    assert sorted(os.listdir(stored)) == ["tool"]
    mode = stat.S_IMODE(os.lstat(stored / "tool").st_mode)
    assert mode == 0o755


def test_a_new_data_dir_is_private(tmp_path: Path) -> None:
    next_pipeline_id(tmp_path / "data")
    assert stat.S_IMODE((tmp_path / "data").stat().st_mode) == 0o700


def test_runs_at_once_get_distinct_pipeline_ids(tmp_path: Path) -> None:
    # each call takes the counter's lock through its own open file, as two `kapal run` do
    data = tmp_path / "data"
    with ThreadPoolExecutor(max_workers=6) as pool:
        ids = list(pool.map(lambda _: next_pipeline_id(data), range(60)))
    assert sorted(ids) == list(range(1, 61))
    assert next_pipeline_id(data) == 61


def test_artifact_and_cache_stores_are_private(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    (workspace / "f").write_text("x")
    data = tmp_path / "data"
    ArtifactStore(data / "artifacts").save(1, "job", workspace, ["f"])
    CacheStore(data / "cache").save("k", workspace, ["f"])
    for path in (data, data / "artifacts", data / "cache"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o700, path


def test_cache_restore_follows_no_workspace_link_out(tmp_path: Path, host_dir: HostDir) -> None:
    source = tmp_path / "src"
    (source / "out").mkdir(parents=True)
    (source / "out" / "evil.txt").write_text("evil\n")
    caches = CacheStore(tmp_path / "cache")
    assert caches.save("k", source, ["out/"]) == ["out/evil.txt"]
    workspace = tmp_path / "ws"
    workspace.mkdir()
    os.symlink(host_dir.path, workspace / "out")
    caches.restore("k", workspace)
    assert not (host_dir.path / "evil.txt").exists()


def test_a_junit_report_linked_to_a_host_file_is_not_read(
    tmp_path: Path, host_dir: HostDir
) -> None:
    # what the engine reads for `artifacts: reports: junit` (it must call read_workspace_file)
    report = host_dir.path / "report.xml"
    report.write_text(f'<testsuite><testcase name="{host_dir.secret}"/></testsuite>')
    try:
        os.symlink(report, tmp_path / "report.xml")
        assert collect_paths(tmp_path, ["report.xml"]) == ["report.xml"]
        with pytest.raises(ValueError) as info:
            read_workspace_file(tmp_path, "report.xml")
        assert host_dir.secret not in str(info.value)
        (tmp_path / "mine.xml").write_text("<testsuite/>")
        assert read_workspace_file(tmp_path, "mine.xml") == b"<testsuite/>"
    finally:
        report.unlink()


def test_collecting_reports_what_it_left_out(tmp_path: Path, host_dir: HostDir) -> None:
    os.symlink("/", tmp_path / "hostroot")
    (tmp_path / "mine.txt").write_text("mine")
    skipped: list[str] = []
    named = f"hostroot{host_dir.path}/secret.txt"
    found = collect_paths(tmp_path, [named, "hostroot", "mine.txt"], skipped=skipped)
    assert found == ["hostroot", "mine.txt"]  # the link itself is kept, as a link
    assert skipped == [
        f"{named}: reached through a symlink; symlinks are kept as links, never followed"
    ]
