"""`Engine`: runs a whole `Plan` in this process, for `kapal run`.

The in-memory driver over the two parts the server drives from its database: `schedule` decides
which job moves on, a `JobRunner` runs each attempt. The engine adds what a single process needs:
threads (at most `concurrency` jobs at a time), retries, the pipeline's source copied once, job
statuses reported to a `Recorder`, and cancel. A `trigger:` job runs its child pipeline with a
child `Engine` (see `downstream`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import PipelineError
from pipeline.plan import Job, Plan
from runner.artifacts import ArtifactStore
from runner.cache import CacheStore
from runner.engine.downstream import ChildPipelines, NestedRecorder, child_pipeline_id
from runner.engine.job_runner import (
    JobOptions,
    JobOutcome,
    JobRunner,
    WorkspaceSource,
    job_variables,
)
from runner.engine.recorder import (
    Event,
    JobStatus,
    JobStatusChanged,
    LogLine,
    PipelineFinished,
    PipelineStarted,
    PipelineStatus,
    Recorder,
)
from runner.engine.schedule import (
    DEPLOY_NOT_RUNNABLE,
    PIPELINE_CANCELED,
    JobState,
    ScheduleOptions,
    auto_cancel_reason,
    failure_allowed,
    next_steps,
    pipeline_status,
    retry_wanted,
    select_jobs,
    start_delay,
)
from runner.engine.variables import expand
from runner.engine.workspace import InPlaceTree
from runner.errors import (
    EngineError,
    ImageError,
    ImageNotFoundError,
    ImageReferenceError,
    RunnerError,
)
from runner.images.reference import Reference
from runner.job_images import ImageProvider
from runner.masking import SecretMasker
from runner.runtime.backend import Backend

__all__ = [
    "DEPLOY_NOT_RUNNABLE",
    "Engine",
    "EngineOptions",
    "JobResult",
    "PipelineResult",
    "WorkspaceSource",
]

_PLAY_HINT = "run it with --manual or --job {job!r}"


@dataclass(frozen=True)
class EngineOptions(JobOptions):
    """How the engine runs a pipeline (and, through `JobOptions`, its jobs); the defaults suit
    `kapal run`."""

    concurrency: int = 4
    manual: bool = False  # run every manual job
    only: frozenset[str] = frozenset()  # run these jobs (manual ones too) and what they wait for
    stage: str | None = None  # run this stage's jobs and what they wait for


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

    A `trigger:` job plans its child pipeline through `children` and runs it with a child
    engine sharing this one's backend, images and stores (its jobs recorded as
    `job [trigger job]`). With `strategy: depend` the trigger job ends as the child pipeline
    does; without, it succeeds once the child pipeline is created, as in GitLab, and `run`
    still waits for the child pipeline before it returns. `cancel` reaches child pipelines.
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
        children: ChildPipelines | None = None,
    ) -> None:
        self.backend = backend
        self.images = images
        self.recorder = _LockedRecorder(recorder)
        self.work_dir = work_dir
        self.artifacts = artifacts
        self.caches = caches
        self.options = options or EngineOptions()
        self.children = children
        self._child_engines: dict[str, Engine] = {}
        self._detached: list[tuple[Job, Future[PipelineResult]]] = []
        self._downstream = ThreadPoolExecutor(thread_name_prefix="kapal-child")
        # shared with child engines: containers of the whole run, children included
        self._slots = threading.BoundedSemaphore(max(1, self.options.concurrency))
        self._masker = SecretMasker(self.options.secrets.values())
        self._lock = threading.Condition()
        self._canceled = threading.Event()
        self._forced = threading.Event()  # a second cancel: stop after_script containers too
        # why running jobs were stopped by `workflow: auto_cancel: on_job_failure` (None: not)
        self._auto_canceled: str | None = None
        self._scheduled_at: dict[str, float] = {}  # delayed jobs: when they were scheduled
        self._runners: dict[str, JobRunner] = {}
        self._results: dict[str, JobResult] = {}
        self._plan: Plan | None = None
        self._cleanup = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kapal-cleanup")

    # -- public ----------------------------------------------------------------------------

    def selected_jobs(self, plan: Plan) -> list[Job]:
        """The jobs this run would start (after `only`/`stage`), in plan order.

        Raises `UnknownJobError` when `only` or `stage` name something the plan lacks.
        """
        return select_jobs(plan, only=self.options.only, stage=self.options.stage)

    def check_images(self, plan: Plan, jobs: list[Job]) -> None:
        """Fail before anything runs when a job's image is missing, naming the jobs and the fix.

        The jobs of the child pipelines that trigger jobs start are checked too, when their
        files can be planned now (not a child made from an artifact at run time).
        """
        missing: dict[str, list[str]] = {}
        self._find_missing(plan, jobs, missing, set(), self.children, "")
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

    def _find_missing(
        self,
        plan: Plan,
        jobs: list[Job],
        missing: dict[str, list[str]],
        built: set[str],
        children: ChildPipelines | None,
        suffix: str,
    ) -> None:
        """Add the images `jobs` (named with `suffix` in a child pipeline) lack to `missing`."""
        for job in jobs:
            if job.build is not None:
                values = job_variables(job, self.options, job_id=0, attempt=0)
                built |= {_normalise(expand(tag, values)) for tag in job.build.tags}
        for job in jobs:
            if job.build is not None or job.deploy is not None or job.trigger is not None:
                continue
            if job.manual and not (self.options.manual or job.name in self.options.only):
                continue  # it will wait for a person; its image is checked when it runs
            shown = job.name + suffix
            values = job_variables(job, self.options, job_id=0, attempt=0)
            if job.image is None:
                raise EngineError(
                    f"job {shown!r} has no image: add `image:` to the job or to `default:`"
                )
            # `always` is checked as `if-not-present` here; the job says it if it cannot pull
            names = [(expand(job.image.name, values), _checked_policy(job.image.pull_policy))]
            names += [
                (expand(svc.name, values), _checked_policy(svc.pull_policy)) for svc in job.services
            ]
            for name, policy in names:
                if not name.strip():
                    raise EngineError(
                        f"job {shown!r}: an image name is empty after expanding variables"
                    )
                if _normalise(name) in built:
                    continue
                try:
                    found = self.images.available(name, policy)
                except ImageReferenceError as exc:
                    raise ImageReferenceError(f"job {shown!r}: {exc}") from None
                if not found:
                    missing.setdefault(name, []).append(shown)
        for job in jobs if children is not None else ():
            trigger = job.trigger
            if trigger is None or trigger.project is not None or job.manual:
                continue
            if any(include.kind == "artifact" for include in trigger.includes):
                continue  # made by a job of this run: checked when the trigger job runs
            assert children is not None
            try:
                child = children.plan(
                    job, parent=plan, pipeline_id=0, child_id=0, artifacts=self.artifacts
                )
            except (PipelineError, RunnerError):
                continue  # the trigger job fails with it when it runs
            if child.created:
                self._find_missing(
                    child,
                    list(child.runnable_jobs()),
                    missing,
                    built,
                    children.below(),
                    f" [{job.name}]{suffix}",  # as `NestedRecorder` names them
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
            runners = list(self._runners.values())
            children = list(self._child_engines.values())
            self._lock.notify_all()
        for runner in runners:
            runner.cancel(force=self._forced.is_set())
        for child in children:
            child.cancel()
            if self._forced.is_set():
                child.cancel()  # a second cancel reaches the child's after_scripts too
        return True

    def run(self, plan: Plan, source: WorkspaceSource, *, pipeline_id: int = 1) -> PipelineResult:
        """Run `plan` on a copy of `source` (or in it, for an `InPlaceTree`); return how it
        ended (after all cleanup)."""
        started = time.monotonic()
        jobs = self.selected_jobs(plan)
        self.check_images(plan, jobs)
        self._runners = {}
        self._plan = plan
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
        # child pipelines of trigger jobs without `strategy: depend` run on beside the parent
        self._downstream = ThreadPoolExecutor(thread_name_prefix="kapal-child")
        try:
            try:
                job_source = self._pipeline_source(source, run_dir)
            except RunnerError:
                duration = time.monotonic() - started
                self.recorder.record(PipelineFinished(PipelineStatus.FAILED, duration))
                raise
            for job in jobs:
                self._set_status(job, JobStatus.CREATED)
            self._schedule(
                functools.partial(
                    self._run_job,
                    pipeline_id=pipeline_id,
                    job_ids={
                        job.name: pipeline_id * 1000 + i for i, job in enumerate(plan.jobs, 1)
                    },
                    source=job_source,
                    jobs_dir=run_dir / "jobs",
                )
            )
        finally:
            self._wait_for_children()  # before the source they copy from is removed
            self._cleanup.shutdown(wait=True)
            if not self.options.keep_work_dir:
                shutil.rmtree(run_dir, ignore_errors=True)
        status = pipeline_status(
            plan, self._states(), canceled=self._canceled.is_set(), held="skip"
        )
        self._canceled.clear()  # the next run starts afresh
        self._forced.clear()
        self._auto_canceled = None
        self._scheduled_at = {}
        self._child_engines = {}
        self._detached = []
        duration = time.monotonic() - started
        self.recorder.record(PipelineFinished(status=status, duration=duration))
        return PipelineResult(status=status, jobs=dict(self._results), duration=duration)

    # -- scheduling ------------------------------------------------------------------------

    def _pipeline_source(self, source: WorkspaceSource, run_dir: Path) -> WorkspaceSource:
        """Make the pipeline's source once; each job's workspace is then a copy of it."""
        if isinstance(source, InPlaceTree):
            source.checked()
            return source
        pristine = run_dir / "source"
        pristine.mkdir()
        source(pristine)
        return functools.partial(_copy_tree, pristine)

    def _states(self) -> dict[str, JobState]:
        return {
            name: JobState(result.status, result.allowed_failure)
            for name, result in self._results.items()
        }

    def _schedule(self, run_job: Callable[[Job], None]) -> None:
        assert self._plan is not None
        plan = self._plan
        futures: list[Future[None]] = []
        with (
            ThreadPoolExecutor(
                max_workers=max(1, self.options.concurrency), thread_name_prefix="kapal-job"
            ) as pool,
            self._lock,
        ):
            while True:
                now = time.monotonic()
                due = frozenset(
                    name
                    for name, since in self._scheduled_at.items()
                    if now >= since + start_delay(plan.job(name))
                )
                options = ScheduleOptions(
                    manual=self.options.manual,
                    only=self.options.only,
                    stage=self.options.stage,
                    canceled=self._canceled.is_set(),
                    held="skip",  # nobody will play a manual job during this run
                    play_hint=_PLAY_HINT,
                    due=due,
                )
                states = self._states()
                for step in next_steps(plan, states, options):
                    job = plan.job(step.job)
                    self._set_status(job, step.status, reason=step.reason)
                    if step.status is JobStatus.SCHEDULED:
                        self._scheduled_at[job.name] = now
                    elif step.status is JobStatus.PENDING:
                        self._scheduled_at.pop(job.name, None)
                        future = pool.submit(run_job, job)
                        future.add_done_callback(self._wake)
                        futures.append(future)
                    else:
                        self._scheduled_at.pop(job.name, None)
                stop = auto_cancel_reason(plan, states)
                if stop is not None and self._auto_canceled is None:
                    self._auto_canceled = stop
                    for runner in self._runners.values():
                        runner.cancel()
                waiting = any(r.status == JobStatus.CREATED for r in self._results.values())
                if all(f.done() for f in futures) and not self._scheduled_at:
                    if not waiting:
                        break
                    # nothing runs and nothing can start: only a scheduler bug gets here
                    for result in self._results.values():
                        if result.status == JobStatus.CREATED:
                            self._set_status(
                                plan.job(result.name),
                                JobStatus.SKIPPED,
                                reason="kapal could not schedule it (a bug: please report it)",
                            )
                    break
                self._lock.wait(timeout=self._next_wake(plan))
        for future in futures:
            future.result()

    def _next_wake(self, plan: Plan) -> float:
        """How long the scheduling loop may sleep: 1 s, or less when a delayed job is due."""
        now = time.monotonic()
        waits = [
            since + start_delay(plan.job(name)) - now for name, since in self._scheduled_at.items()
        ]
        return max(0.0, min([1.0, *waits]))

    def _wake(self, _: Future[None]) -> None:
        with self._lock:
            self._lock.notify_all()

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

    def _run_job(
        self,
        job: Job,
        *,
        pipeline_id: int,
        job_ids: dict[str, int],
        source: WorkspaceSource,
        jobs_dir: Path,
    ) -> None:
        """Run `job`'s attempts (retries included) and record how it ended."""
        assert self._plan is not None
        if job.trigger is not None:
            self._run_trigger(job, pipeline_id=pipeline_id, source=source)
            return
        started = time.monotonic()
        outcome = JobOutcome(JobStatus.CANCELED, reason=PIPELINE_CANCELED)
        # at most `concurrency` jobs run at once, those of child pipelines included
        with self._slots:
            attempt = 1
            while True:
                runner = JobRunner(
                    job,
                    plan=self._plan,
                    pipeline_id=pipeline_id,
                    job_id=job_ids.get(job.name, 0),
                    attempt=attempt,
                    source=source,
                    work_dir=jobs_dir,
                    backend=self.backend,
                    images=self.images,
                    artifacts=self.artifacts,
                    caches=self.caches,
                    recorder=self.recorder,
                    options=self.options,
                    # removing a workspace is slow on some file systems: off the critical path
                    remove_dir=self._remove_later,
                )
                with self._lock:
                    if self._canceled.is_set():
                        outcome = JobOutcome(JobStatus.CANCELED, reason=PIPELINE_CANCELED)
                        break
                    if self._auto_canceled is not None:
                        outcome = JobOutcome(JobStatus.CANCELED, reason=self._auto_canceled)
                        break
                    self._runners[job.name] = runner
                self._set_status(job, JobStatus.RUNNING, attempt=attempt)
                try:
                    outcome = runner.run()
                finally:
                    with self._lock:
                        self._runners.pop(job.name, None)
                if self._canceled.is_set() and outcome.status != JobStatus.SUCCESS:
                    outcome = JobOutcome(JobStatus.CANCELED, outcome.exit_code, PIPELINE_CANCELED)
                elif (
                    runner.canceled and outcome.status == JobStatus.CANCELED and self._auto_canceled
                ):
                    outcome = JobOutcome(JobStatus.CANCELED, outcome.exit_code, self._auto_canceled)
                if outcome.status == JobStatus.FAILED and retry_wanted(
                    job,
                    attempt=attempt,
                    exit_code=outcome.exit_code,
                    failure_kind=outcome.failure_kind,
                ):
                    self._log(job, f"kapal: attempt {attempt} failed ({outcome.reason}); retrying")
                    # reported, but the job stays running for the scheduler until its last attempt
                    self.recorder.record(
                        JobStatusChanged(
                            job=job.name,
                            status=JobStatus.FAILED,
                            attempt=attempt,
                            exit_code=outcome.exit_code,
                            duration=time.monotonic() - started,
                            reason=self._masker.mask(f"{outcome.reason}; retrying"),
                        )
                    )
                    attempt += 1
                    continue
                break
        allowed = outcome.status == JobStatus.FAILED and failure_allowed(job, outcome.exit_code)
        self._set_status(
            job,
            outcome.status,
            reason=outcome.reason,
            exit_code=outcome.exit_code,
            duration=time.monotonic() - started,
            allowed_failure=allowed,
        )

    # -- downstream pipelines --------------------------------------------------------------

    def _run_trigger(self, job: Job, *, pipeline_id: int, source: WorkspaceSource) -> None:
        """Plan `job`'s child pipeline and run it with a child engine; record how `job` ended."""
        assert self._plan is not None and job.trigger is not None
        started = time.monotonic()
        self._set_status(job, JobStatus.RUNNING, attempt=1)
        position = [j.name for j in self._plan.jobs if j.trigger is not None].index(job.name) + 1
        child_id = child_pipeline_id(pipeline_id, position)
        try:
            if self.children is None:
                raise EngineError("this engine was given no way to plan child pipelines")
            child_plan = self.children.plan(
                job,
                parent=self._plan,
                pipeline_id=pipeline_id,
                child_id=child_id,
                artifacts=self.artifacts,
                log=functools.partial(self._log, job),
            )
            if not child_plan.created:
                raise EngineError(
                    f"the child pipeline is not created: {child_plan.skip_reason} "
                    "(GitLab fails the trigger job too)"
                )
            if not child_plan.runnable_jobs():
                raise EngineError(
                    "the child pipeline is not created: its rules leave it no job "
                    "(GitLab fails the trigger job too)"
                )
        except (PipelineError, RunnerError) as exc:
            text = str(exc)  # a PipelineError names the file, line and column
            for line in text.splitlines():
                self._log(job, f"kapal: {line}")
            self._finish_trigger(job, JobStatus.FAILED, text.splitlines()[0], started)
            return
        recorder = NestedRecorder(self.recorder, job.name, child_id)
        engine = Engine(
            backend=self.backend,
            images=self.images,
            recorder=recorder,
            work_dir=self.work_dir,
            artifacts=ArtifactStore(self.artifacts.root / str(pipeline_id) / "child pipelines"),
            caches=self.caches,
            # --job/--stage choose among the parent's jobs; a child pipeline runs whole
            options=dataclasses.replace(self.options, only=frozenset(), stage=None),
            children=self.children.below(),
        )
        engine._slots = self._slots  # one `concurrency` for the parent and its children
        with self._lock:
            canceled = self._canceled.is_set()
            if not canceled:
                self._child_engines[job.name] = engine
        if canceled:
            self._finish_trigger(job, JobStatus.CANCELED, PIPELINE_CANCELED, started)
            return
        self._log(
            job,
            f"kapal: child pipeline #{child_id}: {len(child_plan.runnable_jobs())} job(s) "
            f"from {job.trigger.describe()}",
        )
        if not job.trigger.depends:
            future = self._downstream.submit(engine.run, child_plan, source, pipeline_id=child_id)
            with self._lock:
                self._detached.append((job, future))
            self._finish_trigger(
                job,
                JobStatus.SUCCESS,
                f"child pipeline #{child_id} created; it runs on (`strategy: depend` would wait)",
                started,
            )
            return
        try:
            result = engine.run(child_plan, source, pipeline_id=child_id)
        except RunnerError as exc:
            self._log(job, f"kapal: {exc}")
            self._finish_trigger(job, JobStatus.FAILED, str(exc).splitlines()[0], started)
            return
        status, reason = _mirrored(result, child_id)
        self._finish_trigger(job, status, reason, started)

    def _finish_trigger(self, job: Job, status: JobStatus, reason: str, started: float) -> None:
        allowed = status == JobStatus.FAILED and failure_allowed(job, None)
        self._set_status(
            job,
            status,
            reason=reason,
            duration=time.monotonic() - started,
            allowed_failure=allowed,
        )

    def _wait_for_children(self) -> None:
        """Wait for the child pipelines that run on by themselves; log how each ended."""
        for job, future in self._detached:
            try:
                result = future.result()
            except RunnerError as exc:
                self._log(job, f"kapal: the child pipeline could not run: {exc}")
                continue
            self._log(job, f"kapal: {_mirrored(result, 0)[1]} (the trigger job did not wait)")
        self._downstream.shutdown(wait=True)

    def _remove_later(self, path: Path) -> None:
        self._cleanup.submit(shutil.rmtree, path, ignore_errors=True)

    def _log(self, job: Job, text: str) -> None:
        self.recorder.record(LogLine(job=job.name, text=self._masker.mask(text)))


def _mirrored(result: PipelineResult, child_id: int) -> tuple[JobStatus, str]:
    """A trigger job's status with `strategy: depend`: its child pipeline's, and why."""
    failed = [
        r.name
        for r in result.jobs.values()
        if r.status == JobStatus.FAILED and not r.allowed_failure
    ]
    shown = f"child pipeline #{child_id}" if child_id else "the child pipeline"
    if result.status == PipelineStatus.SUCCESS:
        return JobStatus.SUCCESS, f"{shown} passed"
    if result.status == PipelineStatus.CANCELED:
        return JobStatus.CANCELED, f"{shown} was canceled"
    if result.status == PipelineStatus.FAILED:
        which = f": {', '.join(failed)} failed" if failed else ""
        return JobStatus.FAILED, f"{shown} failed{which}"
    return JobStatus.FAILED, f"{shown} ended {result.status.value}"


def _copy_tree(source: Path, destination: Path) -> None:
    """Fill `destination` with a copy of `source` (symlinks copied as links)."""
    shutil.copytree(source, destination, symlinks=True, dirs_exist_ok=True)


def _checked_policy(pull_policy: tuple[str, ...]) -> tuple[str, ...]:
    """The pull policy an image is checked with before the run: `always` left out (the job
    pulls then, or fails saying why)."""
    return tuple(policy for policy in pull_policy if policy != "always")


def _normalise(name: str) -> str:
    try:
        return str(Reference.parse(name))
    except ImageError:
        return name
