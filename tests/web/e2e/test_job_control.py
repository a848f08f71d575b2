"""End to end, in a real Celery worker on the real runtime: a message delivered twice runs its
job once, cancel stops a running container, retries make new attempts, a manual job waits to be
played, and a job printing many megabytes keeps the worker's memory bounded."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from tests.web.e2e.conftest import wait_for
from tests.web.test_mirrors import Project
from web.db.logs import read_log
from web.db.schemas import PipelineDetail, RepositoryRead
from web.orchestration import (
    Services,
    cancel_pipeline,
    create_pipeline_for_ref,
    play_job,
    retry_job,
)
from web.tasks import EmbeddedWorker


def _start(services: Services, project: Project, repository: RepositoryRead, text: str) -> int:
    project.commit({".kapal.yml": text})
    project.push()
    return create_pipeline_for_ref(services=services, repository_id=repository.id, ref="main").id


def _log(services: Services, job_id: int) -> list[str]:
    with services.database.transaction() as session:
        return read_log(session=session, job_id=job_id).lines


def _jobs(detail: PipelineDetail) -> dict[str, list]:  # type: ignore[type-arg]
    attempts: dict[str, list] = {}  # type: ignore[type-arg]
    for job in detail.jobs:
        attempts.setdefault(job.name, []).append(job)
    return attempts


def test_a_message_delivered_twice_runs_its_job_once(
    request: pytest.FixtureRequest,
    services: Services,
    project: Project,
    repository: RepositoryRead,
) -> None:
    pipeline_id = _start(
        services, project, repository, "once:\n  image: busybox:latest\n  script: [echo ran]\n"
    )
    with services.database.transaction() as session:
        from web.db.jobs import list_jobs

        (job,) = list_jobs(session=session, pipeline_id=pipeline_id)
    assert job.status == "pending"
    # the creation sent one message; a redelivery (a broker, a lost ack) sends it again
    services.dispatcher.run_jobs([job.id, job.id])
    request.getfixturevalue("worker")  # two pool threads take the messages at once
    detail = wait_for(services, pipeline_id)
    assert detail.status == "success"
    assert [j.attempt for j in detail.jobs] == [1]
    time.sleep(1.0)  # the other messages were taken and found the job claimed
    assert _log(services, job.id).count("ran") == 1
    services.dispatcher.run_jobs([job.id])  # a late redelivery of a finished job
    time.sleep(1.0)
    assert _log(services, job.id).count("ran") == 1


SLEEPER = """
sleeper:
  image: busybox:latest
  script:
    - trap 'echo got TERM; exit 143' TERM
    - echo started
    - sleep 60 & wait
after:
  image: busybox:latest
  stage: deploy
  script: [echo never]
stages: [test, deploy]
"""


def test_cancel_stops_the_running_container_and_cancels_what_follows(
    services: Services, worker: EmbeddedWorker, project: Project, repository: RepositoryRead
) -> None:
    pipeline_id = _start(services, project, repository, SLEEPER)
    running = wait_for(
        services,
        pipeline_id,
        lambda p: any(j.status == "running" and j.log_lines > 0 for j in p.jobs),
    )
    sleeper = next(j for j in running.jobs if j.name == "sleeper")
    assert "started" in _log(services, sleeper.id)
    asked = time.monotonic()
    cancel_pipeline(services=services, pipeline_id=pipeline_id)
    detail = wait_for(services, pipeline_id, timeout=60)
    took = time.monotonic() - asked
    jobs = {j.name: j for j in detail.jobs}
    assert detail.status == "canceled"
    assert jobs["sleeper"].status == "canceled"
    assert jobs["after"].status == "canceled"
    assert "got TERM" in _log(services, sleeper.id)  # the container's process was signalled
    assert took < 60  # far from the sleep's end; bench/server.py measures the usual time


def test_retry_keyword_and_retry_by_hand_make_new_attempts(
    services: Services, worker: EmbeddedWorker, project: Project, repository: RepositoryRead
) -> None:
    pipeline_id = _start(
        services,
        project,
        repository,
        "flaky:\n  image: busybox:latest\n  retry: 1\n"
        "  script: [echo try $CI_JOB_ATTEMPT, exit 1]\n",
    )
    detail = wait_for(services, pipeline_id)
    attempts = _jobs(detail)["flaky"]
    assert detail.status == "failed"
    assert [(a.attempt, a.status, a.retried) for a in attempts] == [
        (1, "failed", True),
        (2, "failed", False),
    ]
    assert "retrying" in attempts[0].reason
    assert "try 2" in _log(services, attempts[1].id)
    again = retry_job(services=services, job_id=attempts[1].id)
    assert again.attempt == 3
    detail = wait_for(
        services, pipeline_id, lambda p: len(p.jobs) == 3 and p.status in ("failed", "success")
    )
    third = _jobs(detail)["flaky"][2]
    assert (third.attempt, third.status) == (3, "failed")
    assert "try 3" in _log(services, third.id)


MANUAL = """
stages: [build, deploy, verify]
build:
  stage: build
  image: busybox:latest
  script: [echo built]
ship:
  stage: deploy
  image: busybox:latest
  when: manual
  allow_failure: false
  script: [echo shipped]
verify:
  stage: verify
  image: busybox:latest
  script: [echo verified]
"""


def test_a_manual_job_waits_until_played(
    services: Services, worker: EmbeddedWorker, project: Project, repository: RepositoryRead
) -> None:
    pipeline_id = _start(services, project, repository, MANUAL)
    waiting = wait_for(services, pipeline_id, lambda p: p.status == "manual")
    jobs = {j.name: j for j in waiting.jobs}
    assert [jobs[n].status for n in ("build", "ship", "verify")] == ["success", "manual", "created"]
    time.sleep(0.5)
    assert wait_for(services, pipeline_id, lambda p: True).status == "manual"
    played = play_job(services=services, job_id=jobs["ship"].id, who="ada")
    assert played.status in ("pending", "running", "success")
    detail = wait_for(services, pipeline_id)
    jobs = {j.name: j for j in detail.jobs}
    assert detail.status == "success"
    assert [jobs[n].status for n in ("build", "ship", "verify")] == ["success"] * 3
    assert "shipped" in _log(services, jobs["ship"].id)


def _rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


LOUD_MB = 50


def test_a_job_printing_50_mb_keeps_the_worker_memory_bounded(
    services: Services, worker: EmbeddedWorker, project: Project, repository: RepositoryRead
) -> None:
    line = "x" * 99  # 100 bytes with its newline
    count = LOUD_MB * 1_000_000 // 100
    script = f"(yes {line} || true) | head -n {count}"
    baseline = _rss_bytes()
    peak = [baseline]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.05):
            peak[0] = max(peak[0], _rss_bytes())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        pipeline_id = _start(
            services,
            project,
            repository,
            f"loud:\n  image: busybox:latest\n  script: ['{script}']\n",
        )
        detail = wait_for(services, pipeline_id, timeout=600)
    finally:
        done.set()
        sampler.join()
    (job,) = detail.jobs
    assert detail.status == "success", job.reason
    assert job.log_lines >= count
    growth = peak[0] - baseline
    print(f"worker RSS growth while a job printed {LOUD_MB} MB: {growth / 2**20:.1f} MiB")
    assert growth < 100 * 2**20


def test_a_job_left_running_by_a_dead_worker_fails_when_a_worker_starts(
    request: pytest.FixtureRequest,
    services: Services,
    project: Project,
    repository: RepositoryRead,
) -> None:
    import socket
    import subprocess

    from web.db.jobs import claim_job, get_job, list_jobs

    gone = subprocess.Popen(["true"])
    gone.wait()  # a process id that no longer runs: the worker that claimed the job, killed
    dead = f"kapal@{socket.gethostname()}.{gone.pid}"
    elsewhere = "kapal@another-machine.1"  # may still run its job: left alone
    # kept when the second pipeline comes (not auto-canceled as redundant)
    keep = "workflow:\n  auto_cancel:\n    on_new_commit: none\n"
    first = _start(services, project, repository, keep + SLEEPER)
    second = _start(services, project, repository, keep + SLEEPER + "# again\n")
    with services.database.transaction() as session:
        orphan = list_jobs(session=session, pipeline_id=first)[0]
        remote = list_jobs(session=session, pipeline_id=second)[0]
        assert claim_job(session=session, job_id=orphan.id, worker=dead)
        assert claim_job(session=session, job_id=remote.id, worker=elsewhere)
    request.getfixturevalue("worker")
    detail = wait_for(services, first)
    jobs = {j.name: j for j in detail.jobs}
    assert detail.status == "failed"
    assert jobs["sleeper"].status == "failed"
    assert jobs["sleeper"].reason == (
        f"worker lost: the worker running it ({dead}) stopped before the job ended"
    )
    assert jobs["after"].status == "skipped"
    with services.database.transaction() as session:
        still = get_job(session=session, job_id=remote.id)
    assert still is not None and (still.status, still.worker) == ("running", elsewhere)


def test_stopping_the_embedded_worker_cancels_its_running_jobs(
    services: Services, worker: EmbeddedWorker, project: Project, repository: RepositoryRead
) -> None:
    from web.execution import STOPPED_REASON

    pipeline_id = _start(services, project, repository, SLEEPER)
    wait_for(
        services,
        pipeline_id,
        lambda p: any(j.status == "running" and j.log_lines > 0 for j in p.jobs),
    )
    worker.stop(timeout=60)
    assert not worker.running
    detail = wait_for(services, pipeline_id, timeout=10)
    jobs = {j.name: j for j in detail.jobs}
    assert (jobs["sleeper"].status, jobs["sleeper"].reason) == ("canceled", STOPPED_REASON)
    assert "got TERM" in _log(services, jobs["sleeper"].id)
    assert detail.status == "canceled"
