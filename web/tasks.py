"""The Celery app and its thin tasks, which take ids: `run_job(job_id)`, `advance_pipeline(id)`,
`plan_pipeline(id, request)` (a webhook's pipeline planned off the request; a web process sends
the requests of a burst of webhooks together, `plan_pipelines([[id, request], ...])`, which a
worker sends on one by one), `commit_status(id, status)` (a pipeline's status to its git host,
`web.statuses`). A `run_job` message goes to the queue of its job's `tags:` (`web.routing`);
the others to `kapal-service`, which every worker takes from.

Task policy lives on `KapalTask`, as Read the Docs does for its builds:
- late acknowledgement (`task_acks_late`, one message prefetched, a message whose worker died
  is delivered again) plus the database claim in `web.execution`: a message delivered twice
  never runs a job twice;
- what a user causes (a failing script, a bad pipeline, a job or pipeline deleted meanwhile:
  any `web.errors.WebError`) is a result: recorded, logged, never retried;
- what the infrastructure causes (the database down or locked: SQLAlchemy's `OperationalError`,
  `InterfaceError`) is retried with exponential backoff, `Settings.task_max_retries` times.

The broker is `Settings.broker_url`: Redis, RabbitMQ, or by default kombu's SQLAlchemy transport
over a SQLite file in the data dir, polled every 50 ms (`web.broker`). No result backend: the
database holds every outcome.

Workers: `start_embedded_worker(settings)` runs one in a thread of the calling process (what
`kapal serve` does unless `--no-worker`); `kapal worker` (`web.worker_cli`) runs one apart. Each
writes heartbeats from a thread and sweeps the jobs of lost workers (`web.heartbeats`).
"""

from __future__ import annotations

import atexit
import logging
import os
import socket
import threading
from collections.abc import Sequence
from queue import SimpleQueue
from typing import Any

from celery import Celery, Task
from celery.worker import WorkController
from sqlalchemy import select
from sqlalchemy.exc import InterfaceError, OperationalError

from web.broker import broker_settings
from web.db.models import Job, Pipeline, Repository
from web.db.session import Database
from web.errors import WebError
from web.heartbeats import Heartbeat, explain_unserved
from web.orchestration import Services, advance, plan_recorded_pipeline, requeue_pending
from web.routing import DEFAULT_QUEUE, SERVICE_QUEUE, job_queue, worker_queues
from web.settings import Settings

log = logging.getLogger(__name__)

RUN_JOB = "kapal.run_job"
ADVANCE_PIPELINE = "kapal.advance_pipeline"
PLAN_PIPELINE = "kapal.plan_pipeline"
PLAN_PIPELINES = "kapal.plan_pipelines"
PLAN_BATCH = 100  # plan requests sent in one message at most
COMMIT_STATUS = "kapal.commit_status"
STATUS_MAX_RETRIES = 8  # 1 + 2 + ... + 60 s: a git host down for about four minutes
RETRY_BACKOFF_MAX = 60.0  # seconds
INFRASTRUCTURE_ERRORS: tuple[type[Exception], ...] = (OperationalError, InterfaceError)


class KapalCelery(Celery):  # type: ignore[misc]
    """kapal's Celery app: the usual app plus the `services` its tasks work with, and the
    name jobs record as their worker (set when a worker of this app starts)."""

    services: Services
    worker_name: str | None = None
    running: Any = None  # the embedded worker's `web.execution.RunningJobs`, when one runs

    def send_waiting(self) -> None:
        """Send the plan requests still waiting to go (a web process stopping)."""
        dispatcher = self.services.dispatcher
        if isinstance(dispatcher, CeleryDispatcher):
            dispatcher.close()


class KapalTask(Task):  # type: ignore[misc]
    """The policy of every kapal task (see the module docstring)."""

    acks_late = True
    reject_on_worker_lost = True
    ignore_result = True
    typing = True

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run the task body under the policy: user errors are results, infrastructure errors
        are retried with backoff."""
        try:
            return super().__call__(*args, **kwargs)
        except WebError as exc:
            log.warning("%s%r: %s", self.name, args, exc)
            return None
        except INFRASTRUCTURE_ERRORS as exc:
            services: Services = self.app.services
            retries = self.request.retries
            if retries >= services.settings.task_max_retries:
                log.error(
                    "%s%r: the database failed (%s); gave up after %d retries",
                    self.name,
                    args,
                    type(exc).__name__,
                    retries,
                )
                raise
            countdown = min(RETRY_BACKOFF_MAX, 2.0**retries)
            log.warning(
                "%s%r: the database failed (%s); retry %d in %.0fs",
                self.name,
                args,
                type(exc).__name__,
                retries + 1,
                countdown,
            )
            raise self.retry(
                exc=exc, countdown=countdown, max_retries=services.settings.task_max_retries
            ) from None


class PlanSender:
    """Sends the plan requests of the pipelines webhooks record from a thread of its own, all
    those waiting in one `plan_pipelines` message: a webhook is answered once its delivery and
    pipeline are committed, without waiting for the broker, and a burst of deliveries costs a
    few messages rather than one each (a worker spreads them out again, see `PlanPipelines`).

    Lifecycle: made by `CeleryDispatcher`; its thread starts with the first request; `close()`
    sends what waits and ends the thread (`kapal serve` calls it once its HTTP server stopped;
    an interpreter exiting otherwise calls it too). When no message can be sent (the broker is
    down), each pipeline is planned in this process rather than never.
    """

    def __init__(self, app: KapalCelery, queue: str) -> None:
        self.app = app
        self.queue = queue
        self._waiting: SimpleQueue[tuple[int, dict[str, Any]] | None] = SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def put(self, pipeline_id: int, request: dict[str, Any]) -> None:
        """Have the pipeline planned by a worker (sent at once, with whatever else waits)."""
        self._waiting.put((pipeline_id, request))
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._run, name="kapal-plan-sender", daemon=True
                    )
                    self._thread.start()
                    atexit.register(self.close)

    def close(self, timeout: float = 30.0) -> None:
        """Send what waits, then end the thread."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._waiting.put(None)
            thread.join(timeout)

    def _run(self) -> None:
        closing = False
        while not closing:
            first = self._waiting.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < PLAN_BATCH and not self._waiting.empty():
                item = self._waiting.get()
                if item is None:
                    closing = True
                    break
                batch.append(item)
            self._send(batch)

    def _send(self, batch: list[tuple[int, dict[str, Any]]]) -> None:
        try:
            self.app.send_task(
                PLAN_PIPELINES,
                args=[[[pipeline_id, request] for pipeline_id, request in batch]],
                queue=self.queue,
                argsrepr=repr([pipeline_id for pipeline_id, _ in batch]),
                kwargsrepr="{}",
            )
        except Exception:  # the broker is down: plan here rather than never
            log.exception("cannot send pipelines %s to be planned; planning them here", batch)
            for pipeline_id, request in batch:
                _plan_quietly(self.app.services, pipeline_id, request)


class CeleryDispatcher:
    """A `web.orchestration.Dispatcher` sending `run_job` messages through a Celery app, each
    to the queue of its job's `tags:` (`web.routing`), and the service's tasks to `queue`;
    plan requests through a `PlanSender` (`close()` sends those still waiting)."""

    def __init__(self, app: KapalCelery, queue: str = SERVICE_QUEUE) -> None:
        self.app = app
        self.queue = queue
        self.plans = PlanSender(app, queue)

    def close(self) -> None:
        """Send the plan requests still waiting (a web process stopping)."""
        self.plans.close()

    def run_jobs(self, job_ids: Sequence[int]) -> None:
        """Send one `run_job` message per job, to its tags' queue; a job no live worker serves
        is sent all the same (a worker started later takes it) and its reason says so."""
        if not job_ids:
            return
        services: Services = self.app.services
        with services.database.transaction() as session:
            tags = dict(
                session.execute(select(Job.id, Job.tags).where(Job.id.in_(list(job_ids)))).all()
            )
        for job_id in job_ids:
            self.app.send_task(RUN_JOB, args=[job_id], queue=job_queue(tags.get(job_id) or ()))
        try:
            with services.database.transaction() as session:
                explain_unserved(
                    session=session,
                    job_ids=list(job_ids),
                    lost_after=services.settings.worker_lost_after,
                )
        except INFRASTRUCTURE_ERRORS:  # the jobs are sent; only their reason waits for a sweep
            log.warning("cannot say which of jobs %s no worker serves", list(job_ids))

    def plan_pipeline(self, pipeline_id: int, request: dict[str, Any]) -> None:
        """Have a worker plan the pipeline: its request goes out with the next `plan_pipelines`
        message (`PlanSender`)."""
        self.plans.put(pipeline_id, request)

    def plan_one(self, pipeline_id: int, request: dict[str, Any]) -> None:
        """Send a `plan_pipeline` message for one pipeline now (its arguments shown by id in
        Celery's logs: their `repr`, which Celery would make, costs more than sending it)."""
        self.app.send_task(
            PLAN_PIPELINE,
            args=[pipeline_id, request],
            queue=self.queue,
            argsrepr=f"({pipeline_id}, ...)",
            kwargsrepr="{}",
        )

    def advance_later(self, pipeline_id: int, seconds: float) -> None:
        """Send an `advance_pipeline` message that runs in `seconds` (Celery's countdown)."""
        self.app.send_task(
            ADVANCE_PIPELINE, args=[pipeline_id], queue=self.queue, countdown=seconds
        )

    def commit_status(self, pipeline_id: int, status: str) -> None:
        """Send a `commit_status` message when the pipeline's repository has a status token."""
        services: Services = self.app.services
        with services.database.transaction() as session:
            has_token = session.scalar(
                select(Repository.status_token.is_not(None))
                .join(Pipeline, Pipeline.repository_id == Repository.id)
                .where(Pipeline.id == pipeline_id)
            )
        if has_token:
            self.app.send_task(COMMIT_STATUS, args=[pipeline_id, status], queue=self.queue)


def celery_settings(settings: Settings) -> dict[str, Any]:
    """The Celery configuration kapal runs with, for `settings`."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return {
        **broker_settings(settings.broker_url),
        "broker_connection_retry_on_startup": True,
        "task_serializer": "json",
        "accept_content": ["json"],
        "result_serializer": "json",
        "result_backend": None,
        "task_ignore_result": True,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_default_queue": DEFAULT_QUEUE,
        "worker_hijack_root_logger": False,
        "worker_send_task_events": False,
        "worker_enable_remote_control": False,
    }


def create_celery(settings: Settings, *, database: Database | None = None) -> KapalCelery:
    """A Celery app for `settings` with kapal's tasks registered and its `services` made
    (on `database`, else a new `Database` of `settings.database_url`)."""
    app = KapalCelery("kapal", set_as_current=False, task_cls=KapalTask)
    app.conf.update(celery_settings(settings))
    app.services = Services(
        settings=settings,
        database=database or Database(settings.database_url),
        dispatcher=CeleryDispatcher(app),
    )
    _register_tasks(app)
    return app


class RunJob(KapalTask):
    """`run_job(job_id)`: claim the job and run it (nothing when it is not pending any more)."""

    name = RUN_JOB

    def run(self, job_id: int) -> None:
        """The task's body."""
        from web.execution import run_claimed_job  # the runtime, only in workers

        app: KapalCelery = self.app
        run_claimed_job(
            services=app.services,
            job_id=job_id,
            worker=app.worker_name or worker_name(),
            running=app.running,
        )


class AdvancePipeline(KapalTask):
    """`advance_pipeline(pipeline_id)`: take the scheduling decisions its jobs allow now."""

    name = ADVANCE_PIPELINE

    def run(self, pipeline_id: int) -> None:
        """The task's body."""
        advance(services=self.app.services, pipeline_id=pipeline_id)


class PlanPipeline(KapalTask):
    """`plan_pipeline(pipeline_id, request)`: plan a pipeline a webhook recorded, start it."""

    name = PLAN_PIPELINE

    def run(self, pipeline_id: int, request: dict[str, Any]) -> None:
        """The task's body."""
        plan_recorded_pipeline(services=self.app.services, pipeline_id=pipeline_id, **request)


class PlanPipelines(KapalTask):
    """`plan_pipelines([[pipeline_id, request], ...])`: the plan requests a web process sent
    together (`PlanSender`). One alone is planned here; several are each sent on in a
    `plan_pipeline` message of their own, so the workers' threads plan them side by side (and
    this task, which then only sends, is never retried: no pipeline is sent twice)."""

    name = PLAN_PIPELINES

    def run(self, batch: list[list[Any]]) -> None:
        """The task's body."""
        app: KapalCelery = self.app
        if len(batch) == 1:
            [[pipeline_id, request]] = batch
            plan_recorded_pipeline(services=app.services, pipeline_id=pipeline_id, **request)
            return
        dispatcher = app.services.dispatcher
        if not isinstance(dispatcher, CeleryDispatcher):
            dispatcher = CeleryDispatcher(app)
        for pipeline_id, request in batch:
            try:
                dispatcher.plan_one(pipeline_id, request)
            except Exception:  # the broker is gone meanwhile: plan it here
                log.exception(
                    "cannot send pipeline %s on to be planned; planning it here", pipeline_id
                )
                _plan_quietly(app.services, pipeline_id, request)


def _plan_quietly(services: Services, pipeline_id: int, request: dict[str, Any]) -> None:
    try:
        plan_recorded_pipeline(services=services, pipeline_id=pipeline_id, **request)
    except Exception:
        log.exception("pipeline %s could not be planned", pipeline_id)


class CommitStatus(KapalTask):
    """`commit_status(pipeline_id, status)`: report it to the git host (`web.statuses`), tried
    again with exponential backoff while the host fails."""

    name = COMMIT_STATUS

    def run(self, pipeline_id: int, status: str) -> None:
        """The task's body."""
        from web.statuses import StatusDeliveryError, post_commit_status

        try:
            post_commit_status(services=self.app.services, pipeline_id=pipeline_id, status=status)
        except StatusDeliveryError as exc:
            retries = self.request.retries
            if retries >= STATUS_MAX_RETRIES:
                log.error("pipeline %s: commit status %s not sent: %s", pipeline_id, status, exc)
                return
            countdown = min(RETRY_BACKOFF_MAX, 2.0**retries)
            log.warning(
                "pipeline %s: commit status %s: %s; again in %.0fs",
                pipeline_id,
                status,
                exc,
                countdown,
            )
            raise self.retry(countdown=countdown, max_retries=STATUS_MAX_RETRIES) from None


def _register_tasks(app: KapalCelery) -> None:
    for task in (RunJob, AdvancePipeline, PlanPipeline, PlanPipelines, CommitStatus):
        app.register_task(task())


def worker_name(prefix: str = "kapal") -> str:
    """This process's worker node name: `prefix@host.pid`."""
    return f"{prefix}@{socket.gethostname()}.{os.getpid()}"


class _WorkController(WorkController):  # type: ignore[misc]
    """A worker that says when it is ready to take tasks."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.ready = threading.Event()
        super().__init__(*args, **kwargs)

    def on_consumer_ready(self, consumer: Any) -> None:
        """The consumer takes messages from now on."""
        self.ready.set()


class EmbeddedWorker:
    """A Celery worker running in a thread of this process (the threads pool).

    Lifecycle: made and started by `start_embedded_worker`, which returns once it takes tasks;
    `stop()` cancels the jobs it runs (unless told not to), stops taking tasks (messages
    taken but not started go back to the broker) and waits for the thread.
    """

    def __init__(
        self, app: KapalCelery, controller: _WorkController, served: Sequence[str]
    ) -> None:
        from web.execution import RunningJobs

        self.app = app
        self.controller = controller
        self.jobs = RunningJobs()
        app.running = self.jobs
        self.name: str = controller.hostname
        self.heartbeat = Heartbeat(
            app.services,
            name=self.name,
            queues=served,
            concurrency=controller.concurrency,
            fence=self.jobs.cancel_running,
            running=self.jobs,
        )
        self._thread = threading.Thread(
            target=controller.start, name="kapal-embedded-worker", daemon=True
        )

    def _start(self, timeout: float) -> None:
        self.heartbeat.start()
        self._thread.start()
        if not self.controller.ready.wait(timeout):
            self.stop()
            raise TimeoutError(f"the embedded worker did not start within {timeout:.0f}s")

    @property
    def running(self) -> bool:
        """Whether the worker's thread is alive."""
        return self._thread.is_alive()

    def stop(self, timeout: float = 60.0, *, cancel_jobs: bool = True) -> None:
        """Stop taking tasks and wait for the worker to exit.

        With `cancel_jobs` (the default: the process is going away) the jobs it runs are
        canceled first and end `canceled` ("the worker running it was stopped") within a few
        seconds; without, they run to their end (up to `timeout`).
        """
        if cancel_jobs:
            self.jobs.stop_all()
        if self._thread.is_alive():
            self.controller.stop(in_sighandler=False)
            self._thread.join(timeout)
        if self._thread.is_alive():
            self.controller.terminate(in_sighandler=False)
            self._thread.join(5.0)
        self.heartbeat.stop()


def start_embedded_worker(
    settings: Settings,
    *,
    app: KapalCelery | None = None,
    concurrency: int | None = None,
    queues: Sequence[str] = (DEFAULT_QUEUE,),
    hostname: str | None = None,
    start_timeout: float = 60.0,
) -> EmbeddedWorker:
    """Start a worker in a thread of this process and return once it takes tasks.

    `app` defaults to `create_celery(settings)`; `concurrency` to
    `settings.worker_concurrency` jobs at once; `queues` are the tags it serves (`kapal` for
    untagged jobs, see `web.routing`). It beats (`web.heartbeats.Heartbeat`) from before it
    takes tasks. Once it runs, `recover_jobs` fails the jobs a crashed worker of this machine
    left running, cleans what it left and sends the lost pending ones again.
    """
    app = app or create_celery(settings)
    # the pool's threads find their app as Celery's default one: one worker's app per process
    app.set_default()
    app.set_current()
    controller = _WorkController(
        app=app,
        hostname=hostname or worker_name("kapal-embedded"),
        pool="threads",
        concurrency=concurrency or settings.worker_concurrency,
        queues=worker_queues(queues),
        without_heartbeat=True,
        without_mingle=True,
        without_gossip=True,
        loglevel=logging.WARNING,
    )
    app.worker_name = controller.hostname
    worker = EmbeddedWorker(app, controller, list(queues))
    worker._start(start_timeout)
    recover_jobs(app.services)
    return worker


def recover_jobs(services: Services) -> None:
    """What a worker does as it starts: fail the jobs a dead worker of this machine left
    running (and those of any worker silent too long), remove what they left on this machine
    (`kapal gc`'s containers and sandboxes, finished jobs' work dirs), and send again the
    pending jobs whose message was lost. Never raises (logged)."""
    from web.execution import clean_leftovers, fail_orphaned_jobs
    from web.heartbeats import sweep_lost_workers

    try:
        fail_orphaned_jobs(services=services)
        sweep_lost_workers(services=services)
        clean_leftovers(services=services)
        requeue_pending(services=services)
    except Exception:  # the worker runs all the same; only those jobs wait longer
        log.exception("cannot look for jobs left behind by a stopped worker or a lost message")
