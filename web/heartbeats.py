"""Workers' heartbeats: a row per worker, refreshed from a thread, and the sweep that fails the
jobs of a worker that stopped beating ("worker lost").

    Heartbeat.start()   register the worker (name, host, pid, queues), then every
                        `worker_heartbeat_interval` seconds, in a thread:
                          beat            heartbeat_at = now (a busy job never delays it)
                          sweep           fail the running jobs of workers silent for
                                          `worker_lost_after` seconds (any worker sweeps;
                                          each job is failed once, by a compare-and-set)
                          explain         say on pending jobs which tags no live worker serves
                          resend          a worker with a free slot sends again the jobs it
                                          serves pending for `LOST_MESSAGE_AFTER` seconds: their
                                          message was lost (a broker restarted without its
                                          queues); a message not lost finds the job claimed;
                                          and the plan requests of webhooks' pipelines left
                                          unplanned (`web.hooks.lost_plans`) and of child
                                          pipelines (`web.orchestration.recover_children`)
                          expire          every `SWEEP_INTERVAL` seconds (the first a minute
                                          after start), in a thread of its own so a long one
                                          never delays a beat: remove the artifacts past their
                                          time (`web.artifact_expiry`)
    Heartbeat.stop()    stop the thread (and a sweep between two removals), mark the worker stopped

Every time here is the database's clock (`web.db.clock`), never a worker's: workers on machines
whose clocks differ would otherwise declare a live worker lost (a clock behind) or never notice a
dead one (a clock ahead).

A worker that is slow but alive keeps beating (the thread does not wait for its jobs), so the
sweep never fails its jobs. One that cannot write its heartbeat for nearly `worker_lost_after`
seconds (cut off from the database) cancels its own running jobs before the others declare them
lost, and a job failed as lost is also marked for cancelation, which its worker's cancel watcher
acts on should it come back: the same job never runs on two workers at once.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Protocol

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from runner.engine.recorder import JobStatus
from web.artifact_expiry import SWEEP_INTERVAL, expire_artifacts
from web.db.clock import database_now
from web.db.downstream import DOWNSTREAM_WORKER
from web.db.models import Job, Worker
from web.hooks.lost_plans import resend_lost_plans
from web.orchestration import JobEnd, Services, finish_job, recover_children
from web.routing import WAITING_PREFIX, serves, unserved_reason

log = logging.getLogger(__name__)

LOST_REASON = "worker lost"
LOST_CHILD_AFTER = 30.0  # seconds a child pipeline waits for its plan before it is sent again
# a job this long pending while a worker serving it has a free slot lost its message
LOST_MESSAGE_AFTER = 15.0
PRUNE_AFTER = timedelta(days=1)  # rows of workers stopped or silent this long are removed
FIRST_EXPIRY_AFTER = 60.0  # seconds from a worker's start to its first artifact expiry sweep
EXPIRY_STOP_WAIT = 10.0  # seconds a stopping worker waits for its sweep to stop


class RunningCount(Protocol):
    """How many jobs a worker runs now (`web.execution.RunningJobs`)."""

    def count(self) -> int:
        """The number of attempts running."""


def _aware(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def register_worker(
    *, session: Session, name: str, queues: Sequence[str], concurrency: int
) -> None:
    """Record a starting worker (replacing the row of an earlier worker of the same name)."""
    session.execute(delete(Worker).where(Worker.name == name))
    now = database_now(session)
    session.add(
        Worker(
            name=name,
            host=socket.gethostname()[:255],
            pid=os.getpid(),
            queues=list(queues),
            concurrency=concurrency,
            started_at=now,
            heartbeat_at=now,
        )
    )
    session.flush()


def live_worker_queues(*, session: Session, lost_after: float) -> list[list[str]]:
    """The queues served by each worker that is running and beat within `lost_after` seconds."""
    cutoff = database_now(session) - timedelta(seconds=lost_after)
    rows = session.scalars(
        select(Worker.queues).where(Worker.stopped_at.is_(None), Worker.heartbeat_at >= cutoff)
    )
    return [list(queues) for queues in rows]


def with_waiting_reason(reason: str, waiting: str) -> str:
    """A pending job's reason with the tags it waits for (what was there before is kept)."""
    kept = without_waiting_reason(reason)
    return f"{kept}; {waiting}" if kept else waiting


def without_waiting_reason(reason: str) -> str:
    """The reason without the part `with_waiting_reason` added."""
    if reason.startswith(WAITING_PREFIX):
        return ""
    return reason.split(f"; {WAITING_PREFIX}", 1)[0]


def explain_unserved(*, session: Session, job_ids: Sequence[int] | None, lost_after: float) -> int:
    """Give each pending job (of `job_ids`, else all) whose tags no live worker serves the
    reason saying so; returns how many such jobs there are."""
    workers = live_worker_queues(session=session, lost_after=lost_after)
    query = select(Job.id, Job.tags, Job.reason).where(
        Job.status == "pending", Job.retried.is_(False)
    )
    if job_ids is not None:
        query = query.where(Job.id.in_(list(job_ids)))
    unserved = 0
    for job_id, tags, reason in session.execute(query).all():
        if any(serves(queues, tags or []) for queues in workers):
            continue
        unserved += 1
        wanted = with_waiting_reason(reason, unserved_reason(tags or [], len(workers)))
        if wanted != reason:
            session.execute(
                update(Job).where(Job.id == job_id, Job.status == "pending").values(reason=wanted)
            )
    return unserved


def sweep_lost_workers(*, services: Services) -> list[int]:
    """Fail the running jobs whose worker is gone: stopped, silent for `worker_lost_after`
    seconds, or never registered and started that long ago; returns their ids. Running
    `trigger:` jobs (worker `DOWNSTREAM_WORKER`) are left alone: their child pipeline ends them."""
    lost_after = services.settings.worker_lost_after
    with services.database.transaction() as session:
        now = database_now(session)
        rows = session.execute(
            select(Job.id, Job.worker, Job.started_at, Worker.heartbeat_at, Worker.stopped_at)
            .outerjoin(Worker, Worker.name == Job.worker)
            .where(
                Job.status == "running",
                Job.retried.is_(False),
                # a trigger: job runs on no worker: its child pipeline ends it
                Job.worker.is_distinct_from(DOWNSTREAM_WORKER),
            )
        ).all()
    lost: list[int] = []
    for job_id, worker, started_at, beat, stopped_at in rows:
        last = beat if beat is not None else started_at
        if (
            stopped_at is None
            and last is not None
            and now - _aware(last) <= timedelta(seconds=lost_after)
        ):
            continue
        silent = "stopped" if stopped_at is not None else "sent no heartbeat"
        if stopped_at is None and last is not None:
            silent += f" for {(now - _aware(last)).total_seconds():.0f}s"
        log.warning(
            "job %s: its worker %s %s; failing it (%s)", job_id, worker, silent, LOST_REASON
        )
        finish_job(
            services=services,
            job_id=job_id,
            end=JobEnd(
                JobStatus.FAILED,
                reason=f"{LOST_REASON}: {worker or 'its worker'} {silent}",
                failure_kind="runner_system_failure",
            ),
        )
        with services.database.transaction() as session:
            # should that worker come back, its cancel watcher stops the attempt
            session.execute(update(Job).where(Job.id == job_id).values(cancel_requested=True))
        lost.append(job_id)
    return lost


def prune_workers(*, session: Session) -> int:
    """Remove the rows of workers stopped or silent for a day; returns how many."""
    cutoff = database_now(session) - PRUNE_AFTER
    result = session.execute(
        delete(Worker).where(
            (Worker.heartbeat_at < cutoff)
            | (Worker.stopped_at.is_not(None) & (Worker.stopped_at < cutoff))
        )
    )
    return int(getattr(result, "rowcount", 0) or 0)


def resend_lost_messages(
    *, services: Services, queues: Sequence[str], older_than: float = LOST_MESSAGE_AFTER
) -> list[int]:
    """Send again the jobs a worker serving `queues` runs that have been pending for
    `older_than` seconds (called when that worker has a free slot); returns their ids."""
    with services.database.transaction() as session:
        cutoff = database_now(session) - timedelta(seconds=older_than)
        rows = session.execute(
            select(Job.id, Job.tags).where(
                Job.status == "pending",
                Job.retried.is_(False),
                Job.cancel_requested.is_(False),
                Job.queued_at < cutoff,
            )
        ).all()
    lost = [job_id for job_id, tags in rows if serves(queues, tags or [])]
    if lost:
        log.warning("jobs %s waited %.0fs with a worker free: sending them again", lost, older_than)
        services.dispatcher.run_jobs(lost)
    return lost


class Heartbeat:
    """A worker's heartbeat thread (see the module docstring).

    Lifecycle: `start()` registers the worker and starts the thread, before the worker takes
    tasks; `stop()` (idempotent) joins the thread and marks the worker stopped. `fence` is
    called when the heartbeat could not be written for nearly `worker_lost_after` seconds: it
    cancels the jobs this worker runs, which the others are about to declare lost.
    """

    def __init__(
        self,
        services: Services,
        *,
        name: str,
        queues: Sequence[str],
        concurrency: int,
        fence: Callable[[], object] | None = None,
        running: RunningCount | None = None,
        first_expiry_after: float = FIRST_EXPIRY_AFTER,
    ) -> None:
        self.services = services
        self.name = name
        self.queues = list(queues)
        self.concurrency = concurrency
        self.fence = fence
        self.running = running
        self.interval = services.settings.worker_heartbeat_interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="kapal-heartbeat", daemon=True)
        self._last_beat = time.monotonic()
        self._fenced = False
        self._next_expiry = time.monotonic() + first_expiry_after
        self._expiry: threading.Thread | None = None

    def start(self) -> Heartbeat:
        """Register the worker and start beating; returns self. Jobs left running under this
        worker's name (an earlier process of that name, dead) fail as lost: this one has not
        taken any yet."""
        with self.services.database.transaction() as session:
            register_worker(
                session=session, name=self.name, queues=self.queues, concurrency=self.concurrency
            )
            left = list(
                session.scalars(
                    select(Job.id).where(
                        Job.status == "running", Job.retried.is_(False), Job.worker == self.name
                    )
                )
            )
        for job_id in left:
            log.warning("job %s: left running by an earlier %s; failing it", job_id, self.name)
            finish_job(
                services=self.services,
                job_id=job_id,
                end=JobEnd(
                    JobStatus.FAILED,
                    reason=f"{LOST_REASON}: {self.name} restarted while it ran",
                    failure_kind="runner_system_failure",
                ),
            )
        self._last_beat = time.monotonic()
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop beating and mark the worker stopped (best effort: a lost database is logged)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        if self._expiry is not None:
            self._expiry.join(EXPIRY_STOP_WAIT)  # it stops between two removals
        try:
            with self.services.database.transaction() as session:
                session.execute(
                    update(Worker)
                    .where(Worker.name == self.name)
                    .values(stopped_at=database_now(session))
                )
        except Exception:
            log.warning("worker %s: cannot mark it stopped", self.name, exc_info=True)

    def beat(self) -> None:
        """Write the heartbeat now (re-registering a worker whose row was removed)."""
        with self.services.database.transaction() as session:
            changed = session.execute(
                update(Worker)
                .where(Worker.name == self.name)
                .values(heartbeat_at=database_now(session), stopped_at=None)
            )
            if not getattr(changed, "rowcount", 1):
                register_worker(
                    session=session,
                    name=self.name,
                    queues=self.queues,
                    concurrency=self.concurrency,
                )
        self._last_beat = time.monotonic()
        self._fenced = False

    def tend(self) -> None:
        """One round of the thread: beat, sweep lost workers, explain unserved jobs."""
        settings = self.services.settings
        try:
            self.beat()
        except Exception:
            silent = time.monotonic() - self._last_beat
            log.warning("worker %s: cannot write its heartbeat (%.0fs)", self.name, silent)
            if silent >= settings.worker_lost_after - 2 * self.interval and not self._fenced:
                self._fenced = True
                log.error("worker %s: cut off; canceling its jobs before they are lost", self.name)
                if self.fence is not None:
                    self.fence()
            return
        try:
            sweep_lost_workers(services=self.services)
            with self.services.database.transaction() as session:
                explain_unserved(
                    session=session, job_ids=None, lost_after=settings.worker_lost_after
                )
                prune_workers(session=session)
            if self.running is not None and self.running.count() < self.concurrency:
                resend_lost_messages(services=self.services, queues=self.queues)
                resend_lost_plans(services=self.services)
                recover_children(services=self.services, older_than=LOST_CHILD_AFTER)
        except Exception:
            log.warning("worker %s: the sweep of lost workers failed", self.name, exc_info=True)
        self.expire_artifacts_when_due()

    def expire_artifacts_when_due(self) -> threading.Thread | None:
        """Start the artifact expiry sweep in a thread when it is due and none runs; returns
        that thread."""
        now = time.monotonic()
        if now < self._next_expiry or (self._expiry is not None and self._expiry.is_alive()):
            return None
        self._next_expiry = now + SWEEP_INTERVAL
        self._expiry = threading.Thread(
            target=self._expire_artifacts, name="kapal-artifact-expiry", daemon=True
        )
        self._expiry.start()
        return self._expiry

    def _expire_artifacts(self) -> None:
        try:
            expire_artifacts(
                settings=self.services.settings, database=self.services.database, stop=self._stop
            )
        except Exception:
            log.warning("worker %s: the artifact expiry sweep failed", self.name, exc_info=True)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.tend()
