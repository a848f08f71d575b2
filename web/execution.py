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

A worker starting cleans what a dead one left on this machine (`clean_leftovers`: `kapal gc`,
work dirs and their workspace disks); the cancel watcher also stops an attempt the sweep of
lost workers failed meanwhile (`web.heartbeats`), so an attempt never runs on two workers.

A pipeline from a webhook runs code the operator did not write: everything here takes the
repository's side of every choice from the database (never from the pipeline), so the job gets
its repository's images, caches and secrets and no one else's.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import socket
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from pipeline.plan import Plan
from pipeline.trigger import SERVER_ONLY_TRIGGER
from runner.artifacts import ArtifactStore, SharedArtifactStore
from runner.cache import CacheStore, SharedCacheStore
from runner.engine.job_runner import JobOptions, JobOutcome, JobRunner
from runner.engine.recorder import JobStatus
from runner.errors import ObjectStoreError
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
from runner.runtime.disk import remove_disk
from runner.runtime.embedded import EmbeddedBackend
from runner.runtime.syscalls import mount_points
from web.db.jobs import claim_job, get_job, set_job_image
from web.db.models import BuiltImage, Job
from web.db.pipelines import get_pipeline, get_pipeline_plan
from web.db.repos import get_repository
from web.db.results import add_built_image
from web.db.secrets import pipeline_access, secrets_for_pipeline
from web.db.session import Database
from web.heartbeats import LOST_REASON, without_waiting_reason
from web.mirrors import RepositoryMirror
from web.orchestration import JobEnd, Services, finish_job
from web.recording import DatabaseRecorder, with_database_retries
from web.settings import Settings
from web.shared_images import RegistryShare
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

    def count(self) -> int:
        """How many attempts run now."""
        with self._lock:
            return len(self._cancels)

    def remove(self, job_id: int) -> None:
        """The attempt ended."""
        with self._lock:
            self._cancels.pop(job_id, None)

    def cancel_running(self) -> list[int]:
        """Cancel the attempts running now (the worker goes on taking jobs); their ids."""
        with self._lock:
            running = dict(self._cancels)
        for cancel in running.values():
            cancel()
        return sorted(running)

    def stop_all(self) -> list[int]:
        """Cancel every attempt running now or added later; returns the ids canceled now."""
        self.stopping.set()
        with self._lock:
            running = dict(self._cancels)
        for cancel in running.values():
            cancel()
        return sorted(running)


STOPPED_REASON = "canceled: the worker running it was stopped; retry the job"
SERVER_TRIGGER_REASON = (
    "a `trigger:` job's child pipeline is started by the service, never by a worker (this job "
    "was sent to one by mistake); retry the job"
)


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
        _forget_waiting_reason(session, job_id)
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


def _forget_waiting_reason(session: Session, job_id: int) -> None:
    """A claimed job no longer waits for a worker serving its tags: drop that from its reason."""
    reason = session.scalar(select(Job.reason).where(Job.id == job_id)) or ""
    kept = without_waiting_reason(reason)
    if kept != reason:
        session.execute(update(Job).where(Job.id == job_id).values(reason=kept))


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
        approved_by=approver_of(job.when, job.played_by),
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
    trigger = context.plan.job(context.name).trigger
    if trigger is not None:  # `trigger: project`: `web.orchestration` starts child pipelines
        return JobEnd(
            JobStatus.FAILED,
            reason=SERVER_TRIGGER_REASON if trigger.project is None else SERVER_ONLY_TRIGGER,
            failure_kind="runner_unsupported",
        )
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
        pipeline_id=context.pipeline_id,
        share=RegistryShare(settings, store, context.owner) if settings.share_registry else None,
    )
    work_dir = settings.data_dir / "work" / f"job-{context.job_id}"
    try:
        artifacts, caches = job_stores(settings, context, scratch=work_dir / "store")
    except ObjectStoreError as exc:  # a malformed KAPAL_OBJECT_STORE or KAPAL_S3_* setting
        return JobEnd(JobStatus.FAILED, reason=str(exc), failure_kind="runner_system_failure")
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
        work_dir=work_dir,
        backend=backend,
        images=images,
        artifacts=artifacts,
        caches=caches,
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
        artifacts.close()
    reason = outcome.reason
    if outcome.status == JobStatus.CANCELED and running is not None and running.stopping.is_set():
        reason = STOPPED_REASON
    return JobEnd(
        status=outcome.status,
        exit_code=outcome.exit_code,
        reason=reason,
        failure_kind=outcome.failure_kind,
    )


def job_stores(
    settings: Settings, context: JobContext, *, scratch: Path
) -> tuple[ArtifactStore, CacheStore]:
    """The artifact and cache stores of one attempt: through the object store when one is set
    (`KAPAL_OBJECT_STORE`, so workers with no disk in common pass them on; downloads land under
    `scratch`), else directories (the shared dir when set). `ObjectStoreError` if malformed."""
    objects = settings.open_object_store()
    if objects is None:
        caches = CacheStore(settings.job_caches_dir, context.owner, protected=context.protected)
        return ArtifactStore(settings.artifacts_dir), caches
    shared = SharedCacheStore(objects, context.owner, scratch=scratch, protected=context.protected)
    return SharedArtifactStore(settings.artifacts_dir, objects, scratch=scratch), shared


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
                reason=f"{LOST_REASON}: the worker running it ({worker}) stopped before the job "
                "ended",
                failure_kind="runner_system_failure",
            ),
        )
    return [job_id for job_id, _ in orphans]


def clean_leftovers(*, services: Services) -> list[str]:
    """Remove what dead workers left on this machine: `kapal gc`'s containers, sandboxes and
    runc states of processes that are gone, then the work dirs of jobs that are not running
    (a work dir is made after its job's claim, so a job not running now has finished: no live
    worker uses it). Returns what was removed, for the log."""
    from runner.runtime.gc import collect

    settings = services.settings
    report = collect(settings)
    for warning in report.warnings:
        log.warning("cleaning up: %s", warning)
    removed = [f"container {c}" for c in report.containers]
    removed += [f"sandbox {s}" for s in report.sandboxes]
    work = settings.data_dir / "work"
    found: dict[int, Path] = {}
    if work.is_dir():
        for entry in work.iterdir():
            number = entry.name.removeprefix("job-")
            if entry.name.startswith("job-") and number.isdigit() and not entry.is_symlink():
                found[int(number)] = entry
    if found:
        with services.database.transaction() as session:
            running = set(
                session.scalars(
                    select(Job.id).where(Job.id.in_(list(found)), Job.status == "running")
                )
            )
        mounted = mount_points()
        for job_id, entry in sorted(found.items()):
            if job_id not in running:
                _remove_work_dir(entry, mounted)
                removed.append(f"work dir {entry.name}")
    if removed:
        log.warning("cleaned up what stopped workers left: %s", ", ".join(removed))
    return removed


def _remove_work_dir(entry: Path, mounted: set[str]) -> None:
    """Remove a dead job's work dir: its workspace disk (a loop mount) unmounted and deleted
    first, deepest mount first, so nothing is deleted through a mount."""
    inside = sorted(
        (Path(p) for p in mounted if Path(p).is_relative_to(entry)),
        key=lambda p: len(p.parts),
        reverse=True,
    )
    for point in inside:
        remove_disk(point)
    shutil.rmtree(entry, ignore_errors=True)


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
    """Polls a running job's `cancel_requested` and calls `cancel` once it is set, or once the
    job is no longer running (the sweep of lost workers failed it: never run it twice).

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
        query = select(Job.cancel_requested, Job.status).where(Job.id == self.job_id)
        while not self._stop.wait(self.interval):
            try:
                with self.database.engine.connect() as connection:
                    row = connection.execute(query).first()
            except Exception:
                log.warning("job %s: cannot read its cancel flag", self.job_id, exc_info=True)
                continue
            if row is None or row.cancel_requested or row.status != "running":
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
    """An `ImageProvider` recording the job's image digest and the images it builds; with a
    share registry, pushing what it builds and pulling what an earlier job of the pipeline
    built on another worker (`web.shared_images`)."""

    def __init__(
        self,
        provider: StoreImageProvider,
        database: Database,
        job_id: int,
        *,
        pipeline_id: int = 0,
        share: RegistryShare | None = None,
    ) -> None:
        self._provider = provider
        self._database = database
        self._job_id = job_id
        self._pipeline_id = pipeline_id
        self._share = share
        self._first = True

    def _fetch_shared(self, name: str) -> None:
        """Pull `name` from the share registry when an earlier job of the pipeline built it
        and this worker's store lacks it (a failure is logged: resolving then says not found)."""
        if self._share is None:
            return
        try:
            wanted = str(Reference.parse(name))
            if self._provider.store.exists(Reference.parse(name)):
                return
        except Exception:  # not an image name: the provider says so
            return
        with self._database.transaction() as session:
            built = session.execute(
                select(BuiltImage.tag, BuiltImage.digest)
                .join(Job, Job.id == BuiltImage.job_id)
                .where(Job.pipeline_id == self._pipeline_id, BuiltImage.pushed.is_(True))
                .order_by(BuiltImage.id.desc())
            ).all()
        digest = next((d for tag, d in built if _same_image(tag, wanted)), None)
        if digest is None:
            return
        try:
            self._share.fetch(name, digest)
        except Exception:
            log.warning("job %s: cannot pull %s@%s", self._job_id, name, digest, exc_info=True)

    def available(self, name: str, pull_policy: Sequence[str] = ()) -> bool:
        """Whether the image is there (see `StoreImageProvider`)."""
        self._fetch_shared(name)
        return self._provider.available(name, *([pull_policy] if pull_policy else []))

    def resolve(self, name: str, pull_policy: Sequence[str] = ()) -> RunnableImage:
        """Resolve the image; the first one resolved is the job's own: its digest is kept."""
        self._fetch_shared(name)
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
        """Build, push it by digest to the share registry (when set), then record the image
        under each of its tags."""
        digest = self._provider.build(request, log_line)
        pushed = False
        if self._share is not None and request.tags:
            for tag in request.tags:
                where = self._share.push(tag, digest)
                log_line(f"shared {tag} with the other workers as {where}")
            pushed = True
        with self._database.transaction() as session:
            for tag in request.tags or ("",):
                add_built_image(
                    session=session, job_id=self._job_id, tag=tag, digest=digest, pushed=pushed
                )
        return digest


def _same_image(tag: str, wanted: str) -> bool:
    try:
        return str(Reference.parse(tag)) == wanted
    except Exception:
        return False
