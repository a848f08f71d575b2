"""The job run-time histogram kept as counters: every attempt that ran and ended counts once,
in the transaction that ends it, and the counts only grow (on SQLite and PostgreSQL)."""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import insert, select, text, update
from sqlalchemy.orm import Session

from tests.support.services import PostgresServer
from tests.web.db.factories import make_jobs, make_pipeline, make_repository
from web.db.encryption import SecretCipher
from web.db.jobs import claim_job, request_pipeline_cancel, retry_job, set_job_status
from web.db.migrate import upgrade
from web.db.models import DURATION_BUCKETS, Job, Pipeline, Repository, utcnow
from web.db.session import Database
from web.db.stats import DurationHistogram, job_duration_histograms


def _histograms(database: Database) -> dict[str, DurationHistogram]:
    with database.transaction() as session:
        return {h.status: h for h in job_duration_histograms(session=session)}


def _started_ago(session: Session, job_id: int, seconds: float) -> None:
    """Make a running job look started `seconds` ago."""
    session.execute(
        update(Job).where(Job.id == job_id).values(started_at=utcnow() - timedelta(seconds=seconds))
    )


def _buckets(histogram: DurationHistogram) -> dict[int, int]:
    return dict(histogram.buckets)


def _pipeline(database: Database, cipher: SecretCipher, *names: str) -> list[int]:
    with database.transaction() as session:
        repo = make_repository(session, cipher)
        pipeline = make_pipeline(session, repo.id)
        return [j.id for j in make_jobs(session, pipeline.id, *names)]


def test_each_job_that_ran_and_ended_counts_in_its_bucket(
    database: Database, cipher: SecretCipher
) -> None:
    quick, slow, failed, never_ran, still_running = _pipeline(
        database, cipher, "quick", "slow", "failed", "never-ran", "still-running"
    )
    assert _histograms(database) == {}
    with database.transaction() as session:
        for job_id in (quick, slow, failed, still_running):
            assert claim_job(session=session, job_id=job_id, worker="w")
        _started_ago(session, slow, 90)
        _started_ago(session, failed, 4000)
        assert set_job_status(
            session=session, job_id=quick, status="success", only_from={"running"}
        )
        assert set_job_status(session=session, job_id=slow, status="success", only_from={"running"})
        assert set_job_status(session=session, job_id=failed, status="failed")
        # canceled before it ran: no run time to count
        assert set_job_status(session=session, job_id=never_ran, status="canceled")
    first = _histograms(database)
    assert set(first) == {"success", "failed"}
    success = first["success"]
    assert success.count == 2
    # PostgreSQL stamps the end with its transaction's start, a little before utcnow()
    assert 85 <= success.sum_seconds < 90 + 60
    assert _buckets(success)[60] == 1  # the quick one
    assert _buckets(success)[120] == 2
    assert first["failed"].count == 1
    assert set(_buckets(first["failed"]).values()) == {0}  # 4000 s: only in +Inf
    assert first["failed"].sum_seconds > 3990

    with database.transaction() as session:
        _started_ago(session, still_running, 10)
        assert set_job_status(session=session, job_id=still_running, status="success")
    second = _histograms(database)["success"]
    assert second.count == 3
    assert second.sum_seconds > success.sum_seconds
    assert all(
        after >= before
        for (_, before), (_, after) in zip(success.buckets, second.buckets, strict=True)
    )
    assert _buckets(second)[15] == _buckets(success)[15] + 1
    assert _buckets(second)[5] == _buckets(success)[5]
    # cumulative buckets, the last never above the count
    for histogram in (second, first["failed"]):
        counts = [c for _, c in histogram.buckets]
        assert counts == sorted(counts)
        assert counts[-1] <= histogram.count
    assert [b for b, _ in second.buckets] == list(DURATION_BUCKETS)


def test_an_end_reported_twice_counts_once_and_a_retry_counts_again(
    database: Database, cipher: SecretCipher
) -> None:
    (job,) = _pipeline(database, cipher, "job")
    with database.transaction() as session:
        claim_job(session=session, job_id=job, worker="w")
        assert set_job_status(session=session, job_id=job, status="failed", only_from={"running"})
    with database.transaction() as session:
        # the worker's report again, and the compare-and-set of a second worker that lost
        assert not set_job_status(
            session=session, job_id=job, status="failed", only_from={"running"}
        )
        # an unconditional write over the end moves the row but not out of `running`
        assert set_job_status(session=session, job_id=job, status="failed", reason="again")
        assert set_job_status(session=session, job_id=job, status="success")
        # the pipeline's cancel finds nothing unfinished
        row = session.get(Job, job)
        assert row is not None
        request_pipeline_cancel(session=session, pipeline_id=row.pipeline_id)
    assert {s: h.count for s, h in _histograms(database).items()} == {"failed": 1}

    with database.transaction() as session:
        again = retry_job(session=session, job_id=job)
        assert claim_job(session=session, job_id=again.id, worker="w")
        assert set_job_status(session=session, job_id=again.id, status="failed")
    assert {s: h.count for s, h in _histograms(database).items()} == {"failed": 2}


def test_a_job_end_rolled_back_is_not_counted(database: Database, cipher: SecretCipher) -> None:
    first, second, third = _pipeline(database, cipher, "a", "b", "c")
    with database.transaction() as session:
        for job_id in (first, second, third):
            claim_job(session=session, job_id=job_id, worker="w")
    with pytest.raises(RuntimeError), database.transaction() as session:
        set_job_status(session=session, job_id=first, status="success")
        raise RuntimeError("the request failed after the job's end")
    with database.transaction() as session:
        set_job_status(session=session, job_id=second, status="success")
        savepoint = session.begin_nested()
        set_job_status(session=session, job_id=third, status="success")
        savepoint.rollback()
    assert _histograms(database)["success"].count == 1
    with database.transaction() as session:
        statuses = {
            job_id: status for job_id, status in session.execute(select(Job.id, Job.status))
        }
    assert statuses == {first: "running", second: "success", third: "running"}


def test_concurrent_job_ends_all_count(postgres_url: str, cipher: SecretCipher) -> None:
    """On PostgreSQL: transactions ending different jobs at once are all counted; two ending the
    same job at once count it once."""
    upgrade(postgres_url)
    database = Database(postgres_url)
    try:
        ids = _pipeline(database, cipher, *(f"job-{i}" for i in range(8)))
        with database.transaction() as session:
            for job_id in ids:
                claim_job(session=session, job_id=job_id, worker="w")
        # the ends of eight jobs are all made before any commits (each holds its job's row while
        # the counters are written at commit); a ninth transaction ends the first job again
        ended = threading.Barrier(8)
        moved: list[bool] = []
        errors: list[BaseException] = []

        def end(job_id: int, wait: bool) -> None:
            try:
                with database.transaction() as session:
                    changed = set_job_status(
                        session=session, job_id=job_id, status="success", only_from={"running"}
                    )
                    if wait:
                        ended.wait(timeout=60)
                moved.append(changed)
            except BaseException as exc:  # reported by the test's thread
                errors.append(exc)

        threads = [threading.Thread(target=end, args=(job_id, True)) for job_id in ids[:8]]
        threads.append(threading.Thread(target=end, args=(ids[0], False)))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert not errors
        assert sorted(moved) == [False] + [True] * 8
        assert _histograms(database)["success"].count == 8
    finally:
        database.dispose()


def test_the_migration_counts_the_jobs_that_ran_before_it(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    for dialect in ("sqlite", "postgresql"):
        if dialect == "sqlite":
            _check_backfill(f"sqlite:///{tmp_path / 'kapal.db'}")
        else:
            postgres: PostgresServer = request.getfixturevalue("postgres")
            with postgres.database() as url:
                _check_backfill(url)


BULK = 10_050


def _check_backfill(url: str) -> None:
    upgrade(url, "0006")
    now = utcnow()
    runs = {  # name: (status, seconds it ran, or None: never started)
        "a": ("success", 0.5),
        "b": ("success", 45.25),
        "c": ("failed", 7200.0),
        "d": ("canceled", None),
        "e": ("running", None),
        "f": ("canceled", 3.0),
    }
    database = Database(url)
    try:
        with database.transaction() as session:
            session.execute(
                insert(Repository).values(
                    id=1, name="r", clone_url="u", provider="github", webhook_secret=b"x"
                )
            )
            session.execute(
                insert(Pipeline).values(
                    id=1, repository_id=1, source="push", ref="main", sha="a", status="running"
                )
            )
            # more than the 10,000 attempts the old exposition was limited to
            session.execute(
                insert(Job),
                [
                    {
                        "pipeline_id": 1,
                        "name": f"bulk-{i}",
                        "stage": "test",
                        "position": 100 + i,
                        "status": "success",
                        "started_at": now - timedelta(seconds=20),
                        "finished_at": now,
                    }
                    for i in range(BULK)
                ],
            )
            for position, (name, (status, ran)) in enumerate(runs.items()):
                started = None if ran is None else now - timedelta(seconds=ran)
                session.execute(
                    insert(Job).values(
                        pipeline_id=1,
                        name=name,
                        stage="test",
                        position=position,
                        status=status,
                        started_at=started if status != "running" else now,
                        finished_at=None if status == "running" else now,
                    )
                )
        upgrade(url)
        found = _histograms(database)
        # and the jobs that end after it count on top
        with database.transaction() as session:
            running = session.scalar(select(Job.id).where(Job.name == "e"))
            assert running is not None
            assert set_job_status(session=session, job_id=running, status="success")
        after = _histograms(database)["success"]
    finally:
        database.dispose()
    assert set(found) == {"success", "failed", "canceled"}
    success = found["success"]
    assert success.count == BULK + 2
    assert success.sum_seconds == pytest.approx(BULK * 20 + 45.75, abs=1)
    expected = {1: 1, 5: 1, 15: 1, 30: BULK + 1, 60: BULK + 2}
    assert _buckets(success) == {b: expected.get(b, BULK + 2) for b in DURATION_BUCKETS}
    assert after.count == BULK + 3
    assert _buckets(after)[1] == 2
    assert found["failed"].count == 1
    assert found["failed"].sum_seconds == pytest.approx(7200.0, abs=0.01)
    assert set(_buckets(found["failed"]).values()) == {0}
    assert found["canceled"].count == 1
    assert _buckets(found["canceled"])[1] == 0
    assert _buckets(found["canceled"])[5] == 1


def test_an_open_transaction_that_ended_a_job_holds_no_counter(
    postgres_url: str, cipher: SecretCipher
) -> None:
    """On PostgreSQL: the counters are written at commit, so a transaction that ended a job and
    goes on (locking a pipeline, say) does not make every other job's end wait for it, nor
    deadlock with one that holds what it waits for."""
    upgrade(postgres_url)
    database = Database(postgres_url)
    try:
        first, second = _pipeline(database, cipher, "a", "b")
        with database.transaction() as session:
            for job_id in (first, second):
                claim_job(session=session, job_id=job_id, worker="w")
        errors: list[BaseException] = []

        def end_second() -> None:
            try:
                with database.transaction() as session:
                    # fail rather than wait on the open transaction below
                    session.execute(text("SET LOCAL lock_timeout = '20s'"))
                    set_job_status(session=session, job_id=second, status="success")
            except BaseException as exc:  # reported by the test's thread
                errors.append(exc)

        with database.transaction() as session:
            assert set_job_status(session=session, job_id=first, status="success")
            other = threading.Thread(target=end_second)
            other.start()
            other.join()
        assert not errors
        assert _histograms(database)["success"].count == 2
    finally:
        database.dispose()
