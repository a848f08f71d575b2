"""Which job may start, which is skipped, manual or canceled, and why: GitLab's status rules.

Pure functions over a `Plan` and its jobs' states: no threads, no I/O, no clock. `kapal run`'s
`Engine` calls them under its lock; the server calls them inside the database transaction that
records a job's end, so each decision is taken once however many workers there are.

Who moves a job through its statuses:

    created ──next_steps──► pending ──driver──► running ──driver──► success | failed | canceled
       │                       ▲
       ├──next_steps──► scheduled (`when: delayed`; next_steps moves it on once the driver says
       │                 its `start_in` has passed, or cancels it)
       └──next_steps──► skipped | manual | canceled

`next_steps` only decides for jobs still `created` or `scheduled`; a driver (`Engine`, the server's
tasks) moves
`pending` jobs to `running` and records how each attempt ended, retries included (a job waiting
for its next attempt stays `running` as far as the scheduler is concerned). A driver plays a
`manual` job by moving it to `pending` itself.

The rules, as GitLab applies them:
- A job waits until every job it waits for (`waits_for`: its `needs`, else every job of earlier
  stages) has finished.
- `when: on_success` (and `manual`) runs when nothing upstream failed (failures allowed to fail
  do not count), `on_failure` only when something did, `always` in any case.
- An upstream job that was canceled cancels the jobs after it.
- A job whose `needs` (not `optional`) were skipped or never played is skipped.
- A manual job upstream holds later jobs when it may not fail (`allow_failure: false`, a
  "blocking" manual job): the server leaves them `created` until someone plays it; `kapal run`
  skips them, as nobody will play it during the run.
- At most one job of a `resource_group` is pending or running at a time.
- Jobs outside the run's selection (`only`, `stage`) are skipped.
- A `when: delayed` job that may start is `scheduled` instead: the driver keeps the time it was
  scheduled and lists it in `ScheduleOptions.due` once `start_in_seconds` have passed; it then
  starts as an `on_success` job would. Canceling the pipeline cancels it while it waits.
- With `workflow: auto_cancel: on_job_failure: all`, a job that fails (not allowed to) cancels
  the jobs not started yet; `auto_cancel_reason` tells the driver to stop the running ones too.
  (`on_new_commit` and `interruptible` are about a newer pipeline for the same ref: the server's
  concern when it creates one, not this scheduler's; `Engine.cancel(redundant=True)` honours
  `interruptible` for a caller that knows of a newer pipeline.)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal, NamedTuple

from pipeline.plan import Job, Plan
from runner.engine.recorder import JobStatus, PipelineStatus
from runner.errors import UnknownJobError
from runner.runtime.durations import format_duration

DEPLOY_NOT_RUNNABLE = "not runnable yet (ship is not implemented)"
PIPELINE_CANCELED = "pipeline canceled"


@dataclass(frozen=True)
class JobState:
    """What the scheduler needs to know of a job: its status, and whether its failure is allowed
    (`allow_failure`, or an exit code in `allow_failure: exit_codes`)."""

    status: JobStatus
    allowed_failure: bool = False


CREATED = JobState(JobStatus.CREATED)


@dataclass(frozen=True)
class ScheduleOptions:
    """What a pipeline run asks of the scheduler; the defaults suit the server."""

    manual: bool = False  # start manual jobs like the others (`kapal run --manual`)
    only: frozenset[str] = frozenset()  # run these jobs (manual ones too) and what they wait for
    stage: str | None = None  # run this stage's jobs and what they wait for
    canceled: bool = False  # the pipeline was canceled: no job starts any more
    # jobs held by a blocking manual job: wait for it to be played, or skip them (`kapal run`)
    held: Literal["wait", "skip"] = "wait"
    # how a person plays a manual job, said in the manual status's reason ({job}: its name)
    play_hint: str = "play it to run it"
    # `scheduled` (delayed) jobs whose `start_in` has passed: they start now
    due: frozenset[str] = frozenset()


class Step(NamedTuple):
    """One decision: `job` moves from `created` to `status`, for `reason` ("" when starting)."""

    job: str
    status: JobStatus
    reason: str


def select_jobs(plan: Plan, *, only: Iterable[str] = (), stage: str | None = None) -> list[Job]:
    """The jobs a run starts (all runnable ones, or `only`/`stage` and what they wait for).

    In plan order. Raises `UnknownJobError` when `only` or `stage` names something the plan
    lacks or a job that does not run in this pipeline.
    """
    runnable = {job.name: job for job in plan.runnable_jobs()}
    wanted: set[str] = set()
    names = {job.name for job in plan.jobs}
    for name in sorted(set(only)):
        if name not in names:
            raise UnknownJobError(
                f"no job named {name!r} in the pipeline; jobs: {', '.join(sorted(names))}"
            )
        if name not in runnable:
            reason = plan.job(name).skip_reason
            raise UnknownJobError(f"job {name!r} does not run in this pipeline: {reason}")
        wanted.add(name)
    if stage is not None:
        if stage not in plan.stages:
            raise UnknownJobError(f"no stage named {stage!r}; stages: {', '.join(plan.stages)}")
        wanted |= {job.name for job in runnable.values() if job.stage == stage}
    if not wanted and stage is None:
        return list(runnable.values())
    closure = set(wanted)
    todo = list(wanted)
    while todo:
        for upstream in runnable[todo.pop()].waits_for:
            if upstream in runnable and upstream not in closure:
                closure.add(upstream)
                todo.append(upstream)
    return [job for job in runnable.values() if job.name in closure]


def next_steps(
    plan: Plan, states: Mapping[str, JobState], options: ScheduleOptions = ScheduleOptions()
) -> list[Step]:
    """Every decision that can be taken now for the plan's `created` and `scheduled` jobs, in
    plan order.

    `states` maps job names to their states; a runnable job missing from it counts as
    `created`. Decisions cascade within one call (a skipped job skips the jobs after it), so
    applying the steps and calling again yields nothing new until a driver changes a state.
    Raises `UnknownJobError` when `options.only` or `options.stage` name what the plan lacks.
    """
    selected = {job.name for job in select_jobs(plan, only=options.only, stage=options.stage)}
    jobs = {job.name: job for job in plan.jobs}
    current = {job.name: states.get(job.name, CREATED) for job in plan.runnable_jobs()}
    busy = {
        job.resource_group
        for job in plan.runnable_jobs()
        if job.resource_group and current[job.name].status in (JobStatus.PENDING, JobStatus.RUNNING)
    }
    steps: list[Step] = []
    # failures only come from drivers, so one look before deciding is enough
    stop = _stop_reason(plan, current, options)
    changed = True
    while changed:
        changed = False
        for job in plan.runnable_jobs():
            status = current[job.name].status
            if status == JobStatus.SCHEDULED:
                if stop is not None:
                    decision: tuple[JobStatus, str] | None = (JobStatus.CANCELED, stop)
                elif job.name in options.due:
                    decision = (JobStatus.PENDING, "")
                else:
                    continue
            elif status != JobStatus.CREATED:
                continue
            elif job.name not in selected:
                decision = (JobStatus.SKIPPED, "not selected for this run")
            else:
                decision = _decide(jobs, job, current, options, stop)
            if decision is None:
                continue
            status, reason = decision
            if status == JobStatus.PENDING and job.resource_group:
                if job.resource_group in busy:
                    continue  # one job of a resource group at a time
                busy.add(job.resource_group)
            current[job.name] = JobState(status)
            steps.append(Step(job.name, status, reason))
            changed = True
    return steps


def auto_cancel_reason(plan: Plan, states: Mapping[str, JobState]) -> str | None:
    """Why the pipeline's other jobs are canceled now: with `workflow: auto_cancel:
    on_job_failure: all`, once a job failed without being allowed to; else None."""
    if plan.auto_cancel_on_job_failure != "all":
        return None
    for job in plan.runnable_jobs():
        state = states.get(job.name)
        if state is not None and state.status == JobStatus.FAILED and not state.allowed_failure:
            return f"{job.name} failed (workflow: auto_cancel: on_job_failure: all)"
    return None


def start_delay(job: Job) -> float:
    """How long a `scheduled` job waits (its `start_in`) before it is due, in seconds."""
    return float(job.start_in_seconds or 0)


def pipeline_status(
    plan: Plan,
    states: Mapping[str, JobState],
    *,
    canceled: bool = False,
    held: Literal["wait", "skip"] = "wait",
) -> PipelineStatus:
    """The pipeline's status from its jobs' states (`canceled`: the pipeline was canceled).

    `created` while no job has moved; `running` while a job is pending or running or may still
    start; `manual` when a blocking manual job (`allow_failure: false`, an approval gate) waits
    to be played, whatever else remains (with `held="skip"`, only while jobs wait behind it);
    once every
    job has finished: `failed` if a job failed without being allowed to, else `canceled` if the
    pipeline or a job was canceled, else `success` (manual jobs nobody played do not count;
    where every job was skipped GitLab says `skipped`, kapal says `success`).
    """
    jobs = plan.runnable_jobs()
    current = {job.name: states.get(job.name, CREATED) for job in jobs}
    statuses = [state.status for state in current.values()]
    if any(s in (JobStatus.PENDING, JobStatus.RUNNING, JobStatus.SCHEDULED) for s in statuses):
        return PipelineStatus.RUNNING
    if JobStatus.CREATED in statuses and all(s == JobStatus.CREATED for s in statuses):
        return PipelineStatus.CREATED
    # a blocking manual job (an approval gate) holds the pipeline, even as its last job; a run
    # that does not wait for gates (`held="skip"`, `kapal run`) ends without it
    gated = any(
        current[job.name].status == JobStatus.MANUAL and not job.allow_failure for job in jobs
    )
    if gated and (held == "wait" or JobStatus.CREATED in statuses):
        return PipelineStatus.MANUAL
    if JobStatus.CREATED in statuses:
        return PipelineStatus.RUNNING
    if any(s.status == JobStatus.FAILED and not s.allowed_failure for s in current.values()):
        return PipelineStatus.FAILED
    if canceled or JobStatus.CANCELED in statuses:
        return PipelineStatus.CANCELED
    return PipelineStatus.SUCCESS


def failure_allowed(job: Job, exit_code: int | None) -> bool:
    """Whether a failure of `job` that ended with `exit_code` lets the pipeline pass."""
    if job.allow_failure_exit_codes:
        return exit_code in job.allow_failure_exit_codes
    return job.allow_failure


def retry_wanted(job: Job, *, attempt: int, exit_code: int | None, failure_kind: str) -> bool:
    """Whether a failed `attempt` (1 for the first) of `job` is tried again (`retry:`).

    `failure_kind` is GitLab's failure reason: `script_failure`, `stuck_or_timeout_failure`,
    `runner_system_failure` or `unknown_failure`.
    """
    spec = job.retry
    if attempt > max(0, spec.max):
        return False
    if spec.exit_codes and exit_code not in spec.exit_codes:
        return False
    whens = set(spec.when) or {"always"}
    return "always" in whens or failure_kind in whens


def _decide(
    jobs: Mapping[str, Job],
    job: Job,
    states: Mapping[str, JobState],
    options: ScheduleOptions,
    stop: str | None,
) -> tuple[JobStatus, str] | None:
    """A created job's next status and why (`stop`: why no job starts any more, if so); None
    while it must wait."""
    if stop is not None:
        return JobStatus.CANCELED, stop
    upstream = [states[name] for name in job.waits_for if name in states]
    if any(not state.status.finished for state in upstream):
        return None
    if any(state.status == JobStatus.CANCELED for state in upstream):
        return JobStatus.CANCELED, "an earlier job was canceled"
    failed = _failed_ancestor(jobs, job, states)
    if job.when in ("on_success", "manual"):
        if failed:
            return JobStatus.SKIPPED, f"{failed} failed"
        for name in job.waits_for:
            state = states.get(name)
            if state is None or state.status != JobStatus.MANUAL or jobs[name].allow_failure:
                continue
            if options.held == "wait":
                return None
            return JobStatus.SKIPPED, (
                f"blocked by the manual job {name} ({options.play_hint.format(job=name)})"
            )
        for need in job.needs or ():
            state = states.get(need.job)
            if state is None or need.optional:
                continue
            if state.status in (JobStatus.SKIPPED, JobStatus.MANUAL):
                return JobStatus.SKIPPED, f"needs {need.job}, which did not run"
        if job.manual and not (options.manual or job.name in options.only):
            return JobStatus.MANUAL, f"manual job: {options.play_hint.format(job=job.name)}"
    elif job.when == "on_failure" and not failed:
        return JobStatus.SKIPPED, "when: on_failure, and nothing failed"
    if job.start_in_seconds is not None and job.name not in options.due:
        return JobStatus.SCHEDULED, f"delayed: starts {_duration(job.start_in_seconds)} from now"
    return JobStatus.PENDING, ""


def _stop_reason(
    plan: Plan, states: Mapping[str, JobState], options: ScheduleOptions
) -> str | None:
    """Why no job may start any more (the pipeline canceled, or auto-canceled); None if not."""
    if options.canceled:
        return PIPELINE_CANCELED
    return auto_cancel_reason(plan, states)


def _duration(seconds: int) -> str:
    """`90` as "1m 30s", for a scheduled job's reason."""
    return format_duration(float(seconds))


def _failed_ancestor(
    jobs: Mapping[str, Job], job: Job, states: Mapping[str, JobState]
) -> str | None:
    """The first job upstream of `job` (transitively) that failed without being allowed to."""
    seen: set[str] = set()
    todo = list(job.waits_for)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        state = states.get(name)
        if state is None:
            continue
        if state.status == JobStatus.FAILED and not state.allowed_failure:
            return name
        todo.extend(jobs[name].waits_for)
    return None
