"""`DatabaseRecorder` on SQLite and PostgreSQL: log lines reach the database in batches bounded
by time and by size, in order; test reports and artifacts are recorded with the job."""

from __future__ import annotations

import time
from pathlib import Path

from runner.artifacts import ArtifactStore
from runner.engine.recorder import ArtifactStored, LogLine, TestCase, TestReport
from tests.web.db.factories import make_jobs, make_pipeline, make_repository
from web.db.encryption import SecretCipher
from web.db.logs import log_line_count, read_log
from web.db.results import list_artifacts, list_test_cases
from web.db.session import Database
from web.recording import DatabaseRecorder, tree_digest


def _job(database: Database, cipher: SecretCipher) -> tuple[int, int]:
    with database.transaction() as session:
        repository = make_repository(session, cipher)
        pipeline = make_pipeline(session, repository.id)
        (job,) = make_jobs(session, pipeline.id, "test", status="running")
    return pipeline.id, job.id


def _count(database: Database, job_id: int) -> int:
    with database.transaction() as session:
        return log_line_count(session=session, job_id=job_id)


def _recorder(
    database: Database, tmp_path: Path, pipeline_id: int, job_id: int, **options: float
) -> DatabaseRecorder:
    store = ArtifactStore(tmp_path / "artifacts")
    return DatabaseRecorder(
        database,
        job_id=job_id,
        pipeline_id=pipeline_id,
        artifacts_root=store.root,
        artifact_dir=store.job_dir,
        **options,  # type: ignore[arg-type]
    )


def test_a_line_reaches_the_database_by_time_before_the_job_ends(
    database: Database, cipher: SecretCipher, tmp_path: Path
) -> None:
    pipeline_id, job_id = _job(database, cipher)
    recorder = _recorder(database, tmp_path, pipeline_id, job_id, flush_interval=0.1).start()
    try:
        recorder.record(LogLine(job="test", text="first line"))
        deadline = time.monotonic() + 30
        while _count(database, job_id) == 0:  # no more lines come: only the clock flushes
            assert time.monotonic() < deadline, "the line was never written"
            time.sleep(0.02)
    finally:
        recorder.close()
    with database.transaction() as session:
        assert read_log(session=session, job_id=job_id).lines == ["first line"]


def test_a_full_batch_is_written_at_once_and_lines_keep_their_order(
    database: Database, cipher: SecretCipher, tmp_path: Path
) -> None:
    pipeline_id, job_id = _job(database, cipher)
    recorder = _recorder(
        database, tmp_path, pipeline_id, job_id, flush_interval=3600, flush_bytes=1000
    ).start()
    try:
        for number in range(30):  # 30 lines of 100 bytes: three batches of 10
            recorder.record(LogLine(job="test", text=f"{number:03d}" + "x" * 96))
        assert _count(database, job_id) == 30  # written by the recording thread, no clock
        recorder.record(LogLine(job="test", text="tail"))
        assert _count(database, job_id) == 30
    finally:
        recorder.close()
    with database.transaction() as session:
        lines = read_log(session=session, job_id=job_id).lines
    assert [line[:3] for line in lines[:30]] == [f"{n:03d}" for n in range(30)]
    assert lines[30:] == ["tail"]  # close() wrote what was left


def test_test_cases_and_artifacts_are_recorded_with_the_job(
    database: Database, cipher: SecretCipher, tmp_path: Path
) -> None:
    pipeline_id, job_id = _job(database, cipher)
    store = ArtifactStore(tmp_path / "artifacts")
    workspace = tmp_path / "workspace"
    (workspace / "out").mkdir(parents=True)
    (workspace / "out" / "app.txt").write_text("built\n")
    (workspace / "out" / "link").symlink_to("/etc/passwd")
    stored = store.save(pipeline_id, "test", workspace, ["out/app.txt", "out/link"])
    recorder = _recorder(database, tmp_path, pipeline_id, job_id).start()
    try:
        recorder.record(
            TestReport(
                job="test",
                cases=(
                    TestCase(name="adds", classname="cart", duration=0.5, status="passed"),
                    TestCase(
                        name="pays", classname="cart", duration=1, status="failed", message="no"
                    ),
                ),
            )
        )
        recorder.record(ArtifactStored(job="test", files=stored.files, size=stored.size))
    finally:
        recorder.close()
    with database.transaction() as session:
        cases = list_test_cases(session=session, pipeline_id=pipeline_id)
        (artifact,) = list_artifacts(session=session, job_id=job_id)
    assert [(c.suite, c.name, c.status, c.message) for c in cases] == [
        ("cart", "adds", "passed", ""),
        ("cart", "pays", "failed", "no"),
    ]
    assert artifact.path == f"{pipeline_id}/test"
    assert sorted(artifact.files) == ["out/app.txt", "out/link"]
    assert artifact.sha256 == tree_digest(store.job_dir(pipeline_id, "test"))
    # a link counts by its target (never followed out of the store)
    (workspace / "out" / "link").unlink()
    (workspace / "out" / "link").symlink_to("/etc/hostname")
    store.save(pipeline_id, "test", workspace, ["out/app.txt", "out/link"])
    assert tree_digest(store.job_dir(pipeline_id, "test")) != artifact.sha256
