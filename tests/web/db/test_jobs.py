"""Jobs: create, list, the exclusive claim, status compare-and-set, cancel, retry."""

from __future__ import annotations

import pytest

from tests.support.threads import run_at_once
from tests.web.db.factories import make_jobs, make_pipeline, make_repository
from web.db.encryption import SecretCipher
from web.db.jobs import (
    claim_job,
    create_jobs,
    get_job,
    is_cancel_requested,
    list_jobs,
    request_job_cancel,
    request_pipeline_cancel,
    retry_job,
    set_job_image,
    set_job_status,
)
from web.db.schemas import JobCreate, JobRead
from web.db.session import Database
from web.errors import ConflictError, NotFoundError


def _pipeline_with_jobs(
    database: Database, cipher: SecretCipher, *names: str, status: str = "pending"
) -> list[JobRead]:
    with database.transaction() as session:
        repo = make_repository(session, cipher)
        pipeline = make_pipeline(session, repo.id)
        return make_jobs(session, pipeline.id, *names, status=status)


def test_create_and_list(database: Database, cipher: SecretCipher) -> None:
    with database.transaction() as session:
        repo = make_repository(session, cipher)
        pipeline = make_pipeline(session, repo.id)
        created = create_jobs(
            session=session,
            pipeline_id=pipeline.id,
            jobs=[
                JobCreate(
                    name="deploy", stage="deploy", position=2, when="manual", status="manual"
                ),
                JobCreate(name="build", stage="build", position=0, image="busybox:latest"),
                JobCreate(name="lint", stage="test", position=1, allow_failure=True),
            ],
        )
    assert [j.name for j in created] == ["deploy", "build", "lint"]
    with database.transaction() as session:
        listed = list_jobs(session=session, pipeline_id=pipeline.id)
        assert get_job(session=session, job_id=created[0].id) == created[0]
        assert get_job(session=session, job_id=created[-1].id + 10) is None
    assert [j.name for j in listed] == ["build", "lint", "deploy"]
    deploy, build, lint = created
    assert deploy.when == "manual" and deploy.status == "manual"
    assert lint.allow_failure and not build.allow_failure
    assert build.image == "busybox:latest"
    assert all(j.attempt == 1 and not j.retried and j.log_lines == 0 for j in created)
    with pytest.raises(NotFoundError), database.transaction() as session:
        create_jobs(session=session, pipeline_id=pipeline.id + 1, jobs=[])


def test_claim_moves_pending_to_running_once(database: Database, cipher: SecretCipher) -> None:
    (job,) = _pipeline_with_jobs(database, cipher, "test")
    with database.transaction() as session:
        assert claim_job(session=session, job_id=job.id, worker="worker-1")
    with database.transaction() as session:
        assert not claim_job(session=session, job_id=job.id, worker="worker-2")
        claimed = get_job(session=session, job_id=job.id)
    assert claimed is not None
    assert claimed.status == "running"
    assert claimed.worker == "worker-1"
    assert claimed.started_at is not None


@pytest.mark.parametrize("status", ["created", "manual", "success", "canceled"])
def test_only_a_pending_job_is_claimed(
    database: Database, cipher: SecretCipher, status: str
) -> None:
    (job,) = _pipeline_with_jobs(database, cipher, "test", status=status)
    with database.transaction() as session:
        assert not claim_job(session=session, job_id=job.id, worker="w")
        assert not claim_job(session=session, job_id=job.id + 99, worker="w")
        read = get_job(session=session, job_id=job.id)
    assert read is not None and read.status == status and read.worker is None


def test_claim_is_exclusive_under_concurrency(database: Database, cipher: SecretCipher) -> None:
    """Workers racing on the same pending jobs, each in its own connection: one winner per job."""
    jobs = _pipeline_with_jobs(database, cipher, *(f"job-{i}" for i in range(5)))

    def race(worker: int) -> list[int]:
        won = []
        for job in jobs:
            with database.transaction() as session:
                if claim_job(session=session, job_id=job.id, worker=f"w{worker}"):
                    won.append(job.id)
        return won

    results = run_at_once(8, race)
    assert all(isinstance(r, list) for r in results), results
    wins: dict[int, list[str]] = {job.id: [] for job in jobs}
    for worker, won in enumerate(results):
        assert isinstance(won, list)
        for job_id in won:
            wins[job_id].append(f"w{worker}")
    assert all(len(winners) == 1 for winners in wins.values()), wins
    with database.transaction() as session:
        for job in jobs:
            read = get_job(session=session, job_id=job.id)
            assert read is not None and read.status == "running"
            assert [read.worker] == wins[job.id]


def test_set_status_stamps_and_compares(database: Database, cipher: SecretCipher) -> None:
    (job,) = _pipeline_with_jobs(database, cipher, "test", status="created")
    with database.transaction() as session:
        assert set_job_status(session=session, job_id=job.id, status="pending")
        assert claim_job(session=session, job_id=job.id, worker="w")
        assert not set_job_status(
            session=session, job_id=job.id, status="success", only_from={"pending"}
        )
        assert set_job_status(
            session=session,
            job_id=job.id,
            status="failed",
            reason="script exited with 3",
            exit_code=3,
            only_from={"running"},
        )
        read = get_job(session=session, job_id=job.id)
    assert read is not None
    assert (read.status, read.exit_code, read.reason) == ("failed", 3, "script exited with 3")
    assert read.queued_at is not None and read.started_at is not None
    assert read.finished_at is not None and read.finished_at >= read.started_at >= read.queued_at
    with pytest.raises(NotFoundError), database.transaction() as session:
        set_job_status(session=session, job_id=job.id + 1, status="failed")


def test_image_is_recorded(database: Database, cipher: SecretCipher) -> None:
    (job,) = _pipeline_with_jobs(database, cipher, "test")
    digest = "sha256:" + "0" * 64
    with database.transaction() as session:
        set_job_image(session=session, job_id=job.id, image="python:3.12", digest=digest)
        read = get_job(session=session, job_id=job.id)
    assert read is not None and (read.image, read.image_digest) == ("python:3.12", digest)


def test_cancel_of_a_waiting_job_is_immediate(database: Database, cipher: SecretCipher) -> None:
    (job,) = _pipeline_with_jobs(database, cipher, "test")
    with database.transaction() as session:
        canceled = request_job_cancel(session=session, job_id=job.id)
    assert canceled.status == "canceled" and canceled.cancel_requested
    assert canceled.finished_at is not None
    with database.transaction() as session:
        assert not claim_job(session=session, job_id=job.id, worker="w")


def test_cancel_of_a_running_job_is_left_to_its_worker(
    database: Database, cipher: SecretCipher
) -> None:
    (job,) = _pipeline_with_jobs(database, cipher, "test")
    with database.transaction() as session:
        assert claim_job(session=session, job_id=job.id, worker="w")
        assert not is_cancel_requested(session=session, job_id=job.id)
    with database.transaction() as session:
        marked = request_job_cancel(session=session, job_id=job.id)
    assert marked.status == "running" and marked.cancel_requested
    with database.transaction() as session:
        assert is_cancel_requested(session=session, job_id=job.id)
        assert not is_cancel_requested(session=session, job_id=job.id + 1)
    with pytest.raises(NotFoundError), database.transaction() as session:
        request_job_cancel(session=session, job_id=job.id + 1)


def test_retry_makes_a_new_attempt(database: Database, cipher: SecretCipher) -> None:
    _build, test = _pipeline_with_jobs(database, cipher, "build", "test")
    with database.transaction() as session:
        set_job_status(session=session, job_id=test.id, status="failed", exit_code=1)
        second = retry_job(session=session, job_id=test.id)
    assert (second.name, second.attempt, second.status) == ("test", 2, "pending")
    assert second.position == test.position and not second.retried
    with database.transaction() as session:
        set_job_status(session=session, job_id=second.id, status="failed", exit_code=1)
        third = retry_job(session=session, job_id=test.id)  # from an old attempt: still the next
        every = list_jobs(session=session, pipeline_id=test.pipeline_id)
        live = list_jobs(session=session, pipeline_id=test.pipeline_id, include_retried=False)
    assert third.attempt == 3
    assert [(j.name, j.attempt, j.retried) for j in every] == [
        ("build", 1, False),
        ("test", 1, True),
        ("test", 2, True),
        ("test", 3, False),
    ]
    assert [(j.name, j.attempt) for j in live] == [("build", 1), ("test", 3)]
    with pytest.raises(NotFoundError), database.transaction() as session:
        retry_job(session=session, job_id=third.id + 1)


def test_only_a_finished_job_is_retried(database: Database, cipher: SecretCipher) -> None:
    (job,) = _pipeline_with_jobs(database, cipher, "test")
    with pytest.raises(ConflictError, match="pending"), database.transaction() as session:
        retry_job(session=session, job_id=job.id)
    with database.transaction() as session:
        set_job_status(session=session, job_id=job.id, status="failed")
        retry_job(session=session, job_id=job.id)
    with pytest.raises(ConflictError, match="attempt 2"), database.transaction() as session:
        retry_job(session=session, job_id=job.id)


def test_concurrent_retries_make_one_attempt(database: Database, cipher: SecretCipher) -> None:
    (job,) = _pipeline_with_jobs(database, cipher, "test", status="failed")

    def retry(_: int) -> int:
        with database.transaction() as session:
            return retry_job(session=session, job_id=job.id).attempt

    results = run_at_once(5, retry)
    assert [r for r in results if isinstance(r, int)] == [2]
    assert all(isinstance(r, ConflictError) for r in results if not isinstance(r, int)), results
    with database.transaction() as session:
        attempts = [
            (j.attempt, j.retried) for j in list_jobs(session=session, pipeline_id=job.pipeline_id)
        ]
    assert attempts == [(1, True), (2, False)]


def test_cancel_a_whole_pipeline(database: Database, cipher: SecretCipher) -> None:
    done, running, _waiting, manual = _pipeline_with_jobs(
        database, cipher, "done", "running", "waiting", "manual"
    )
    with database.transaction() as session:
        set_job_status(session=session, job_id=done.id, status="success")
        claim_job(session=session, job_id=running.id, worker="w")
        set_job_status(session=session, job_id=manual.id, status="manual")
    with database.transaction() as session:
        still_running = request_pipeline_cancel(session=session, pipeline_id=done.pipeline_id)
        after = {j.name: j for j in list_jobs(session=session, pipeline_id=done.pipeline_id)}
    assert [j.id for j in still_running] == [running.id]
    assert still_running[0].cancel_requested
    assert (after["done"].status, after["done"].cancel_requested) == ("success", False)
    assert (after["running"].status, after["running"].cancel_requested) == ("running", True)
    assert after["waiting"].status == after["manual"].status == "canceled"
    assert after["waiting"].finished_at is not None
    with pytest.raises(NotFoundError), database.transaction() as session:
        request_pipeline_cancel(session=session, pipeline_id=done.pipeline_id + 1)


def test_cancel_leaves_a_finished_job_alone(database: Database, cipher: SecretCipher) -> None:
    (job,) = _pipeline_with_jobs(database, cipher, "test", status="success")
    with database.transaction() as session:
        read = request_job_cancel(session=session, job_id=job.id)
    assert (read.status, read.cancel_requested) == ("success", False)
