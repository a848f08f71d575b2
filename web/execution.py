"""Running one job attempt in a worker: claim it, run it with `JobRunner`, record how it ended.

    run_claimed_job(services, job_id, worker)
      1. claim: pending -> running for this worker, only if still pending (a redelivered message,
         a second worker: exactly one claim succeeds; the others return at once)
      2. what the job runs under, from the database: its plan, the repository's secrets (only
         those its ref may receive), the owner its images and caches belong to, whether the
         repository may use `network: host`
      3. `JobRunner` over the commit's files written out of the repository's mirror (symlinks
         recreated, never followed), the embedded runtime with the operator's default limits,
         and a `DatabaseRecorder` (log batches, test cases, artifacts); a watcher thread polls
         the job's `cancel_requested` every `CANCEL_POLL` seconds and cancels the runner
      4. `web.orchestration.finish_job`: the outcome, a retry as `retry:` says, the next jobs

A pipeline from a webhook runs code the operator did not write: everything here takes the
repository's side of every choice from the database (never from the pipeline), so the job gets
its repository's images, caches and secrets and no one else's.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select

from pipeline.plan import Plan
from runner.artifacts import ArtifactStore
from runner.cache import CacheStore
from runner.engine.job_runner import JobOptions, JobOutcome, JobRunner
from runner.engine.recorder import JobStatus
from runner.images.reference import Reference
from runner.images.resolve import ImageResolver
from runner.images.store import ImageStore
from runner.job_images import (
    BuildLog,
    BuildRequest,
    RunnableImage,
    StoreImageProvider,
    embedded_builder,
)
from runner.runtime.backend import Backend, Limits
from runner.runtime.embedded import EmbeddedBackend
from web.db.jobs import claim_job, get_job, set_job_image
from web.db.models import Job
from web.db.pipelines import get_pipeline, get_pipeline_plan
from web.db.repos import get_repository
from web.db.results import add_built_image
from web.db.secrets import pipeline_access, secrets_for_pipeline
from web.db.session import Database
from web.mirrors import RepositoryMirror
from web.orchestration import JobEnd, Services, finish_job
from web.recording import DatabaseRecorder, with_database_retries
from web.shipping import approver_of, job_shipper

log = logging.getLogger(__name__)

CANCEL_POLL = 0.2  # seconds between two looks at a running job's cancel_requested
# SIGTERM, then SIGKILL this many seconds later: with the poll above and the runtime's own
# work, a canceled job's container is gone within the 2 s the service promises
STOP_GRACE = 1.0
FINISH_ATTEMPTS = 10  # about 45 s of a database failing before a job's end is given up


@dataclass(frozen=True)
class JobContext:
    """Everything a claimed job runs under, read from the database in one transaction."""

    job_id: int
    name: str
    attempt: int
    pipeline_id: int
    plan: Plan
    sha: str
    fetch_ref: str
    repository_name: str
    clone_url: str
    owner: str
    protected: bool
    secrets: dict[str, str]
    allow_host_network: bool
    project_dir: str
    repository_id: int = 0
    user: str = ""  # who the pipeline is by (its commit's author)
    approved_by: str | None = None  # who played it, for a manual job (its approval gate)


class RunningJobs:
    """The job attempts a worker runs in this process, so that stopping it can cancel them.

    Lifecycle: one per worker; each attempt is added while it runs; `stop_all()` (the worker
    stops) cancels those running and every one added later, which then end `canceled` with
    `STOPPED_REASON`.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cancels: dict[int, Callable[[], object]] = {}
        self.stopping = threading.Event()

    def add(self, job_id: int, cancel: Callable[[], object]) -> None:
        """Note a running attempt and how to cancel it (at once if the worker stops)."""
        with self._lock:
            self._cancels[job_id] = cancel
        if self.stopping.is_set():
            cancel()

    def remove(self, job_id: int) -> None:
        """The attempt ended."""
        with self._lock:
            self._cancels.pop(job_id, None)

    def stop_all(self) -> list[int]:
        """Cancel every attempt running now or added later; returns the ids canceled now."""
        self.stopping.set()
        with self._lock:
            running = dict(self._cancels)
        for cancel in running.values():
            cancel()
        return sorted(running)


STOPPED_REASON = "canceled: the worker running it was stopped; retry the job"


def run_claimed_job(
    *,
    services: Services,
    job_id: int,
    worker: str,
    backend: Backend | None = None,
    running: RunningJobs | None = None,
) -> JobEnd | None:
    """Claim job `job_id` for `worker` and run it to its end; None when it was not pending
    (already claimed, canceled, unknown). `backend` replaces the embedded runtime (tests);
    `running` is the worker's register of its attempts (see `RunningJobs`)."""
    with services.database.transaction() as session:
        if not claim_job(session=session, job_id=job_id, worker=worker):
            job = get_job(session=session, job_id=job_id)
            log.info(
                "job %s not claimed by %s: it is %s",
                job_id,
                worker,
                "unknown" if job is None else job.status,
            )
            return None
    try:
        context = load_context(services=services, job_id=job_id)
    except Exception as exc:  # the job was claimed: it must end, not stay running
        log.exception("job %s: cannot prepare it", job_id)
        end = JobEnd(
            JobStatus.FAILED,
            reason=f"kapal could not prepare the job: {exc}",
            failure_kind="runner_system_failure",
        )
    else:
        end = run_job_context(services=services, context=context, backend=backend, running=running)
    # the job ran: its end must be recorded, or it stays `running` for good (a task retry
    # would find it claimed), so a database that fails now is waited for here
    recorded = with_database_retries(
        lambda: finish_job(services=services, job_id=job_id, end=end),
        f"job {job_id}: record its end",
        attempts=FINISH_ATTEMPTS,
    )
    if recorded is None:
        log.error("job %s ended %s but could not be recorded", job_id, end.status.value)
    return end


def load_context(*, services: Services, job_id: int) -> JobContext:
    """Read what job `job_id` runs under (plan, repository, secrets, owner, network rule)."""
    cipher = services.cipher()
    with services.database.transaction() as session:
        job = get_job(session=session, job_id=job_id)
        if job is None:
            raise LookupError(f"job {job_id} does not exist")
        pipeline = get_pipeline(session=session, pipeline_id=job.pipeline_id)
        data = get_pipeline_plan(session=session, pipeline_id=job.pipeline_id)
        if pipeline is None or data is None:
            raise LookupError(f"pipeline {job.pipeline_id} has no plan")
        repository = get_repository(session=session, repository_id=pipeline.repository_id)
        if repository is None:
            raise LookupError(f"repository {pipeline.repository_id} does not exist")
        facts: dict[str, Any] = pipeline.trigger
        access = pipeline_access(repository=repository, pipeline=pipeline)
        from_fork, protected = access.from_fork, access.protected
        secrets = secrets_for_pipeline(session=session, cipher=cipher, pipeline_id=pipeline.id)
    plan = Plan.from_dict(data)
    owner = f"repo:{repository.id}"
    if from_fork:  # a fork's code builds and caches apart from the repository's own
        request = facts.get("merge_request") or {}
        owner = f"{owner}:fork:{request.get('source_repository') or 'unknown'}"
    default_ref = f"refs/tags/{pipeline.ref}" if pipeline.tag else f"refs/heads/{pipeline.ref}"
    project_dir = next(
        (v.value for v in plan.variables if v.name == "CI_PROJECT_DIR"),
        f"/builds/{repository.name}",
    )
    return JobContext(
        job_id=job.id,
        name=job.name,
        attempt=job.attempt,
        pipeline_id=pipeline.id,
        plan=plan,
        sha=pipeline.sha,
        fetch_ref=str(facts.get("fetch_ref") or default_ref),
        repository_name=repository.name,
        clone_url=repository.clone_url,
        owner=owner,
        protected=protected,
        secrets=secrets,
        allow_host_network=repository.allow_host_network,
        project_dir=project_dir,
        repository_id=repository.id,
        user=pipeline.author_name or pipeline.source,
        approved_by=approver_of(job.when, job.reason),
    )


def run_job_context(
    *,
    services: Services,
    context: JobContext,
    backend: Backend | None = None,
    running: RunningJobs | None = None,
) -> JobEnd:
    """Run one claimed attempt (see the module docstring) and say how it ended; never raises
    for what the job does."""
    settings = services.settings
    policy = dataclasses.replace(
        settings.container_policy(),
        allow_host_network=settings.allow_host_network and context.allow_host_network,
    )
    backend = backend or EmbeddedBackend(settings, policy)
    store = ImageStore(settings.images_dir)
    images = _RecordingImages(
        StoreImageProvider(
            store,
            embedded_builder(backend, settings.build_cache_dir),
            ImageResolver(store, settings),
            owner=context.owner,
            secrets=context.secrets.values(),
        ),
        services.database,
        context.job_id,
    )
    artifacts = ArtifactStore(settings.artifacts_dir)
    recorder = DatabaseRecorder(
        services.database,
        job_id=context.job_id,
        pipeline_id=context.pipeline_id,
        artifacts_root=settings.artifacts_dir,
        artifact_dir=artifacts.job_dir,
        flush_interval=settings.log_flush_interval,
        flush_bytes=settings.log_flush_bytes,
    ).start()
    runner = JobRunner(
        context.plan.job(context.name),
        plan=context.plan,
        pipeline_id=context.pipeline_id,
        job_id=context.job_id,
        attempt=context.attempt,
        source=_MirrorSource(settings.data_dir, context),
        work_dir=settings.data_dir / "work" / f"job-{context.job_id}",
        backend=backend,
        images=images,
        artifacts=artifacts,
        caches=CacheStore(settings.data_dir / "cache", context.owner, protected=context.protected),
        recorder=recorder,
        options=JobOptions(
            project_dir=context.project_dir,
            secrets=context.secrets,
            limits=policy.limits_for(Limits()),
            workspace_disk_bytes=policy.disk_bytes,
            stop_grace=STOP_GRACE,
            ship=job_shipper(
                services=services,
                store=store,
                owner=context.owner,
                repository_id=context.repository_id,
                pipeline_id=context.pipeline_id,
                job_id=context.job_id,
                job_name=context.name,
                user=context.user,
                approved_by=context.approved_by,
                secrets=context.secrets,
            ),
        ),
    )
    watcher = CancelWatcher(services.database, context.job_id, runner.cancel)
    watcher.start()
    if running is not None:
        running.add(context.job_id, runner.cancel)
    try:
        outcome: JobOutcome = runner.run()
    finally:
        if running is not None:
            running.remove(context.job_id)
        watcher.stop()
        recorder.close()
    reason = outcome.reason
    if outcome.status == JobStatus.CANCELED and running is not None and running.stopping.is_set():
        reason = STOPPED_REASON
    return JobEnd(
        status=outcome.status,
        exit_code=outcome.exit_code,
        reason=reason,
        failure_kind=outcome.failure_kind,
    )


def fail_orphaned_jobs(*, services: Services, host: str | None = None) -> list[int]:
    """Fail the jobs left `running` by a worker of this host that no longer exists (killed,
    crashed, the machine restarted) and advance their pipelines; returns their ids.

    A worker's name ends with `@<host>.<pid>` (`web.tasks.worker_name`); a job whose worker is
    on `host` (this machine by default) and whose process is gone will never end otherwise:
    its message, taken by the dead worker, finds the job claimed when it comes back. Workers
    of other machines are left alone (nothing here can tell whether they still run).
    """
    host = host or socket.gethostname()
    with services.database.transaction() as session:
        running = list(
            session.execute(
                select(Job.id, Job.worker).where(Job.status == "running", Job.retried.is_(False))
            )
        )
    orphans = [
        (job_id, worker) for job_id, worker in running if _local_worker_gone(worker or "", host)
    ]
    for job_id, worker in orphans:
        log.warning("job %s: its worker %s is gone; failing it", job_id, worker)
        finish_job(
            services=services,
            job_id=job_id,
            end=JobEnd(
                JobStatus.FAILED,
                reason=f"the worker running it ({worker}) stopped before the job ended",
                failure_kind="runner_system_failure",
            ),
        )
    return [job_id for job_id, _ in orphans]


def _local_worker_gone(worker: str, host: str) -> bool:
    _, at, place = worker.rpartition("@")
    name, dot, pid = place.rpartition(".")
    if not at or not dot or name != host or not pid.isdigit():
        return False
    if int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


class CancelWatcher:
    """Polls a running job's `cancel_requested` and calls `cancel` once it is set.

    Lifecycle: `start()` before the job runs, `stop()` after (joins the thread).
    """

    def __init__(
        self, database: Database, job_id: int, cancel: Any, interval: float = CANCEL_POLL
    ) -> None:
        self.database = database
        self.job_id = job_id
        self.cancel = cancel
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._watch, name=f"kapal-cancel-{job_id}", daemon=True
        )
        self.canceled = False

    def start(self) -> None:
        """Start polling."""
        self._thread.start()

    def stop(self) -> None:
        """Stop polling and wait for the thread."""
        self._stop.set()
        self._thread.join()

    def _watch(self) -> None:
        query = select(Job.cancel_requested).where(Job.id == self.job_id)
        while not self._stop.wait(self.interval):
            try:
                with self.database.engine.connect() as connection:
                    requested = connection.execute(query).scalar()
            except Exception:
                log.warning("job %s: cannot read its cancel flag", self.job_id, exc_info=True)
                continue
            if requested:
                self.canceled = True
                self.cancel()
                return


@dataclass(frozen=True)
class _MirrorSource:
    """A `WorkspaceSource`: the pipeline's commit written out of the repository's mirror."""

    data_dir: Path
    context: JobContext

    def __call__(self, destination: Path) -> None:
        """Fetch the commit when this worker's mirror lacks it, then write its files out."""
        context = self.context
        with RepositoryMirror(
            self.data_dir, name=context.repository_name, clone_url=context.clone_url
        ) as mirror:
            if not mirror.has_commit(context.sha):
                mirror.fetch(context.sha, [context.fetch_ref])
            mirror.materialise(context.sha, destination)


class _RecordingImages:
    """An `ImageProvider` recording the job's image digest and the images it builds."""

    def __init__(self, provider: StoreImageProvider, database: Database, job_id: int) -> None:
        self._provider = provider
        self._database = database
        self._job_id = job_id
        self._first = True

    def available(self, name: str, pull_policy: Sequence[str] = ()) -> bool:
        """Whether the image is there (see `StoreImageProvider`)."""
        return self._provider.available(name, *([pull_policy] if pull_policy else []))

    def resolve(self, name: str, pull_policy: Sequence[str] = ()) -> RunnableImage:
        """Resolve the image; the first one resolved is the job's own: its digest is kept."""
        image = self._provider.resolve(name, *([pull_policy] if pull_policy else []))
        if self._first:
            self._first = False
            try:
                digest = self._provider.store.resolve(Reference.parse(name)).digest
                with self._database.transaction() as session:
                    set_job_image(session=session, job_id=self._job_id, image=name, digest=digest)
            except Exception:  # the job runs all the same; only its row lacks the digest
                log.warning("job %s: cannot record its image digest", self._job_id, exc_info=True)
        return image

    def build(self, request: BuildRequest, log_line: BuildLog) -> str:
        """Build, then record the image under each of its tags."""
        digest = self._provider.build(request, log_line)
        with self._database.transaction() as session:
            for tag in request.tags or ("",):
                add_built_image(session=session, job_id=self._job_id, tag=tag, digest=digest)
        return digest
