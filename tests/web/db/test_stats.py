"""Counts for /metrics and recovery lists."""

from __future__ import annotations

from tests.web.db.factories import make_jobs, make_pipeline, make_repository
from web.db.encryption import SecretCipher
from web.db.jobs import claim_job, retry_job, set_job_status
from web.db.models import utcnow
from web.db.session import Database
from web.db.stats import (
    count_jobs_by_status,
    count_pipelines_by_status,
    list_jobs_by_status,
)


def test_counts_and_lists(database: Database, cipher: SecretCipher) -> None:
    with database.transaction() as session:
        assert count_pipelines_by_status(session=session) == {}
        repo = make_repository(session, cipher)
        first = make_pipeline(session, repo.id, status="running")
        make_pipeline(session, repo.id, status="failed")
        make_pipeline(session, repo.id, status="running")
        a, b, c = make_jobs(session, first.id, "a", "b", "c")
        claim_job(session=session, job_id=a.id, worker="w")
        set_job_status(session=session, job_id=b.id, status="failed")
        retried = retry_job(session=session, job_id=b.id)
    with database.transaction() as session:
        assert count_pipelines_by_status(session=session) == {"running": 2, "failed": 1}
        assert count_jobs_by_status(session=session) == {"running": 1, "pending": 2}
        pending = list_jobs_by_status(session=session, statuses={"pending"})
        running = list_jobs_by_status(session=session, statuses=["running", "failed"])
        one = list_jobs_by_status(session=session, statuses={"pending"}, limit=1)
    assert [j.id for j in pending] == [c.id, retried.id]
    assert [j.id for j in running] == [a.id]
    assert [j.id for j in one] == [c.id]


def test_jobs_queued_before(database: Database, cipher: SecretCipher) -> None:
    with database.transaction() as session:
        repo = make_repository(session, cipher)
        pipeline = make_pipeline(session, repo.id)
        (old,) = make_jobs(session, pipeline.id, "old")
    cutoff = utcnow()
    with database.transaction() as session:
        (new,) = make_jobs(session, pipeline.id, "new")
        stale = list_jobs_by_status(session=session, statuses={"pending"}, queued_before=cutoff)
        every = list_jobs_by_status(session=session, statuses={"pending"})
    assert [j.id for j in stale] == [old.id]
    assert [j.id for j in every] == [old.id, new.id]
