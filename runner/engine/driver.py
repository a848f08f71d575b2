"""The engine: runs a `Plan` against a `Backend`, reporting to a `Recorder`.

One code path for `kapal run` on a laptop and for the server's workers. The engine owns the
order of jobs (DAG of `waits_for`, at most `concurrency` at a time), each job's workspace,
services, scripts, retries, timeouts, artifacts and caches; the backend owns containers.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import hashlib
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from pipeline.plan import Job, Plan, ServiceSpec, Variable
from runner.artifacts import ArtifactStore, collect_paths, parse_junit
from runner.cache import CachePolicy, CacheStore
from runner.engine.recorder import (
    ArtifactStored,
    Event,
    JobStatus,
    JobStatusChanged,
    LogLine,
    PipelineFinished,
    PipelineStarted,
    PipelineStatus,
    Recorder,
    TestReport,
)
from runner.engine.script import after_script, job_script
from runner.engine.services import PROBE_COMMAND, service_hostnames, wait_for_ports
from runner.engine.variables import expand, resolve_variables
from runner.engine.workspace import InPlaceTree
from runner.errors import (
    BuildError,
    ContainerStartError,
    EngineError,
    ImageError,
    ImageNotFoundError,
    ImageReferenceError,
    RunnerError,
    ServiceError,
    UnknownJobError,
)
from runner.images.reference import Reference
from runner.job_images import BuildRequest, ImageProvider, RunnableImage
from runner.masking import LineMasker, SecretMasker
from runner.runtime.backend import (
    Backend,
    Container,
    ContainerSpec,
    ExitStatus,
    Limits,
    Mount,
    Sandbox,
    SandboxSpec,
)
from runner.runtime.durations import format_duration

DEPLOY_NOT_RUNNABLE = "not runnable yet (ship is not implemented)"
SCRIPT_DIR = "/kapal"

WorkspaceSource = Callable[[Path], object] | InPlaceTree
"""Fills an empty directory with the project's files, or names a tree jobs use in place (see
`runner.engine.workspace`)."""


@dataclass(frozen=True)
class EngineOptions:
    """How the engine runs a pipeline; the defaults suit `kapal run`."""

    concurrency: int = 4
    manual: bool = False  # run every manual job
    only: frozenset[str] = frozenset()  # run these jobs (manual ones too) and what they wait for
    stage: str | None = None  # run this stage's jobs and what they wait for
    use_cache: bool = True  # False: no job cache restored or saved, no build layer cache used
    project_dir: str = "/builds/project"
    default_timeout: float = 3600.0
    after_script_timeout: float = 300.0
    service_timeout: float = 30.0
    stop_grace: float = 2.0
    secrets: Mapping[str, str] = field(default_factory=dict)
    limits: Limits = field(default_factory=Limits)
    keep_work_dir: bool = False


@dataclass
class JobResult:
    """How one job ended."""

    name: str
    stage: str
    status: JobStatus = JobStatus.CREATED
    attempts: int = 0
    exit_code: int | None = None
    duration: float | None = None
    allowed_failure: bool = False
    reason: str = ""


@dataclass
class PipelineResult:
    """How a pipeline ended, with every job's result in plan order."""

    status: PipelineStatus
    jobs: dict[str, JobResult]
    duration: float

    @property
    def passed(self) -> bool:
        """True when the pipeline succeeded (failures allowed to fail do not count)."""
        return self.status == PipelineStatus.SUCCESS


@dataclass
class _Outcome:
    status: JobStatus
    exit_code: int | None = None
    reason: str = ""
    failure_kind: str = "script_failure"


class _LockedRecorder:
    """Serialises calls to a recorder, as the `Recorder` protocol promises its implementations."""

    def __init__(self, recorder: Recorder) -> None:
        self._recorder = recorder
        self._lock = threading.Lock()

    def record(self, event: Event) -> None:
        """Pass the event on, one at a time; a recorder that fails drops it, the run goes on."""
        with self._lock, contextlib.suppress(Exception):
            self._recorder.record(event)


class Engine:
    """Runs pipelines.

    Lifecycle: construct once with a backend, images, a recorder and the stores; call `run` for
    a pipeline (one run at a time per engine); `cancel` may be called from any thread (a signal
    handler, a web request) while `run` is in progress: running jobs are stopped, jobs not yet
    started are marked canceled, and `run` returns once every container is gone. As in GitLab
    17.0 and later, a canceled job that was running still runs its `after_script` (with
    `CI_JOB_STATUS=canceled` and its own timeout) and keeps its artifacts as a failed job would
    (`when: always` or `on_failure`); a second `cancel` stops the after_scripts too.
    """

    def __init__(
        self,
        *,
        backend: Backend,
        images: ImageProvider,
        recorder: Recorder,
        work_dir: Path,
        artifacts: ArtifactStore,
        caches: CacheStore,
        options: EngineOptions | None = None,
    ) -> None:
        self.backend = backend
        self.images = images
        self.recorder = _LockedRecorder(recorder)
        self.work_dir = work_dir
        self.artifacts = artifacts
        self.caches = caches
        self.options = options or EngineOptions()
        self._masker = SecretMasker(self.options.secrets.values())
        self._lock = threading.Condition()
        self._canceled = threading.Event()
        self._forced = threading.Event()  # a second cancel: stop after_script containers too
        self._containers: dict[str, list[Container]] = {}
        self._after_containers: dict[str, list[Container]] = {}
        self._results: dict[str, JobResult] = {}
        self._busy_groups: set[str] = set()
        self._plan: Plan | None = None
        # per run, set by `run`
        self._pipeline_id = 0
        self._job_ids: dict[str, int] = {}
        self._run_dir = work_dir
        self._source_dir = work_dir
        self._in_place = False
        self._cleanup = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kapal-cleanup")

    # -- public ----------------------------------------------------------------------------

    def selected_jobs(self, plan: Plan) -> list[Job]:
        """The jobs this run would start (after `only`/`stage`), in plan order.

        Raises `UnknownJobError` when `only` or `stage` name something the plan lacks.
        """
        runnable = {job.name: job for job in plan.runnable_jobs()}
        wanted: set[str] = set()
        if self.options.only:
            names = {job.name for job in plan.jobs}
            for name in sorted(self.options.only):
                if name not in names:
                    raise UnknownJobError(
                        f"no job named {name!r} in the pipeline; jobs: {', '.join(sorted(names))}"
                    )
                if name not in runnable:
                    reason = plan.job(name).skip_reason
                    raise UnknownJobError(f"job {name!r} does not run in this pipeline: {reason}")
                wanted.add(name)
        if self.options.stage is not None:
            if self.options.stage not in plan.stages:
                raise UnknownJobError(
                    f"no stage named {self.options.stage!r}; stages: {', '.join(plan.stages)}"
                )
            wanted |= {j.name for j in runnable.values() if j.stage == self.options.stage}
        if not self.options.only and self.options.stage is None:
            return list(runnable.values())
        closure = set(wanted)
        todo = list(wanted)
        while todo:
            for upstream in runnable[todo.pop()].waits_for:
                if upstream in runnable and upstream not in closure:
                    closure.add(upstream)
                    todo.append(upstream)
        return [job for job in runnable.values() if job.name in closure]

    def check_images(self, plan: Plan, jobs: list[Job]) -> None:
        """Fail before anything runs when a job's image is missing, naming the jobs and the fix."""
        built: set[str] = set()
        for job in jobs:
            if job.build is not None:
                values = self._job_variables(job, 0)
                built |= {_normalise(expand(tag, values)) for tag in job.build.tags}
        missing: dict[str, list[str]] = {}
        for job in jobs:
            if job.build is not None or job.deploy is not None:
                continue
            if job.manual and not (self.options.manual or job.name in self.options.only):
                continue  # it will wait for a person; its image is checked when it runs
            values = self._job_variables(job, 0)
            if job.image is None:
                raise EngineError(
                    f"job {job.name!r} has no image: add `image:` to the job or to `default:`"
                )
            names = [expand(job.image.name, values)]
            names += [expand(s.name, values) for s in job.services]
            for name in names:
                if not name.strip():
                    raise EngineError(
                        f"job {job.name!r}: an image name is empty after expanding variables"
                    )
                if _normalise(name) in built:
                    continue
                try:
                    found = self.images.available(name)
                except ImageReferenceError as exc:
                    raise ImageReferenceError(f"job {job.name!r}: {exc}") from None
                if not found:
                    missing.setdefault(name, []).append(job.name)
        if missing:
            lines = [
                f"  {name} (used by {', '.join(sorted(set(u)))})" for name, u in missing.items()
            ]
            raise ImageNotFoundError(
                "images not in the local store:\n"
                + "\n".join(lines)
                + "\nget them with `kapal image bootstrap NAME [--include PKGS]` or "
                "`kapal image pull NAME`"
            )

    def cancel(self, *, redundant: bool = False) -> bool:
        """Cancel the running pipeline; return False when nothing was canceled.

        With `redundant=True` (a newer pipeline for the same ref), cancel only if every job
        running now is `interruptible`, as GitLab's auto-cancel does.
        """
        with self._lock:
            if redundant and self._plan is not None:
                running = [
                    name
                    for name, result in self._results.items()
                    if result.status == JobStatus.RUNNING
                ]
                if any(not self._plan.job(name).interruptible for name in running):
                    return False
            if self._canceled.is_set():
                self._forced.set()
            self._canceled.set()
            containers = [c for cs in self._containers.values() for c in cs]
            if self._forced.is_set():
                containers += [c for cs in self._after_containers.values() for c in cs]
            self._lock.notify_all()
        for container in containers:
            with contextlib.suppress(RunnerError):
                self.backend.stop(container, grace=self.options.stop_grace)
        return True

    def run(self, plan: Plan, source: WorkspaceSource, *, pipeline_id: int = 1) -> PipelineResult:
        """Run `plan` on a copy of `source` (or in it, for an `InPlaceTree`); return how it
        ended (after all cleanup)."""
        started = time.monotonic()
        jobs = self.selected_jobs(plan)
        self.check_images(plan, jobs)
        selected = {job.name for job in jobs}
        self._containers = {}
        self._after_containers = {}
        self._busy_groups = set()
        self._plan = plan
        self._pipeline_id = pipeline_id
        self._job_ids = {job.name: pipeline_id * 1000 + i for i, job in enumerate(plan.jobs, 1)}
        self._results = {
            job.name: JobResult(name=job.name, stage=job.stage) for job in plan.runnable_jobs()
        }
        self.recorder.record(
            PipelineStarted(
                pipeline_id=pipeline_id,
                jobs=tuple((job.name, job.stage) for job in plan.runnable_jobs()),
            )
        )
        self.work_dir.mkdir(parents=True, exist_ok=True)
        run_dir = Path(tempfile.mkdtemp(prefix=f"pipeline-{pipeline_id}-", dir=self.work_dir))
        self._cleanup = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kapal-cleanup")
        try:
            self._in_place = isinstance(source, InPlaceTree)
            try:
                if isinstance(source, InPlaceTree):
                    self._source_dir = source.checked()
                else:
                    self._source_dir = run_dir / "source"
                    self._source_dir.mkdir()
                    source(self._source_dir)
            except RunnerError:
                duration = time.monotonic() - started
                self.recorder.record(PipelineFinished(PipelineStatus.FAILED, duration))
                raise
            self._run_dir = run_dir
            for job in plan.runnable_jobs():
                if job.name not in selected:
                    self._set_status(job, JobStatus.SKIPPED, reason="not selected for this run")
                else:
                    self._set_status(job, JobStatus.CREATED)
            self._schedule([job for job in plan.runnable_jobs() if job.name in selected])
        finally:
            self._cleanup.shutdown(wait=True)
            if not self.options.keep_work_dir:
                shutil.rmtree(run_dir, ignore_errors=True)
        status = self._pipeline_status()
        self._canceled.clear()  # the next run starts afresh
        self._forced.clear()
        duration = time.monotonic() - started
        self.recorder.record(PipelineFinished(status=status, duration=duration))
        return PipelineResult(status=status, jobs=dict(self._results), duration=duration)

    # -- scheduling ------------------------------------------------------------------------

    def _schedule(self, jobs: list[Job]) -> None:
        waiting = {job.name: job for job in jobs}
        futures: list[Future[None]] = []
        with (
            ThreadPoolExecutor(
                max_workers=max(1, self.options.concurrency), thread_name_prefix="kapal-job"
            ) as pool,
            self._lock,
        ):
            while True:
                if self._canceled.is_set():
                    for job in waiting.values():
                        self._set_status(job, JobStatus.CANCELED, reason="pipeline canceled")
                    waiting.clear()
                for name, job in list(waiting.items()):
                    decision = self._decide(job)
                    if decision is None:
                        continue
                    status, reason = decision
                    if status is JobStatus.PENDING and job.resource_group:
                        if job.resource_group in self._busy_groups:
                            continue  # one job of a resource group at a time
                        self._busy_groups.add(job.resource_group)
                    del waiting[name]
                    self._set_status(job, status, reason=reason)
                    if status is JobStatus.PENDING:
                        future = pool.submit(self._run_job, job)
                        future.add_done_callback(self._wake)
                        futures.append(future)
                if not waiting and all(f.done() for f in futures):
                    break
                self._lock.wait(timeout=1.0)
        for future in futures:
            future.result()

    def _wake(self, _: Future[None]) -> None:
        with self._lock:
            self._lock.notify_all()

    def _decide(self, job: Job) -> tuple[JobStatus, str] | None:
        """A waiting job's next status and why; None while its upstream jobs still run."""
        upstream = [self._results[name] for name in job.waits_for if name in self._results]
        if any(not result.status.finished for result in upstream):
            return None
        failed = self._failed_ancestor(job)
        canceled = any(r.status == JobStatus.CANCELED for r in upstream)
        if canceled:
            return JobStatus.CANCELED, "an earlier job was canceled"
        when = job.when
        if when == "manual":
            if failed:
                return JobStatus.SKIPPED, f"{failed} failed"
            if not (self.options.manual or job.name in self.options.only):
                return JobStatus.MANUAL, "manual job: run it with --manual or --job NAME"
            when = "on_success"
        if when == "on_success":
            if failed:
                return JobStatus.SKIPPED, f"{failed} failed"
            assert self._plan is not None
            for name in job.waits_for:
                result = self._results.get(name)
                blocking = result is not None and result.status == JobStatus.MANUAL
                if blocking and not self._plan.job(name).allow_failure:
                    return JobStatus.SKIPPED, (
                        f"blocked by the manual job {name} (run it with --job {name!r} or --manual)"
                    )
            if job.needs is not None:
                for need in job.needs:
                    result = self._results.get(need.job)
                    if result is None or need.optional:
                        continue
                    if result.status in (JobStatus.SKIPPED, JobStatus.MANUAL):
                        return JobStatus.SKIPPED, f"needs {need.job}, which did not run"
        elif when == "on_failure" and not failed:
            return JobStatus.SKIPPED, "when: on_failure, and nothing failed"
        if job.deploy is not None:
            return JobStatus.SKIPPED, DEPLOY_NOT_RUNNABLE
        return JobStatus.PENDING, ""

    def _failed_ancestor(self, job: Job) -> str | None:
        assert self._plan is not None
        seen: set[str] = set()
        todo = list(job.waits_for)
        while todo:
            name = todo.pop()
            if name in seen:
                continue
            seen.add(name)
            result = self._results.get(name)
            if result is None:
                continue
            if result.status == JobStatus.FAILED and not result.allowed_failure:
                return name
            todo.extend(self._plan.job(name).waits_for)
        return None

    def _pipeline_status(self) -> PipelineStatus:
        results = self._results.values()
        if any(r.status == JobStatus.FAILED and not r.allowed_failure for r in results):
            return PipelineStatus.FAILED
        if self._canceled.is_set() or any(r.status == JobStatus.CANCELED for r in results):
            return PipelineStatus.CANCELED
        return PipelineStatus.SUCCESS

    def _set_status(
        self,
        job: Job,
        status: JobStatus,
        *,
        reason: str = "",
        exit_code: int | None = None,
        duration: float | None = None,
        attempt: int | None = None,
        allowed_failure: bool = False,
    ) -> None:
        with self._lock:
            result = self._results[job.name]
            result.status = status
            result.reason = self._masker.mask(reason)
            result.exit_code = exit_code
            result.allowed_failure = allowed_failure
            if duration is not None:
                result.duration = duration
            if attempt is not None:
                result.attempts = attempt
            self._lock.notify_all()
        self.recorder.record(
            JobStatusChanged(
                job=job.name,
                status=status,
                attempt=attempt or max(result.attempts, 1),
                exit_code=exit_code,
                duration=duration,
                allowed_failure=allowed_failure,
                reason=result.reason,
            )
        )

    # -- one job ---------------------------------------------------------------------------

    def _run_job(self, job: Job) -> None:
        attempts = 1 + max(0, job.retry.max)
        started = time.monotonic()
        outcome = _Outcome(JobStatus.CANCELED, reason="pipeline canceled")
        for attempt in range(1, attempts + 1):
            if self._canceled.is_set():
                outcome = _Outcome(JobStatus.CANCELED, reason="pipeline canceled")
                break
            self._set_status(job, JobStatus.RUNNING, attempt=attempt)
            try:
                outcome = self._attempt(job, attempt)
            except RunnerError as exc:
                outcome = _Outcome(
                    JobStatus.FAILED, reason=str(exc), failure_kind="runner_system_failure"
                )
            except Exception as exc:
                outcome = _Outcome(
                    JobStatus.FAILED,
                    reason=f"internal error in kapal: {type(exc).__name__}: {exc}",
                    failure_kind="unknown_failure",
                )
            if self._canceled.is_set() and outcome.status != JobStatus.SUCCESS:
                outcome = _Outcome(JobStatus.CANCELED, outcome.exit_code, "pipeline canceled")
            if (
                outcome.status == JobStatus.FAILED
                and attempt < attempts
                and _retryable(job, outcome)
            ):
                self._log(job, f"kapal: attempt {attempt} failed ({outcome.reason}); retrying")
                self._set_status(
                    job,
                    JobStatus.FAILED,
                    reason=f"{outcome.reason}; retrying",
                    exit_code=outcome.exit_code,
                    attempt=attempt,
                    duration=time.monotonic() - started,
                )
                continue
            break
        allowed = False
        if outcome.status == JobStatus.FAILED:
            if job.allow_failure_exit_codes:
                allowed = outcome.exit_code in job.allow_failure_exit_codes
            else:
                allowed = job.allow_failure
        with self._lock:
            if job.resource_group:
                self._busy_groups.discard(job.resource_group)
            self._set_status(
                job,
                outcome.status,
                reason=outcome.reason,
                exit_code=outcome.exit_code,
                duration=time.monotonic() - started,
                allowed_failure=allowed,
            )

    def _job_variables(self, job: Job, attempt: int) -> dict[str, str]:
        project_dir = self.options.project_dir
        defaults = {
            "CI_JOB_NAME": job.name,
            "CI_JOB_STAGE": job.stage,
            "CI_JOB_NAME_SLUG": _slug(job.name),
            "CI_SERVER": "yes",
        }
        if job.parallel_index is not None and job.parallel_total is not None:
            defaults["CI_NODE_INDEX"] = str(job.parallel_index)
            defaults["CI_NODE_TOTAL"] = str(job.parallel_total)
        # what only the engine knows wins over the plan's placeholders
        forced = {
            "CI_JOB_ID": str(self._job_ids.get(job.name, 0)),
            "CI_JOB_ATTEMPT": str(attempt),
            "CI_PROJECT_DIR": project_dir,
            "CI_BUILDS_DIR": str(Path(project_dir).parent),
        }
        values = resolve_variables(
            (
                *(Variable(name=k, value=v, source="predefined") for k, v in defaults.items()),
                *job.variables,
                *(Variable(name=k, value=v, source="predefined") for k, v in forced.items()),
                *(
                    Variable(name=k, value=v, source="pipeline", expand=False)
                    for k, v in self.options.secrets.items()
                ),
            )
        )
        return values

    def _log(self, job: Job, text: str) -> None:
        self.recorder.record(LogLine(job=job.name, text=self._masker.mask(text)))

    def _attempt(self, job: Job, attempt: int) -> _Outcome:
        job_dir = self._run_dir / "jobs" / f"{_slug(job.name)}-{attempt}"
        if self._in_place:
            workspace = self._source_dir
            job_dir.mkdir(parents=True)
        else:
            workspace = job_dir / "workspace"
        try:
            if not self._in_place:
                shutil.copytree(self._source_dir, workspace, symlinks=True)
            values = self._job_variables(job, attempt)
            self._restore_artifacts(job, workspace)
            self._restore_caches(job, workspace, values)
            if job.build is not None:
                outcome = self._build(job, workspace, values)
            else:
                outcome = self._script_job(job, job_dir, workspace, values)
            # as GitLab's runner does for a job canceled while running: artifacts are uploaded
            # as for a failed job (`when: always|on_failure`); caches are not saved
            self._save_artifacts(job, workspace, outcome)
            if outcome.status != JobStatus.CANCELED:
                self._save_caches(job, workspace, values, outcome)
            return outcome
        finally:
            if not self.options.keep_work_dir:
                # removing a workspace is slow on some file systems: off the critical path
                self._cleanup.submit(shutil.rmtree, job_dir, ignore_errors=True)

    # -- artifacts and caches --------------------------------------------------------------

    def _artifact_sources(self, job: Job) -> list[str]:
        assert self._plan is not None
        if job.dependencies is not None:
            return list(job.dependencies)
        if job.needs is not None:
            return [need.job for need in job.needs if need.artifacts]
        stage_index = {stage: i for i, stage in enumerate(self._plan.stages)}
        mine = stage_index.get(job.stage, 0)
        return [
            other.name
            for other in self._plan.runnable_jobs()
            if stage_index.get(other.stage, 0) < mine
        ]

    def _restore_artifacts(self, job: Job, workspace: Path) -> None:
        for source in self._artifact_sources(job):
            files = self.artifacts.restore(self._pipeline_id, source, workspace)
            if files:
                self._log(job, f"kapal: restored {len(files)} artifact file(s) of {source}")

    def _save_artifacts(self, job: Job, workspace: Path, outcome: _Outcome) -> None:
        spec = job.artifacts
        if spec is None:
            return
        succeeded = outcome.status == JobStatus.SUCCESS
        if spec.junit:
            reports = collect_paths(workspace, spec.junit)
            cases = []
            for rel in reports:
                try:
                    cases.extend(parse_junit((workspace / rel).read_bytes()))
                except (ValueError, OSError) as exc:
                    self._log(job, f"kapal: cannot read the JUnit report {rel}: {exc}")
            if reports:
                mask = self._masker.mask
                masked = tuple(
                    dataclasses.replace(
                        case,
                        name=mask(case.name),
                        classname=mask(case.classname),
                        message=mask(case.message),
                    )
                    for case in cases
                )
                self.recorder.record(TestReport(job=job.name, cases=masked))
        # reports are kept whatever the result, as GitLab does; paths follow `when`
        wanted = {"always": True, "on_success": succeeded, "on_failure": not succeeded}[spec.when]
        paths = (*spec.paths, *spec.junit) if wanted else spec.junit
        files = collect_paths(workspace, paths, spec.exclude)
        if not files:
            if wanted and spec.paths:
                self._log(job, "kapal: no files matched the artifacts paths")
            return
        stored = self.artifacts.save(self._pipeline_id, job.name, workspace, files)
        self._log(job, f"kapal: stored {len(files)} artifact file(s) ({stored.size} bytes)")
        shown = tuple(self._masker.mask(name) for name in stored.files)
        self.recorder.record(ArtifactStored(job=job.name, files=shown, size=stored.size))

    def _cache_key(self, job: Job, spec_index: int, values: Mapping[str, str]) -> str:
        spec = job.caches[spec_index]
        if spec.key_files:
            digest = hashlib.sha256()
            for rel in sorted(spec.key_files):
                path = self._source_dir / expand(rel, values)
                digest.update(rel.encode() + b"\0")
                if path.is_file():
                    digest.update(path.read_bytes())
            key = digest.hexdigest()[:16]
            prefix = expand(spec.key_prefix, values) if spec.key_prefix else ""
            return f"{prefix}-{key}" if prefix else key
        return expand(spec.key, values)

    def _restore_caches(self, job: Job, workspace: Path, values: Mapping[str, str]) -> None:
        if not self.options.use_cache:
            return
        for index, spec in enumerate(job.caches):
            if not CachePolicy(spec.policy).pulls:
                continue
            key = self._cache_key(job, index, values)
            files = self.caches.restore(key, workspace)
            if files:
                self._log(job, f"kapal: restored cache {key!r} ({len(files)} file(s))")
            else:
                self._log(job, f"kapal: no cache {key!r} yet")

    def _save_caches(
        self, job: Job, workspace: Path, values: Mapping[str, str], outcome: _Outcome
    ) -> None:
        if not self.options.use_cache:
            return
        succeeded = outcome.status == JobStatus.SUCCESS
        for index, spec in enumerate(job.caches):
            if not CachePolicy(spec.policy).pushes:
                continue
            if not {"always": True, "on_success": succeeded, "on_failure": not succeeded}[
                spec.when
            ]:
                continue
            key = self._cache_key(job, index, values)
            files = self.caches.save(key, workspace, [expand(p, values) for p in spec.paths])
            self._log(job, f"kapal: saved cache {key!r} ({len(files)} file(s))")

    # -- build jobs ------------------------------------------------------------------------

    def _build(self, job: Job, workspace: Path, values: Mapping[str, str]) -> _Outcome:
        """Run a `build:` job with the builder.

        RUN steps get the host network, as in `docker build`, unless the job says `network: none`.
        """
        spec = job.build
        assert spec is not None
        context = (workspace / expand(spec.context, values)).resolve()
        dockerfile = (context / expand(spec.dockerfile, values)).resolve()
        if not context.is_relative_to(workspace.resolve()):
            return _Outcome(
                JobStatus.FAILED, reason=f"build context {spec.context} leaves the project"
            )
        request = BuildRequest(
            context=context,
            dockerfile=dockerfile,
            tags=tuple(expand(tag, values) for tag in spec.tags),
            build_args={k: expand(v, values) for k, v in spec.build_args},
            target=spec.target,
            epoch=_source_date_epoch(values),
            network=job.network or "host",
            cancel=self._canceled,
            # `kapal run --no-cache` uses no cache at all, the builder's layer cache included
            no_cache=not self.options.use_cache,
        )
        masker = LineMasker(self._masker)

        def log(line: str) -> None:
            if self._canceled.is_set():
                raise BuildError("canceled")
            for shown in masker.push(line):
                self.recorder.record(LogLine(job=job.name, text=shown))

        self._log(job, f"kapal: building {', '.join(request.tags) or 'an untagged image'}")
        try:
            digest = self.images.build(request, log)
        except BuildError as exc:
            for shown in masker.flush():
                self.recorder.record(LogLine(job=job.name, text=shown))
            if self._canceled.is_set():
                return _Outcome(JobStatus.CANCELED, reason="pipeline canceled")
            return _Outcome(JobStatus.FAILED, exit_code=1, reason=str(exc))
        for shown in masker.flush():
            self.recorder.record(LogLine(job=job.name, text=shown))
        if spec.push:
            self._log(job, "kapal: push: is not implemented yet; the image stays local")
        self._log(job, f"kapal: built {digest}")
        return _Outcome(JobStatus.SUCCESS, exit_code=0)

    # -- script jobs -----------------------------------------------------------------------

    def _script_job(
        self, job: Job, job_dir: Path, workspace: Path, values: dict[str, str]
    ) -> _Outcome:
        assert job.image is not None
        image = self.images.resolve(expand(job.image.name, values))
        services = [
            (svc, self.images.resolve(expand(svc.name, values)), expand(svc.name, values))
            for svc in job.services
        ]
        aliases: list[str] = []
        for svc, _, name in services:
            for host in service_hostnames(name, tuple(expand(a, values) for a in svc.aliases)):
                if host not in aliases:
                    aliases.append(host)
        scripts = job_dir / "scripts"
        scripts.mkdir(parents=True)
        project_dir = self.options.project_dir
        (scripts / "step_script").write_text(
            job_script((*job.before_script, *job.script), project_dir=project_dir)
        )
        (scripts / "after_script").write_text(
            after_script(job.after_script, project_dir=project_dir)
        )
        mounts = (
            Mount(source=workspace, target=project_dir),
            Mount(source=scripts, target=SCRIPT_DIR, read_only=True),
        )
        sandbox = self.backend.setup(
            SandboxSpec(
                name=f"p{self._pipeline_id}-{_slug(job.name)}",
                network=job.network or "none",
                aliases=tuple(aliases),
            )
        )
        service_logs: list[_ServiceLog] = []
        try:
            for svc, svc_image, name in services:
                self._start_service(
                    job, sandbox, (svc_image, image), name, svc, values, service_logs
                )
            outcome = self._run_step(job, sandbox, image, mounts, values)
            if job.after_script and not self._forced.is_set():
                self._run_after_script(job, sandbox, image, mounts, values, outcome)
            return outcome
        finally:
            with self._lock:
                running = self._containers.pop(job.name, [])
                running += self._after_containers.pop(job.name, [])
            for container in running:
                with contextlib.suppress(RunnerError):
                    self.backend.stop(container, grace=self.options.stop_grace)
            self.backend.teardown(sandbox)
            for service_log in service_logs:
                service_log.thread.join()

    def _track(self, job: Job, container: Container, *, after: bool = False) -> None:
        """Remember a running container so `cancel` can stop it (after_script: only if forced)."""
        with self._lock:
            tracked = self._after_containers if after else self._containers
            tracked.setdefault(job.name, []).append(container)
            stop = self._forced.is_set() if after else self._canceled.is_set()
        if stop:
            self.backend.stop(container, grace=self.options.stop_grace)

    def _untrack(self, job: Job, container: Container) -> None:
        with self._lock:
            for tracked in (self._containers, self._after_containers):
                running = tracked.get(job.name, [])
                if container in running:
                    running.remove(container)

    def _start_service(
        self,
        job: Job,
        sandbox: Sandbox,
        images: tuple[RunnableImage, RunnableImage],
        name: str,
        svc: ServiceSpec,
        values: Mapping[str, str],
        service_logs: list[_ServiceLog],
    ) -> None:
        """Start a service, then wait for its exposed ports (probed from the job's image,
        `images[1]`, which has the `sh` the probe needs, unlike many service images)."""
        image, job_image = images
        env = dict(values)
        env.update(resolve_variables((*job.variables, *svc.variables)))
        self._log(job, f"kapal: starting service {name}")
        spec = ContainerSpec(
            name=f"service-{_slug((svc.aliases or (name,))[0])}",
            layers=image.layers,
            image=image.defaults,
            command=svc.command,
            entrypoint=svc.entrypoint,
            env=env,
            limits=self.options.limits,
        )
        container = self.backend.start(sandbox, spec)
        self._track(job, container)
        service_log = _ServiceLog(self.backend, container, self._masker)
        service_logs.append(service_log)
        if not image.exposed_ports:
            return
        probe = ContainerSpec(
            name=f"probe-{_slug((svc.aliases or (name,))[0])}",
            layers=job_image.layers,
            image=job_image.defaults,
            entrypoint=(),
            command=PROBE_COMMAND,
            timeout=10.0,
        )
        ports = ", ".join(map(str, image.exposed_ports))
        self._log(job, f"kapal: waiting for {name} to listen on {ports}")
        try:
            closed = wait_for_ports(
                self.backend,
                sandbox,
                probe,
                image.exposed_ports,
                timeout=self.options.service_timeout,
                alive=lambda: service_log.thread.is_alive() and not self._canceled.is_set(),
            )
        except ContainerStartError as exc:
            raise ServiceError(
                f"cannot check the ports of service {name} (the probe runs `sh` in the job's "
                f"image): {exc}"
            ) from None
        if closed and not self._canceled.is_set():
            for line in service_log.tail():
                self._log(job, f"[service {name}] {line}")
            closed_ports = ", ".join(map(str, sorted(closed)))
            if not service_log.thread.is_alive():
                raise ServiceError(
                    f"service {name} exited before listening on port(s) {closed_ports}; "
                    "its last output is in the job log"
                )
            raise ServiceError(
                f"service {name} did not listen on port(s) {closed_ports} "
                f"within {format_duration(self.options.service_timeout)}; check its command and "
                "its log, or raise the service timeout"
            )

    def _run_step(
        self,
        job: Job,
        sandbox: Sandbox,
        image: RunnableImage,
        mounts: tuple[Mount, ...],
        values: Mapping[str, str],
    ) -> _Outcome:
        timeout = float(job.timeout_seconds or self.options.default_timeout)
        env = {**values, "CI_JOB_STATUS": "running"}
        spec = self._script_spec(job, image, mounts, env, script="step_script", timeout=timeout)
        try:
            status = self._run_container(job, sandbox, spec)
        except ContainerStartError as exc:
            return _Outcome(JobStatus.FAILED, reason=str(exc), failure_kind="runner_system_failure")
        return _outcome_of(status)

    def _run_after_script(
        self,
        job: Job,
        sandbox: Sandbox,
        image: RunnableImage,
        mounts: tuple[Mount, ...],
        values: Mapping[str, str],
        outcome: _Outcome,
    ) -> None:
        env = dict(values)
        canceled = outcome.status == JobStatus.CANCELED or (
            self._canceled.is_set() and outcome.status != JobStatus.SUCCESS
        )
        succeeded = outcome.status == JobStatus.SUCCESS
        env["CI_JOB_STATUS"] = "canceled" if canceled else "success" if succeeded else "failed"
        if canceled:
            self._log(job, "kapal: running after_script of the canceled job (cancel again to stop)")
        else:
            self._log(job, "kapal: running after_script")
        timeout = self.options.after_script_timeout
        spec = self._script_spec(job, image, mounts, env, script="after_script", timeout=timeout)
        try:
            status = self._run_container(job, sandbox, spec, after=True)
        except ContainerStartError as exc:
            self._log(job, f"kapal: after_script could not start: {exc}")
            return
        if not status.ok:
            self._log(job, f"kapal: after_script {status.describe()} (the job's status stands)")

    def _script_spec(
        self,
        job: Job,
        image: RunnableImage,
        mounts: tuple[Mount, ...],
        env: Mapping[str, str],
        *,
        script: str,
        timeout: float,
    ) -> ContainerSpec:
        """The container running one of the job's scripts (`step_script`, `after_script`)."""
        suffix = "" if script == "step_script" else "-after"
        return ContainerSpec(
            name=f"{_slug(job.name)}{suffix}",
            layers=image.layers,
            image=image.defaults,
            entrypoint=job.image.entrypoint if job.image else None,
            command=("sh", f"{SCRIPT_DIR}/{script}"),
            env=dict(env),
            cwd=self.options.project_dir,
            hostname=_slug(job.name)[:63] or "job",
            mounts=mounts,
            limits=self.options.limits,
            timeout=timeout,
        )

    def _run_container(
        self, job: Job, sandbox: Sandbox, spec: ContainerSpec, *, after: bool = False
    ) -> ExitStatus:
        container = self.backend.start(sandbox, spec)
        self._track(job, container, after=after)
        try:
            maskers: dict[str, LineMasker] = {}
            for entry in self.backend.logs(container):
                masker = maskers.setdefault(entry.stream, LineMasker(self._masker))
                for shown in masker.push(entry.text):
                    self.recorder.record(LogLine(job=job.name, text=shown))
            for masker in maskers.values():
                for shown in masker.flush():
                    self.recorder.record(LogLine(job=job.name, text=shown))
            return self.backend.wait(container)
        finally:
            self._untrack(job, container)


class _ServiceLog:
    """Drains a service container's output in a thread, keeping the last lines for errors."""

    def __init__(self, backend: Backend, container: Container, masker: SecretMasker) -> None:
        self._lines: collections.deque[str] = collections.deque(maxlen=20)
        self._masker = masker
        self.thread = threading.Thread(
            target=self._drain, args=(backend, container), name="kapal-service-log", daemon=True
        )
        self.thread.start()

    def _drain(self, backend: Backend, container: Container) -> None:
        with contextlib.suppress(RunnerError):
            for entry in backend.logs(container):
                self._lines.append(self._masker.mask(entry.text))

    def tail(self) -> list[str]:
        """The last lines the service printed (masked)."""
        return list(self._lines)


def _outcome_of(status: ExitStatus) -> _Outcome:
    if status.ok:
        return _Outcome(JobStatus.SUCCESS, exit_code=0)
    if status.canceled:
        return _Outcome(JobStatus.CANCELED, exit_code=status.exit_code, reason="canceled")
    kind = "stuck_or_timeout_failure" if status.timed_out else "script_failure"
    return _Outcome(
        JobStatus.FAILED, exit_code=status.exit_code, reason=status.describe(), failure_kind=kind
    )


def _retryable(job: Job, outcome: _Outcome) -> bool:
    spec = job.retry
    if spec.exit_codes and outcome.exit_code not in spec.exit_codes:
        return False
    whens = set(spec.when) or {"always"}
    return (
        "always" in whens
        or outcome.failure_kind in whens
        or ("unknown_failure" in whens and outcome.failure_kind == "unknown_failure")
    )


def _slug(name: str) -> str:
    out = "".join(c.lower() if c.isalnum() else "-" for c in name)
    while "--" in out:
        out = out.replace("--", "-")
    return out.strip("-")[:63] or "job"


def _normalise(name: str) -> str:
    try:
        return str(Reference.parse(name))
    except ImageError:
        return name


def _source_date_epoch(values: Mapping[str, str]) -> int:
    """The build's SOURCE_DATE_EPOCH: the job's own variable, else the commit time, else 0."""
    explicit = values.get("SOURCE_DATE_EPOCH", "").strip()
    if explicit.isdigit():
        return int(explicit)
    stamp = values.get("CI_COMMIT_TIMESTAMP", "").strip()
    if stamp:
        with contextlib.suppress(ValueError):
            return max(0, int(datetime.fromisoformat(stamp).timestamp()))
    return 0
