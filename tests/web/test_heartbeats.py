"""Heartbeats and routing on both databases: the sweep fails the jobs of a silent, stopped or
unknown worker (once, as a retry when `retry:` asks) and leaves a slow worker that beats alone;
a pending job no live worker serves says why, and the claim takes that away again; a worker cut
off from the database cancels its own jobs; queue names by tags."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from tests.web.service_support import KeptJobs, kept_services
from web.db.jobs import claim_job, create_jobs, get_job
from web.db.models import Job, Worker, utcnow
from web.db.pipelines import create_pipeline
from web.db.repos import create_repository
from web.db.schemas import JobCreate, PipelineCreate, Provider, RepositoryCreate
from web.db.session import Database
from web.errors import WorkerQueuesError
from web.execution import _forget_waiting_reason
from web.heartbeats import (
    LOST_MESSAGE_AFTER,
    Heartbeat,
    explain_unserved,
    register_worker,
    resend_lost_messages,
    sweep_lost_workers,
)
from web.orchestration import Services
from web.routing import job_queue, serves, worker_queues


@pytest.fixture
def services(database: Database, tmp_path: Path) -> Services:
    """The service layer on the test database; lost after 30 s (the default)."""
    return kept_services(database, tmp_path)


def _jobs(services: Services, *tags: list[str]) -> list[int]:
    with services.database.transaction() as session:
        repository = create_repository(
            session=session,
            cipher=services.cipher(),
            new=RepositoryCreate(
                name="acme/shop", clone_url="/x", provider=Provider.GITHUB, webhook_secret="s"
            ),
        )
        pipeline = create_pipeline(
            session=session,
            new=PipelineCreate(repository_id=repository.id, source="push", ref="main", sha="a"),
        )
        made = create_jobs(
            session=session,
            pipeline_id=pipeline.id,
            jobs=[
                JobCreate(name=f"job{n}", stage="test", position=n, status="pending", tags=t)
                for n, t in enumerate(tags)
            ],
        )
    return [job.id for job in made]


def _worker(services: Services, name: str, queues: list[str], *, silent: float = 0.0) -> None:
    with services.database.transaction() as session:
        register_worker(session=session, name=name, queues=queues, concurrency=1)
        session.execute(
            update(Worker)
            .where(Worker.name == name)
            .values(heartbeat_at=utcnow() - timedelta(seconds=silent))
        )


def _claim(services: Services, job_id: int, worker: str, started_ago: float = 0.0) -> None:
    with services.database.transaction() as session:
        assert claim_job(session=session, job_id=job_id, worker=worker)
        session.execute(
            update(Job)
            .where(Job.id == job_id)
            .values(started_at=utcnow() - timedelta(seconds=started_ago))
        )


def _job(services: Services, job_id: int) -> tuple[str, str, bool]:
    with services.database.transaction() as session:
        job = get_job(session=session, job_id=job_id)
    assert job is not None
    return job.status, job.reason, job.cancel_requested


def test_the_sweep_fails_the_jobs_of_silent_stopped_and_unknown_workers_only(
    services: Services,
) -> None:
    slow, silent, stopped, unknown, young = _jobs(services, [], [], [], [], [])
    _worker(services, "slow", ["kapal"], silent=2)  # beats, its job started an hour ago
    _claim(services, slow, "slow", started_ago=3600)
    _worker(services, "silent", ["kapal"], silent=31)
    _claim(services, silent, "silent")
    _worker(services, "stopped", ["kapal"])
    with services.database.transaction() as session:
        session.execute(update(Worker).where(Worker.name == "stopped").values(stopped_at=utcnow()))
    _claim(services, stopped, "stopped")
    _claim(services, unknown, "gone@elsewhere.1", started_ago=60)  # no row, started long ago
    _claim(services, young, "starting@elsewhere.2", started_ago=1)  # no row yet, just started
    assert sorted(sweep_lost_workers(services=services)) == sorted([silent, stopped, unknown])
    assert _job(services, slow) == ("running", "", False)
    assert _job(services, young)[0] == "running"
    status, reason, cancel = _job(services, silent)
    assert (status, cancel) == ("failed", True)
    assert reason.startswith("worker lost: silent sent no heartbeat for 3")
    assert _job(services, stopped)[1] == "worker lost: stopped stopped"
    assert _job(services, unknown)[1].startswith("worker lost: gone@elsewhere.1 sent no heartbeat")
    # a second sweep (another worker's) finds nothing more to fail
    assert sweep_lost_workers(services=services) == []


def test_a_pending_job_no_live_worker_serves_says_why_until_claimed(services: Services) -> None:
    gpu, plain, both = _jobs(services, ["gpu"], [], ["gpu", "arm"])
    _worker(services, "arm-box", ["arm"])
    _worker(services, "dead-gpu", ["gpu", "arm"], silent=60)  # not live: does not count
    with services.database.transaction() as session:
        session.execute(update(Job).where(Job.id == both).values(reason="played by ada"))
        assert explain_unserved(session=session, job_ids=None, lost_after=30) == 3
    assert _job(services, gpu)[1] == (
        "waiting for a worker serving tags gpu: none of the 1 live worker(s) does; "
        "start one with `kapal worker --queues gpu`"
    )
    assert _job(services, plain)[1].startswith("waiting for a worker serving the queue kapal")
    reason = _job(services, both)[1]
    assert reason.startswith("played by ada; waiting for a worker serving tags arm, gpu")
    _worker(services, "gpu-box", ["kapal", "gpu", "arm"])
    with services.database.transaction() as session:
        assert explain_unserved(session=session, job_ids=None, lost_after=30) == 0
        assert claim_job(session=session, job_id=both, worker="gpu-box")
        _forget_waiting_reason(session, both)
    assert _job(services, both)[1] == "played by ada"


def test_a_worker_cut_off_from_the_database_cancels_its_jobs(
    services: Services, tmp_path: Path
) -> None:
    canceled: list[bool] = []
    heartbeat = Heartbeat(
        services, name="w", queues=["kapal"], concurrency=1, fence=lambda: canceled.append(True)
    )
    heartbeat.start()
    heartbeat.stop()
    cut_off = Services(
        settings=services.settings,
        database=Database(f"sqlite:///{tmp_path / 'missing' / 'kapal.db'}"),
        dispatcher=KeptJobs(),
    )
    heartbeat.services = cut_off
    heartbeat.tend()
    assert canceled == []  # a failed beat alone is not enough
    heartbeat._last_beat -= services.settings.worker_lost_after
    heartbeat.tend()
    heartbeat.tend()
    assert canceled == [True]  # once


def test_queues_by_tags() -> None:
    assert job_queue([]) == "kapal"
    assert job_queue(["linux", "docker", "linux"]) == "tags:docker+linux"
    assert worker_queues(["kapal", "linux", "docker"]) == [
        "kapal-service",
        "kapal",
        "tags:docker",
        "tags:linux",
        "tags:docker+linux",
    ]
    assert worker_queues(["gpu"]) == ["kapal-service", "tags:gpu"]
    assert job_queue(["docker", "linux"]) in worker_queues(["linux", "docker", "x"])
    assert serves(["kapal"], []) and not serves(["gpu"], [])
    assert serves(["gpu", "arm"], ["arm"]) and not serves(["gpu"], ["gpu", "arm"])
    for bad in (["a+b"], ["tags:x"], [" x"], ["kapal-service"], [str(n) for n in range(9)]):
        with pytest.raises(WorkerQueuesError):
            worker_queues(bad)


def test_a_worker_with_a_free_slot_sends_again_the_jobs_it_serves_pending_too_long(
    services: Services,
) -> None:
    old_plain, old_gpu, new_plain = _jobs(services, [], ["gpu"], [])
    with services.database.transaction() as session:
        session.execute(
            update(Job)
            .where(Job.id.in_([old_plain, old_gpu]))
            .values(queued_at=utcnow() - timedelta(seconds=LOST_MESSAGE_AFTER + 1))
        )
    assert resend_lost_messages(services=services, queues=["kapal"]) == [old_plain]
    assert resend_lost_messages(services=services, queues=["gpu"]) == [old_gpu]
    kept = services.dispatcher
    assert isinstance(kept, KeptJobs) and kept.sent == [old_plain, old_gpu]
    assert new_plain not in kept.sent


def test_a_worker_restarted_under_its_name_fails_what_the_dead_one_left_running(
    services: Services,
) -> None:
    left, other = _jobs(services, [], [])
    _worker(services, "named", ["kapal"])
    _claim(services, left, "named")
    _claim(services, other, "someone-else")
    heartbeat = Heartbeat(services, name="named", queues=["kapal"], concurrency=1)
    heartbeat.start()
    heartbeat.stop()
    assert _job(services, left)[:2] == ("failed", "worker lost: named restarted while it ran")
    assert _job(services, other)[0] == "running"


def _clock_off_by(monkeypatch: pytest.MonkeyPatch, offset: timedelta) -> None:
    """This process's clock reads `offset` away from the truth (a worker on another machine)."""
    import web.db.clock
    import web.db.models

    def skewed() -> datetime:
        return datetime.now(UTC) + offset

    monkeypatch.setattr(web.db.clock, "utcnow", skewed)
    monkeypatch.setattr(web.db.models, "utcnow", skewed)


# PostgreSQL only: the embedded SQLite database lives on one machine, so it has one clock
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
@pytest.mark.parametrize("offset_minutes", [-10, 10])
def test_workers_on_machines_whose_clocks_differ_are_judged_by_the_database_clock(
    services: Services, monkeypatch: pytest.MonkeyPatch, offset_minutes: int
) -> None:
    assert services.database.engine.dialect.name == "postgresql"
    quick = Services(
        settings=services.settings.model_copy(update={"worker_lost_after": 2.0}),
        database=services.database,
        dispatcher=services.dispatcher,
    )
    (job_id,) = _jobs(quick, [])
    with monkeypatch.context() as worker_machine:
        _clock_off_by(worker_machine, timedelta(minutes=offset_minutes))
        Heartbeat(quick, name="far", queues=["kapal"], concurrency=1).beat()
        _claim(quick, job_id, "far")
    # beating a moment ago, by the database's clock: alive, whatever the worker's clock said
    assert sweep_lost_workers(services=quick) == []
    assert _job(quick, job_id)[0] == "running"
    # then silent past `worker_lost_after`: lost, even if its clock ran ahead
    time.sleep(2.5)
    assert sweep_lost_workers(services=quick) == [job_id]
    assert _job(quick, job_id)[1].startswith("worker lost: far sent no heartbeat for ")
