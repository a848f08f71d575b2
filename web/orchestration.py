"""The service layer over pipelines: create them, advance them, cancel, retry and play jobs.

What the HTTP side (webhooks, the REST API) and the workers call. Each function is keyword-only,
opens its own transactions on `services.database`, and sends the jobs it made `pending` to
`services.dispatcher` after the transaction that made them pending has committed, each exactly
once: every decision is taken with the pipeline's row locked (`web.db.locks.lock_pipeline`), and
a job is moved `created -> pending` by a compare-and-set, so two workers finishing jobs of one
pipeline at once never start a job twice.

    webhook ─► create_pipeline_from_trigger ─┐
    API     ─► create_pipeline_for_ref ──────┼─► plan at the commit, record plan + jobs ─► advance
                                             │
    worker: job ended ─► finish_job ─────────┴─► (retry: a new attempt) ─► advance
    advance: lock the pipeline, `next_steps` over its jobs' statuses, write the decisions and
             the pipeline's status; commit; dispatch `run_job` for each job made pending.

A `when: delayed` job is `scheduled` when it could start, and due `start_in` after the last job
it waits for finished (the pipeline's creation when none): each job made `scheduled` sends an
`advance_pipeline` message delayed by its `start_in`, which starts it (or, early, sends itself
again); a worker starting wakes every pipeline with scheduled jobs, in case such a message was
lost. With `workflow: auto_cancel: on_job_failure: all`, a job failing (not allowed to) cancels
the pending jobs and asks the running ones' workers to stop them.

A `trigger:` job runs on no worker: where it would be made pending it starts, in the same
transaction, and records its child pipeline, which is planned after the commit and whose end
is the job's with `strategy: depend` (see "child pipelines" below).

A new pipeline for a ref auto-cancels the older ones of that ref (`cancel_redundant`, GitLab's
`workflow: auto_cancel: on_new_commit` with `interruptible:`). Each change of a pipeline's
status is handed, after its commit, to `dispatcher.commit_status` (reported to the git host by
`web.statuses`).
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import git
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from pipeline.plan import Plan, TriggerSpec
from runner.engine.recorder import JobStatus
from runner.engine.schedule import (
    JobState,
    ScheduleOptions,
    auto_cancel_reason,
    failure_allowed,
    next_steps,
    pipeline_status,
    retry_wanted,
    start_delay,
)
from runner.errors import RunnerError
from web.artifact_expiry import job_expire_seconds
from web.db import jobs as job_rows
from web.db.artifact_expiry import stamp_artifacts_expiry
from web.db.deliveries import finish_delivery
from web.db.downstream import (
    CHILD_SOURCE,
    DOWNSTREAM_WORKER,
    create_child_pipeline,
    pipeline_depth,
    start_trigger_job,
    stuck_children,
    unfinished_children,
    wait_again_for_child,
)
from web.db.encryption import SecretCipher
from web.db.jobs import get_job, list_jobs, request_job_cancel, request_pipeline_cancel
from web.db.locks import lock_pipeline, lock_repository
from web.db.logs import append_log
from web.db.models import Job, utcnow
from web.db.models import Pipeline as PipelineRow
from web.db.pipelines import (
    create_pipeline,
    delete_pipeline,
    get_pipeline,
    get_pipeline_detail,
    get_pipeline_plan,
    record_plan,
    set_pipeline_status,
)
from web.db.repos import get_repository
from web.db.schemas import JobRead, PipelineCreate, PipelineDetail, PipelineRead, RepositoryRead
from web.db.session import Database
from web.downstream import child_planner, mirrored_end, parent_artifacts, trigger_of_pipeline
from web.errors import (
    ConflictError,
    MirrorError,
    NotFoundError,
    PipelineNotCreatedError,
    RepositoryUnreachableError,
)
from web.hooks.planning import PlannedTrigger, include_fetcher, plan_trigger
from web.hooks.trigger import ZERO_SHA, MergeRequest, Trigger
from web.mirrors import GIT_ENV, RepositoryMirror, shown_url
from web.settings import Settings

__all__ = [
    "Dispatcher",
    "JobEnd",
    "Services",
    "TriggerOutcome",
    "advance",
    "cancel_job",
    "cancel_pipeline",
    "child_triggers",
    "create_pipeline_for_ref",
    "create_pipeline_from_trigger",
    "finish_job",
    "pipeline_of_trigger",
    "plan_recorded_pipeline",
    "play_job",
    "recover_children",
    "requeue_pending",
    "retry_job",
    "retry_pipeline",
    "start_trigger_pipeline",
]

log = logging.getLogger(__name__)

MANUAL_SOURCES = ("api", "web")
PLAY_HINT = "play it to run it (kapal play, or POST /api/v1/jobs/ID/play)"
LS_REMOTE_TIMEOUT = 60.0
_REF_NAME = re.compile(r"[^\x00-\x20\x7f~^:?*\[\\]+\Z")


class Dispatcher(Protocol):
    """Where the service layer sends the jobs it made pending (the Celery queue, or a list)."""

    def run_jobs(self, job_ids: Sequence[int]) -> None:
        """Have each job run once by a worker (`web.tasks.run_job`)."""

    def plan_pipeline(self, pipeline_id: int, request: dict[str, Any]) -> None:
        """Have a worker plan a recorded pipeline (`web.tasks.plan_pipeline`, which calls
        `plan_recorded_pipeline(pipeline_id=..., **request)`)."""

    def advance_later(self, pipeline_id: int, seconds: float) -> None:
        """Have a worker `advance` the pipeline in `seconds` (a delayed job is due then)."""

    def commit_status(self, pipeline_id: int, status: str) -> None:
        """Have the pipeline's new status reported to its git host (`web.statuses`); a
        dispatcher without this method reports nothing."""


@dataclass(frozen=True)
class Services:
    """What the service layer works with: the settings, the database, the job queue.

    Lifecycle: one per process (the web app, a worker), made at start; it holds no connection
    of its own beyond `database`'s pool, which its owner disposes of.
    """

    settings: Settings
    database: Database
    dispatcher: Dispatcher

    def cipher(self) -> SecretCipher:
        """The cipher of the secrets at rest (its key from the settings)."""
        return SecretCipher(self.settings.encryption_key())


@dataclass(frozen=True)
class TriggerOutcome:
    """What a trigger gave: a pipeline, or none and why (`ignored`)."""

    pipeline: PipelineRead | None
    ignored: str | None = None


@dataclass(frozen=True)
class JobEnd:
    """How a job attempt ended, as a worker reports it (`reason` already masked)."""

    status: JobStatus
    exit_code: int | None = None
    reason: str = ""
    failure_kind: str = "script_failure"


# -- creating pipelines ----------------------------------------------------------------------


def create_pipeline_from_trigger(
    *,
    services: Services,
    repository_id: int,
    trigger: Trigger,
    delivery_row_id: int | None = None,
    variables: Mapping[str, str] | None = None,
    source: str | None = None,
    plan_now: bool = True,
) -> TriggerOutcome:
    """Record the pipeline of a verified webhook `trigger` (the delivery row `delivery_row_id`
    already recorded), plan it at its commit and start it.

    The commit's pipeline file is read through the repository's mirror. An invalid pipeline
    file, or a commit the mirror cannot get, gives a pipeline with status `failed` and the
    reason (the positioned errors); no pipeline file, or `workflow: rules` refusing it, gives no
    pipeline (`ignored`). The delivery row is linked to the pipeline when it is recorded, so a
    redelivery finds it. Raises NotFoundError for an unknown repository.

    With `plan_now=False` the pipeline is recorded (status `created`) and returned at once, and
    a worker plans it (`plan_recorded_pipeline`): a webhook is answered in the time of one
    database transaction, whatever git costs. Its id having been handed out, such a pipeline
    that turns out to have no pipeline file is kept, `skipped`, with the reason.
    """
    with services.database.transaction() as session:
        _repository(session, repository_id)
        created = create_pipeline(
            session=session, new=pipeline_of_trigger(repository_id, trigger, variables, source)
        )
        if delivery_row_id is not None:
            finish_delivery(
                session=session, id=delivery_row_id, outcome="pipeline", pipeline_id=created.id
            )
    return start_trigger_pipeline(
        services=services,
        pipeline=created,
        trigger=trigger,
        delivery_row_id=delivery_row_id,
        variables=variables,
        source=source,
        plan_now=plan_now,
    )


def start_trigger_pipeline(
    *,
    services: Services,
    pipeline: PipelineRead,
    trigger: Trigger,
    delivery_row_id: int | None = None,
    variables: Mapping[str, str] | None = None,
    source: str | None = None,
    plan_now: bool = True,
) -> TriggerOutcome:
    """Plan a recorded (committed) pipeline of `trigger`: here, or with `plan_now=False` by a
    worker (see `create_pipeline_from_trigger`; the webhook route records the delivery and its
    pipeline with `web.db.deliveries.record_delivery_pipeline`)."""
    created = pipeline
    request: dict[str, Any] = {
        "trigger": dataclasses.asdict(trigger),
        "delivery_row_id": delivery_row_id,
        "variables": dict(variables or {}),
        "source": source,
    }
    if not plan_now:
        try:
            services.dispatcher.plan_pipeline(created.id, request)
            return TriggerOutcome(created)
        except Exception:  # the broker is down: plan here rather than never
            log.exception("cannot send pipeline %s to be planned; planning it here", created.id)
    return plan_recorded_pipeline(
        services=services, pipeline_id=created.id, keep_ignored=False, **request
    )


def plan_recorded_pipeline(
    *,
    services: Services,
    pipeline_id: int,
    trigger: Trigger | Mapping[str, Any] | None = None,
    delivery_row_id: int | None = None,
    variables: Mapping[str, str] | None = None,
    source: str | None = None,
    keep_ignored: bool = True,
) -> TriggerOutcome:
    """Plan a pipeline recorded `created` by `create_pipeline_from_trigger` (`trigger` as a
    `Trigger` or its `dataclasses.asdict` form) and start it; a pipeline already planned (a
    message delivered twice) is left as it is. One that gets no pipeline file is kept
    `skipped` with the reason when `keep_ignored`, else deleted. A child pipeline (recorded by
    its `trigger:` job's start) is planned from its parent, without `trigger`."""
    if trigger is not None and not isinstance(trigger, Trigger):
        trigger = trigger_from_dict(trigger)
    with services.database.transaction() as session:
        pipeline = get_pipeline(session=session, pipeline_id=pipeline_id)
        if pipeline is None:
            raise NotFoundError(f"pipeline {pipeline_id} does not exist")
        repository = _repository(session, pipeline.repository_id)
        planned_before = get_pipeline_plan(session=session, pipeline_id=pipeline_id) is not None
    if planned_before or pipeline.status != "created":
        return TriggerOutcome(pipeline)
    if pipeline.parent_job_id is not None:
        return TriggerOutcome(_plan_child(services, pipeline, repository))
    if trigger is None:
        raise ValueError(f"pipeline {pipeline_id} is no child pipeline: its trigger is needed")
    try:
        with (
            RepositoryMirror(
                services.settings.data_dir, name=repository.name, clone_url=repository.clone_url
            ) as mirror,
            include_fetcher(services.settings) as remote,
        ):
            planned = plan_trigger(
                trigger,
                mirror,
                pipeline_id=pipeline_id,
                default_branch=repository.default_branch,
                variables=tuple((variables or {}).items()),
                source=source,
                server_url=services.settings.gitlab_url,
                remote=remote,
            )
    except MirrorError as exc:
        return TriggerOutcome(_fail_pipeline(services, pipeline_id, str(exc)))
    return _record_planned(services, pipeline_id, planned, delivery_row_id, keep_ignored)


def trigger_from_dict(data: Mapping[str, Any]) -> Trigger:
    """The `Trigger` whose `dataclasses.asdict` form (through JSON) is `data`."""
    values = dict(data)
    request = values.get("merge_request")
    if request is not None:
        values["merge_request"] = MergeRequest(**request)
    if values.get("changed_files") is not None:
        values["changed_files"] = tuple(values["changed_files"])
    return Trigger(**values)


def create_pipeline_for_ref(
    *,
    services: Services,
    repository_id: int,
    ref: str,
    variables: Mapping[str, str] | None = None,
    source: str = "api",
) -> PipelineRead:
    """Run the pipeline of a branch or tag's current commit, asked for by hand (`api`, `web`).

    Raises NotFoundError for an unknown repository, PipelineNotCreatedError when the ref does
    not exist, its commit has no pipeline file or `workflow: rules` refuse it,
    RepositoryUnreachableError when the clone URL cannot be read.
    """
    if source not in MANUAL_SOURCES:
        raise ValueError(f"source must be one of {MANUAL_SOURCES}, not {source!r}")
    with services.database.transaction() as session:
        repository = _repository(session, repository_id)
    full_ref, sha = _resolve_ref(repository, ref)
    is_tag = full_ref.startswith("refs/tags/")
    trigger = Trigger(
        provider=repository.provider.value,
        delivery_id=f"{source}:{utcnow().isoformat()}",
        event=source,
        kind="tag_push" if is_tag else "push",
        ref=full_ref,
        branch=None if is_tag else ref,
        tag=ref if is_tag else None,
        sha=sha,
        before_sha=ZERO_SHA,
        fetch_ref=full_ref,
        message="",
        author="",
        timestamp="",
        repository=repository.name,
        clone_url=repository.clone_url,
        default_branch=repository.default_branch,
        changed_files=None,
    )
    outcome = create_pipeline_from_trigger(
        services=services,
        repository_id=repository_id,
        trigger=trigger,
        variables=variables,
        source=source,
    )
    if outcome.pipeline is None:
        raise PipelineNotCreatedError(
            f"no pipeline for {ref} ({sha[:12]}) of {repository.name}: {outcome.ignored}"
        )
    return outcome.pipeline


def _repository(session: Session, repository_id: int) -> RepositoryRead:
    repository = get_repository(session=session, repository_id=repository_id)
    if repository is None:
        raise NotFoundError(f"repository {repository_id} does not exist")
    return repository


def pipeline_of_trigger(
    repository_id: int,
    trigger: Trigger,
    variables: Mapping[str, str] | None = None,
    source: str | None = None,
) -> PipelineCreate:
    """The pipeline row (status `created`) a verified `trigger` records."""
    name, _, email = trigger.author.partition(" <")
    request = trigger.merge_request
    facts: dict[str, Any] = {
        "provider": trigger.provider,
        "event": trigger.event,
        "kind": trigger.kind,
        "fetch_ref": trigger.fetch_ref,
        "from_fork": bool(request and request.from_fork),
    }
    if request is not None:
        facts["merge_request"] = {
            "iid": request.iid,
            "source_branch": request.source_branch,
            "target_branch": request.target_branch,
            "source_repository": request.source_repository,
        }
    return PipelineCreate(
        repository_id=repository_id,
        source=source or ("merge_request_event" if request is not None else "push"),
        ref=(trigger.tag or trigger.branch or trigger.ref)[:255],
        tag=trigger.tag is not None,
        sha=trigger.sha,
        before_sha=trigger.before_sha,
        message=trigger.message,
        author_name=name[:255],
        author_email=email.rstrip(">")[:255],
        delivery_id=trigger.delivery_id[:255],
        variables=dict(variables or {}),
        trigger=facts,
    )


def _resolve_ref(repository: RepositoryRead, ref: str) -> tuple[str, str]:
    """The full name and commit of the branch (else tag) `ref` of the repository, by ls-remote."""
    if not ref or ref.startswith(("-", "/")) or ".." in ref or not _REF_NAME.match(ref):
        raise PipelineNotCreatedError(f"{ref!r} is not a branch or tag name")
    url = repository.clone_url
    if url.startswith("-") or url.lower().startswith(("ext::", "fd::")):
        raise RepositoryUnreachableError(f"clone URL {shown_url(url)!r} is refused")
    runner = git.Git()
    runner.update_environment(**GIT_ENV)
    try:
        out = str(
            runner.ls_remote(
                url,
                f"refs/heads/{ref}",
                f"refs/tags/{ref}",
                f"refs/tags/{ref}^{{}}",
                kill_after_timeout=LS_REMOTE_TIMEOUT,
            )
        )
    except git.GitCommandError as exc:
        raise RepositoryUnreachableError(
            f"cannot list the refs of {shown_url(url)}: {str(exc.stderr or exc).strip()}"
        ) from None
    found: dict[str, str] = {}
    for line in out.splitlines():
        sha, _, name = line.partition("\t")
        found[name.strip()] = sha.strip()
    branch = f"refs/heads/{ref}"
    if branch in found:
        return branch, found[branch]
    tag = f"refs/tags/{ref}"
    if tag in found:
        return tag, found.get(tag + "^{}", found[tag])
    raise PipelineNotCreatedError(
        f"{repository.name} has no branch or tag named {ref!r}; push it first"
    )


def _fail_pipeline(services: Services, pipeline_id: int, reason: str) -> PipelineRead:
    with services.database.transaction() as session:
        lock_pipeline(session=session, pipeline_id=pipeline_id)
        set_pipeline_status(
            session=session, pipeline_id=pipeline_id, status="failed", reason=reason
        )
        _note_status(session, pipeline_id, "failed")
        found = get_pipeline(session=session, pipeline_id=pipeline_id)
    _dispatch(services, [], session)
    assert found is not None
    return found


def _record_planned(
    services: Services,
    pipeline_id: int,
    planned: PlannedTrigger,
    delivery_row_id: int | None,
    keep_ignored: bool,
) -> TriggerOutcome:
    if planned.error is not None:
        reason = "\n".join(str(problem) for problem in planned.error.problems)
        return TriggerOutcome(_fail_pipeline(services, pipeline_id, reason))
    the_plan = planned.plan
    ignored = None
    if the_plan is None:
        ignored = f"no pipeline file (.kapal.yml or .gitlab-ci.yml) at {planned.trigger.sha[:12]}"
    elif not the_plan.created:
        ignored = f"workflow: rules create no pipeline ({the_plan.skip_reason})"
    if ignored is not None or the_plan is None:
        kept = None
        with services.database.transaction() as session:
            if keep_ignored:
                set_pipeline_status(
                    session=session, pipeline_id=pipeline_id, status="skipped", reason=ignored
                )
                kept = get_pipeline(session=session, pipeline_id=pipeline_id)
            else:
                delete_pipeline(session=session, pipeline_id=pipeline_id)
            if delivery_row_id is not None:
                finish_delivery(
                    session=session,
                    id=delivery_row_id,
                    outcome=f"ignored: {ignored}",
                    pipeline_id=pipeline_id if keep_ignored else None,
                )
        return TriggerOutcome(kept, ignored)
    wake: list[float] = []
    with services.database.transaction() as session:
        lock_pipeline(session=session, pipeline_id=pipeline_id)
        if get_pipeline_plan(session=session, pipeline_id=pipeline_id) is not None:
            # planned meanwhile (its plan request sent again, `web.hooks.lost_plans`)
            return TriggerOutcome(get_pipeline(session=session, pipeline_id=pipeline_id))
        record_plan(session=session, pipeline_id=pipeline_id, plan=the_plan)
        started = _advance_locked(session, pipeline_id, wake)
        recorded = get_pipeline(session=session, pipeline_id=pipeline_id)
    _dispatch(services, started, session)
    _wake_later(services, pipeline_id, wake)
    assert recorded is not None
    cancel_redundant(services=services, pipeline=recorded)
    return TriggerOutcome(recorded)


REDUNDANT_SOURCES = frozenset({"push", "api", "web", "merge_request_event"})
UNFINISHED = ("created", "pending", "running", "scheduled", "manual")


def cancel_redundant(*, services: Services, pipeline: PipelineRead) -> list[int]:
    """GitLab's auto-cancel of redundant pipelines: a new pipeline for a ref stops the older
    unfinished pipelines of that ref at another commit, as each older pipeline's
    `workflow: auto_cancel: on_new_commit` says:

    - `conservative` (the default): the whole pipeline, unless a job that is not
      `interruptible: true` has started (a job not started is safe to cancel);
    - `interruptible`: only its `interruptible` jobs, started or not;
    - `none`: nothing.

    Returns the ids of the pipelines something was canceled in. Never raises (logged): the new
    pipeline runs all the same.
    """
    if pipeline.source not in REDUNDANT_SOURCES:
        return []
    try:
        with services.database.transaction() as session:
            older = list(
                session.scalars(
                    select(PipelineRow.id)
                    .where(
                        PipelineRow.repository_id == pipeline.repository_id,
                        PipelineRow.ref == pipeline.ref,
                        PipelineRow.tag.is_(pipeline.tag),
                        PipelineRow.id < pipeline.id,
                        PipelineRow.sha != pipeline.sha,
                        PipelineRow.status.in_(UNFINISHED),
                    )
                    .order_by(PipelineRow.id)
                )
            )
        return [old for old in older if _cancel_if_redundant(services, old, pipeline.id)]
    except Exception:
        log.exception("cannot auto-cancel the pipelines pipeline %s makes redundant", pipeline.id)
        return []


def _cancel_if_redundant(services: Services, pipeline_id: int, newer: int) -> bool:
    wake: list[float] = []
    with services.database.transaction() as session:
        lock_pipeline(session=session, pipeline_id=pipeline_id)
        plan = _plan(session, pipeline_id)
        if plan is None or plan.auto_cancel_on_new_commit == "none":
            return False
        known = {job.name for job in plan.jobs}
        jobs = {n: j for n, j in _current_jobs(session, pipeline_id).items() if n in known}
        unfinished = [j for j in jobs.values() if j.status not in job_rows.FINISHED_STATUSES]
        if plan.auto_cancel_on_new_commit == "interruptible":
            chosen = [j for j in unfinished if plan.job(j.name).interruptible]
        elif any(
            j.started_at is not None and not plan.job(j.name).interruptible for j in jobs.values()
        ):
            return False
        else:
            chosen = unfinished
        if not chosen:
            return False
        for job in chosen:
            request_job_cancel(session=session, job_id=job.id)
        started = _advance_locked(session, pipeline_id, wake)
        whole = len(chosen) == len(unfinished)
        if whole:  # with the child pipelines running on by themselves
            for child in unfinished_children(session=session, pipeline_id=pipeline_id):
                _note(session, CHILDREN_TO_CANCEL, child)
        set_pipeline_status(
            session=session,
            pipeline_id=pipeline_id,
            status=_stored_status(session, pipeline_id),
            reason=(
                f"auto-canceled: pipeline #{newer} for the same ref is newer"
                if whole
                else f"interruptible jobs auto-canceled: pipeline #{newer} for the same ref "
                "is newer"
            ),
        )
        freed = _freed_groups(session, pipeline_id)
    _dispatch(services, started, session)
    _wake_later(services, pipeline_id, wake)
    _wake_resource_waiters(services, freed)
    return True


def _stored_status(session: Session, pipeline_id: int) -> str:
    """The pipeline's status as stored now."""
    found = get_pipeline(session=session, pipeline_id=pipeline_id)
    assert found is not None
    return found.status


# -- advancing -------------------------------------------------------------------------------


def advance(*, services: Services, pipeline_id: int) -> list[int]:
    """Take every scheduling decision the pipeline's job statuses allow now; return the ids of
    the jobs made pending (already sent to the dispatcher)."""
    wake: list[float] = []
    with services.database.transaction() as session:
        lock_pipeline(session=session, pipeline_id=pipeline_id)
        started = _advance_locked(session, pipeline_id, wake, rearm=True)
    _dispatch(services, started, session)
    _wake_later(services, pipeline_id, wake)
    return started


def _current_jobs(session: Session, pipeline_id: int) -> dict[str, JobRead]:
    return {
        job.name: job
        for job in list_jobs(session=session, pipeline_id=pipeline_id, include_retried=False)
    }


def _plan(session: Session, pipeline_id: int) -> Plan | None:
    data = get_pipeline_plan(session=session, pipeline_id=pipeline_id)
    return None if data is None else Plan.from_dict(data)


def _states(plan: Plan, jobs: Mapping[str, JobRead]) -> dict[str, JobState]:
    states: dict[str, JobState] = {}
    for job in plan.runnable_jobs():
        row = jobs.get(job.name)
        if row is None:
            continue
        status = JobStatus(row.status)
        allowed = status == JobStatus.FAILED and failure_allowed(job, row.exit_code)
        states[job.name] = JobState(status, allowed)
    return states


def _advance_locked(
    session: Session, pipeline_id: int, wake: list[float] | None = None, *, rearm: bool = False
) -> list[int]:
    """`advance` inside a transaction that holds the pipeline's lock; the jobs made pending.

    Appends to `wake` the delays after which the pipeline must be advanced again for its
    scheduled jobs: each job made scheduled now, and with `rearm` (a delayed advance) the
    earliest scheduled job not due yet.
    """
    pipeline = get_pipeline(session=session, pipeline_id=pipeline_id)
    if pipeline is None:
        raise NotFoundError(f"pipeline {pipeline_id} does not exist")
    plan = _plan(session, pipeline_id)
    if plan is None:
        return []
    jobs = _current_jobs(session, pipeline_id)
    states = _states(plan, jobs)
    due_at = _due_times(plan, jobs, pipeline.created_at)
    now = utcnow()
    due = frozenset(name for name, when in due_at.items() if when <= now)
    wake = [] if wake is None else wake
    started: list[int] = []
    holders: dict[str, tuple[int, str]] | None = None
    triggers = child_triggers(plan)
    for step in next_steps(plan, states, ScheduleOptions(play_hint=PLAY_HINT, due=due)):
        row = jobs.get(step.job)
        if row is None:
            continue
        group = plan.job(step.job).resource_group if step.status == JobStatus.PENDING else None
        if group:
            if holders is None:
                holders = _resource_holders(session, pipeline.repository_id, pipeline_id)
            if group in holders:
                _wait_for_resource(session, row, group, holders[group])
                continue
        if step.status == JobStatus.PENDING and step.job in triggers:
            # no worker runs a trigger job: it starts its child pipeline (after the commit)
            if _start_downstream(session, pipeline, row.id, {row.status}):
                states[step.job] = JobState(JobStatus.RUNNING)
                if group:
                    _now_held(session, pipeline.repository_id, group, (pipeline_id, step.job))
            continue
        if job_rows.set_job_status(
            session=session,
            job_id=row.id,
            status=step.status.value,
            reason=step.reason,
            only_from={row.status},  # created, or scheduled
        ):
            states[step.job] = JobState(step.status)
            if step.status == JobStatus.PENDING:
                started.append(row.id)
                if group:
                    _now_held(session, pipeline.repository_id, group, (pipeline_id, step.job))
            elif step.status == JobStatus.SCHEDULED:
                wake.append(start_delay(plan.job(step.job)))
    if rearm:
        waiting = [
            (when - now).total_seconds()
            for name, when in due_at.items()
            if states[name].status == JobStatus.SCHEDULED and name not in due
        ]
        wake.extend(sorted(waiting)[:1])
    stop = auto_cancel_reason(plan, states)
    if stop is not None:
        _auto_cancel(session, jobs, states, stop)
    if triggers:  # a running trigger job asked to stop stops its child pipeline
        for child in unfinished_children(session=session, pipeline_id=pipeline_id, stopping=True):
            _note(session, CHILDREN_TO_CANCEL, child)
    status = pipeline_status(plan, states).value
    if status != pipeline.status:
        set_pipeline_status(
            session=session, pipeline_id=pipeline_id, status=status, reason=pipeline.reason
        )
        if pipeline.parent_job_id is None:  # a child pipeline's status is its trigger job's
            _note_status(session, pipeline_id, status)
        elif status in job_rows.FINISHED_STATUSES:
            _note(session, CHILDREN_ENDED, pipeline_id)
        elif pipeline.status in job_rows.FINISHED_STATUSES:  # an ended child retried
            started += _wait_again_for_child(session, pipeline, pipeline.parent_job_id)
    return started


WAITING_FOR_RESOURCE = "waiting for resource_group {group} ("


def _resource_holders(
    session: Session, repository_id: int, pipeline_id: int
) -> dict[str, tuple[int, str]]:
    """The repository's resource groups held by a pending or running job of another pipeline:
    group -> (pipeline id, job name). Locks the repository until the transaction ends, so no
    other pipeline takes a group between this look and the caller's decision."""
    lock_repository(session=session, repository_id=repository_id)
    holders: dict[str, tuple[int, str]] = {}
    plans: dict[int, Plan | None] = {}
    for other, name in job_rows.busy_jobs_of_repository(
        session=session, repository_id=repository_id, except_pipeline=pipeline_id
    ):
        if other not in plans:
            plans[other] = _plan(session, other)
        plan = plans[other]
        known = {job.name for job in plan.jobs} if plan is not None else set()
        group = plan.job(name).resource_group if plan is not None and name in known else None
        if group:
            holders.setdefault(group, (other, name))
    return holders


def _waiting_reason(group: str, holder: tuple[int, str]) -> str:
    return WAITING_FOR_RESOURCE.format(group=group) + (
        f"held by pipeline {holder[0]} job {holder[1]})"
    )


def _now_held(session: Session, repository_id: int, group: str, holder: tuple[int, str]) -> None:
    """A job took the resource group (the repository locked): the jobs waiting for it say so."""
    job_rows.rename_waits(
        session=session,
        repository_id=repository_id,
        reason=WAITING_FOR_RESOURCE.format(group=group),
        new_reason=_waiting_reason(group, holder),
    )


def _wait_for_resource(session: Session, row: JobRead, group: str, holder: tuple[int, str]) -> None:
    """Leave a job that may start `created` (or `scheduled`) while another pipeline's job holds
    its resource group, saying which; it is advanced when the group frees up."""
    reason = _waiting_reason(group, holder)
    if row.reason != reason:
        job_rows.set_job_status(
            session=session,
            job_id=row.id,
            status=row.status,
            reason=reason,
            only_from={row.status},
        )


def _freed_groups(session: Session, pipeline_id: int) -> tuple[int, list[str]]:
    """The pipeline's repository, and the resource groups of its finished jobs that none of
    its jobs holds now: what its last changes may have freed for other pipelines."""
    plan = _plan(session, pipeline_id)
    if plan is None or not any(job.resource_group for job in plan.runnable_jobs()):
        return 0, []
    repository_id = _repository_of(session, pipeline_id)
    jobs = _current_jobs(session, pipeline_id)
    ended: set[str] = set()
    held: set[str] = set()
    for job in plan.runnable_jobs():
        row = jobs.get(job.name)
        if not job.resource_group or row is None:
            continue
        if row.status in ("pending", "running"):
            held.add(job.resource_group)
        elif row.status in job_rows.FINISHED_STATUSES:
            ended.add(job.resource_group)
    return repository_id, sorted(ended - held)


def _wake_resource_waiters(services: Services, freed: tuple[int, Sequence[str]]) -> None:
    """After a commit that may have freed resource groups: advance, for each, the oldest
    pipeline of the repository with a job waiting for it (which takes it if it is free)."""
    repository_id, groups = freed
    for group in groups:
        try:
            with services.database.transaction() as session:
                waiting = job_rows.oldest_pipeline_waiting(
                    session=session,
                    repository_id=repository_id,
                    reason=WAITING_FOR_RESOURCE.format(group=group),
                )
            if waiting is not None:
                advance(services=services, pipeline_id=waiting)
        except Exception:  # the waiter is advanced again by the next worker start
            log.exception("cannot start the job waiting for resource_group %s", group)


def _due_times(plan: Plan, jobs: Mapping[str, JobRead], created: datetime) -> dict[str, datetime]:
    """When each scheduled job is due: `start_in` after the last job it waits for finished (it
    was scheduled then), or after the pipeline's creation when it waits for none."""
    due: dict[str, datetime] = {}
    for name, row in jobs.items():
        if row.status != JobStatus.SCHEDULED.value:
            continue
        ends = [
            _aware(jobs[up].finished_at)
            for up in plan.job(name).waits_for
            if up in jobs and jobs[up].finished_at is not None
        ]
        since = max(ends, default=_aware(created))
        due[name] = since + timedelta(seconds=start_delay(plan.job(name)))
    return due


def _aware(moment: datetime | None) -> datetime:
    """`moment` as an aware UTC datetime (SQLite gives naive ones)."""
    assert moment is not None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _auto_cancel(
    session: Session, jobs: Mapping[str, JobRead], states: dict[str, JobState], reason: str
) -> None:
    """`workflow: auto_cancel: on_job_failure: all`: cancel the pending jobs, ask the running
    ones' workers to stop them (they watch `cancel_requested`)."""
    for name, state in list(states.items()):
        row = jobs.get(name)
        if row is None or row.cancel_requested:
            continue
        if state.status == JobStatus.PENDING:
            job_rows.set_job_status(
                session=session,
                job_id=row.id,
                status=JobStatus.CANCELED.value,
                reason=reason,
                only_from={JobStatus.PENDING.value},
            )
            states[name] = JobState(JobStatus.CANCELED)
        elif state.status == JobStatus.RUNNING:
            request_job_cancel(session=session, job_id=row.id)


def _wake_later(services: Services, pipeline_id: int, delays: Sequence[float]) -> None:
    """Have the pipeline advanced after each delay (a second more: its job is then due); a
    broker that is down leaves it for the next worker start (`requeue_pending`)."""
    for delay in sorted(set(delays)):
        try:
            services.dispatcher.advance_later(pipeline_id, max(0.0, delay) + 1.0)
        except Exception:
            log.exception("cannot schedule pipeline %s's delayed jobs", pipeline_id)


def _dispatch(services: Services, job_ids: Sequence[int], session: Session | None = None) -> None:
    """Send the jobs to the workers; a broker that is down leaves them pending, for
    `requeue_pending` (run at every worker start) to send again. Then have the pipeline
    statuses the committed `session` changed reported to the git host (`web.statuses`)."""
    if job_ids:
        try:
            services.dispatcher.run_jobs(job_ids)
        except Exception:
            log.exception("cannot send jobs %s to the workers; they stay pending", list(job_ids))
    changes: dict[int, str] = session.info.pop(STATUS_CHANGES, {}) if session else {}
    report = getattr(services.dispatcher, "commit_status", None)
    for pipeline_id, status in changes.items():
        if report is None:
            break
        try:
            report(pipeline_id, status)
        except Exception:  # a status is never worth failing the pipeline for
            log.exception("cannot send pipeline %s's commit status", pipeline_id)
    if session is not None:
        _downstream_work(services, session)


STATUS_CHANGES = "kapal.pipeline_statuses"


def _note_status(session: Session, pipeline_id: int, status: str) -> None:
    """Keep, on the session, that the pipeline's status changed (reported after the commit)."""
    changes: dict[int, str] = session.info.setdefault(STATUS_CHANGES, {})
    changes[pipeline_id] = status


def requeue_pending(*, services: Services, older_than: float = 30.0) -> list[int]:
    """Send again the jobs pending for more than `older_than` seconds (a message lost with a
    broker that went down); a job whose message was not lost is not run twice (the claim).
    Pipelines with scheduled (delayed) jobs are advanced, which starts the due ones and sends
    a delayed advance for the others, and so are those with a job waiting for a resource group
    (in case the advance that should have started it was lost)."""
    cutoff = utcnow() - timedelta(seconds=older_than)
    with services.database.transaction() as session:
        ids = list(
            session.scalars(
                select(Job.id).where(
                    Job.status == "pending", Job.retried.is_(False), Job.queued_at < cutoff
                )
            )
        )
    _dispatch(services, ids)
    with services.database.transaction() as session:
        waiting = list(
            session.scalars(
                select(Job.pipeline_id)
                .where(
                    (Job.status == JobStatus.SCHEDULED.value)
                    | (
                        (Job.status == JobStatus.CREATED.value)
                        & Job.reason.startswith("waiting for resource_group ")
                    ),
                    Job.retried.is_(False),
                )
                .distinct()
            )
        )
    for pipeline_id in waiting:
        advance(services=services, pipeline_id=pipeline_id)
    recover_children(services=services, older_than=older_than, once=False)
    return ids


def recover_children(*, services: Services, older_than: float, once: bool = True) -> list[int]:
    """Send again the plan requests of child pipelines still unplanned `older_than` seconds
    after their trigger job started (with `once`, each only once whoever looks: a worker's
    heartbeat; a worker starting sends them all), and end the trigger jobs whose child ended
    meanwhile; returns the child pipelines acted on. Planning twice records one plan."""
    cutoff = utcnow() - timedelta(seconds=older_than)
    with services.database.transaction() as session:
        unplanned, ended = stuck_children(session=session, before=cutoff, once=once)
    for child in unplanned:
        _send_child_to_plan(services, child)
    for child in ended:
        _end_trigger_job(services, child)
    return unplanned + ended


# -- a job's end -----------------------------------------------------------------------------


def finish_job(*, services: Services, job_id: int, end: JobEnd) -> list[int]:
    """Record how a running job attempt ended, retry it as its `retry:` says, advance its
    pipeline; return the jobs made pending (dispatched). A job no longer running (canceled
    before it started) keeps its status."""
    wake: list[float] = []
    with services.database.transaction() as session:
        job = _job(session, job_id)
        lock_pipeline(session=session, pipeline_id=job.pipeline_id)
        plan = _plan(session, job.pipeline_id)
        started: list[int] = []
        status = end.status.value
        reason = end.reason
        again = (
            plan is not None
            and end.status == JobStatus.FAILED
            and job.name in {j.name for j in plan.runnable_jobs()}
            and retry_wanted(
                plan.job(job.name),
                attempt=job.attempt,
                exit_code=end.exit_code,
                failure_kind=end.failure_kind,
            )
        )
        if again:
            reason = f"{reason}; retrying (retry: of the job)"
        changed = job_rows.set_job_status(
            session=session,
            job_id=job_id,
            status=status,
            reason=reason,
            exit_code=end.exit_code,
            only_from={"running"},
        )
        if changed:  # its artifacts expire counting from now, its end (`web.artifact_expiry`)
            seconds = job_expire_seconds(plan, job.name, services.settings)
            stamp_artifacts_expiry(session=session, job_id=job_id, seconds=seconds)
        if changed and again:
            new = job_rows.retry_job(session=session, job_id=job_id, status="pending")
            started += _for_workers(session, job.pipeline_id, [new.id])
        started += _advance_locked(session, job.pipeline_id, wake)
        freed = _freed_groups(session, job.pipeline_id)
    _dispatch(services, started, session)
    _wake_later(services, job.pipeline_id, wake)
    _wake_resource_waiters(services, freed)
    return started


def _job(session: Session, job_id: int) -> JobRead:
    job = get_job(session=session, job_id=job_id)
    if job is None:
        raise NotFoundError(f"job {job_id} does not exist")
    return job


# -- what people do --------------------------------------------------------------------------


def cancel_pipeline(*, services: Services, pipeline_id: int) -> PipelineDetail:
    """Cancel a pipeline: jobs not started are canceled at once, running ones are stopped by
    their workers (within ~2 s); returns the pipeline as it is now."""
    wake: list[float] = []
    with services.database.transaction() as session:
        request_pipeline_cancel(session=session, pipeline_id=pipeline_id)
        started = _advance_locked(session, pipeline_id, wake)
        for child in unfinished_children(session=session, pipeline_id=pipeline_id):
            _note(session, CHILDREN_TO_CANCEL, child)  # those running on by themselves too
        detail = get_pipeline_detail(session=session, pipeline_id=pipeline_id)
        freed = _freed_groups(session, pipeline_id)
    _dispatch(services, started, session)
    _wake_later(services, pipeline_id, wake)
    _wake_resource_waiters(services, freed)
    assert detail is not None
    return detail


def cancel_job(*, services: Services, job_id: int) -> JobRead:
    """Cancel one job (stopped by its worker if it runs); the jobs after it are canceled too."""
    wake: list[float] = []
    with services.database.transaction() as session:
        job = _job(session, job_id)
        lock_pipeline(session=session, pipeline_id=job.pipeline_id)
        request_job_cancel(session=session, job_id=job_id)
        started = _advance_locked(session, job.pipeline_id, wake)
        for child in unfinished_children(
            session=session, pipeline_id=job.pipeline_id, job_ids=[job_id]
        ):
            _note(session, CHILDREN_TO_CANCEL, child)
        now = _job(session, job_id)
        freed = _freed_groups(session, job.pipeline_id)
    _dispatch(services, started, session)
    _wake_later(services, job.pipeline_id, wake)
    _wake_resource_waiters(services, freed)
    return now


def play_job(*, services: Services, job_id: int, who: str) -> JobRead:
    """Start a manual job waiting to be played, or a delayed one waiting for its `start_in`
    (GitLab's "run now"); ConflictError when it is neither `manual` nor `scheduled`."""
    wake: list[float] = []
    with services.database.transaction() as session:
        job = _job(session, job_id)
        _lock_with_ancestors(session, job.pipeline_id)
        group = _take_group_to_play(session, job)
        if not job_rows.set_job_status(
            session=session,
            job_id=job_id,
            status="pending",
            reason=f"played by {who}"[:500],
            only_from={"manual", "scheduled"},
        ):
            current = _job(session, job_id)
            raise ConflictError(
                f"job {current.name!r} is {current.status}; only a manual job waiting to be "
                "played or a delayed one waiting to start can be played (retry a finished one "
                "instead)"
            )
        session.execute(update(Job).where(Job.id == job_id).values(played_by=who[:500]))
        if group:
            _now_held(
                session,
                _repository_of(session, job.pipeline_id),
                group,
                (job.pipeline_id, job.name),
            )
        started = _for_workers(session, job.pipeline_id, [job_id])
        started += _advance_locked(session, job.pipeline_id, wake)
        now = _job(session, job_id)
    _dispatch(services, started, session)
    _wake_later(services, job.pipeline_id, wake)
    return now


def _repository_of(session: Session, pipeline_id: int) -> int:
    pipeline = get_pipeline(session=session, pipeline_id=pipeline_id)
    if pipeline is None:
        raise NotFoundError(f"pipeline {pipeline_id} does not exist")
    return pipeline.repository_id


def _take_group_to_play(session: Session, job: JobRead) -> str | None:
    """The resource group a job being played takes (None: it has none); ConflictError while
    another job of the repository holds it (the repository locked until the transaction ends)."""
    plan = _plan(session, job.pipeline_id)
    groups = {} if plan is None else {j.name: j.resource_group for j in plan.jobs}
    group = groups.get(job.name)
    if not group:
        return None
    holders = _resource_holders(session, _repository_of(session, job.pipeline_id), job.pipeline_id)
    for name, row in _current_jobs(session, job.pipeline_id).items():
        if name != job.name and row.status in ("pending", "running") and groups.get(name) == group:
            holders.setdefault(group, (job.pipeline_id, name))
    if group in holders:
        pipeline_id, name = holders[group]
        raise ConflictError(
            f"resource_group {group} is held by pipeline {pipeline_id} job {name}; play "
            f"{job.name!r} once that job has ended"
        )
    return group


RETRYABLE = frozenset({"success", "failed", "canceled"})


def retry_job(*, services: Services, job_id: int) -> JobRead:
    """A new attempt of a finished job (the jobs it skipped are reconsidered); returns it.

    ConflictError when the job is not finished, or was skipped (nothing to retry).
    """
    wake: list[float] = []
    with services.database.transaction() as session:
        job = _job(session, job_id)
        _lock_with_ancestors(session, job.pipeline_id)
        latest = _current_jobs(session, job.pipeline_id).get(job.name, job)
        if latest.status not in RETRYABLE:
            raise ConflictError(
                f"job {job.name!r} is {latest.status}; only a job that ran (success, failed, "
                "canceled) can be retried"
            )
        plan = _plan(session, job.pipeline_id)
        # a played manual job runs again at once; any other is decided by the scheduler
        first = "pending" if job.when == "manual" else "created"
        group = _take_group_to_play(session, job) if first == "pending" else None
        new = job_rows.retry_job(session=session, job_id=latest.id, status=first)
        if group:
            _now_held(
                session,
                _repository_of(session, job.pipeline_id),
                group,
                (job.pipeline_id, job.name),
            )
        if plan is not None:
            _reopen_skipped_after(session, plan, job.pipeline_id, [job.name])
        started = _for_workers(session, job.pipeline_id, [new.id]) if first == "pending" else []
        started += _advance_locked(session, job.pipeline_id, wake)
        now = _job(session, new.id)
    _dispatch(services, started, session)
    _wake_later(services, job.pipeline_id, wake)
    return now


def retry_pipeline(
    *, services: Services, pipeline_id: int, failed_only: bool = True
) -> PipelineDetail:
    """Run a finished pipeline's failed and canceled jobs again (every job unless
    `failed_only`), with the jobs they skipped; ConflictError when there is nothing to retry."""
    wake: list[float] = []
    with services.database.transaction() as session:
        _lock_with_ancestors(session, pipeline_id)
        plan = _plan(session, pipeline_id)
        if plan is None:
            raise ConflictError(
                f"pipeline {pipeline_id} has no plan (its pipeline file was invalid); push a "
                "fixed pipeline file instead"
            )
        jobs = _current_jobs(session, pipeline_id)
        runnable = {job.name for job in plan.runnable_jobs()}
        if any(j.status in ("pending", "running", "scheduled") for j in jobs.values()):
            raise ConflictError(
                f"pipeline {pipeline_id} still runs; cancel it or wait for its end to retry it"
            )
        wanted = {"failed", "canceled"} if failed_only else set(RETRYABLE)
        again = [j for n, j in jobs.items() if n in runnable and j.status in wanted]
        reopen = (
            []
            if failed_only
            else [j for n, j in jobs.items() if n in runnable and j.status in ("skipped", "manual")]
        )
        if not again and not reopen:
            raise ConflictError(f"pipeline {pipeline_id} has no failed or canceled job to retry")
        for job in again:
            job_rows.retry_job(session=session, job_id=job.id, status="created")
        _reopen(session, [j.id for j in reopen], {"skipped", "manual"})
        _reopen_skipped_after(session, plan, pipeline_id, [j.name for j in again])
        started = _advance_locked(session, pipeline_id, wake)
        detail = get_pipeline_detail(session=session, pipeline_id=pipeline_id)
    _dispatch(services, started, session)
    _wake_later(services, pipeline_id, wake)
    assert detail is not None
    return detail


def _reopen(session: Session, job_ids: Iterable[int], from_statuses: Collection[str]) -> None:
    for job_id in job_ids:
        job_rows.set_job_status(
            session=session, job_id=job_id, status="created", reason="", only_from=from_statuses
        )


def _reopen_skipped_after(
    session: Session, plan: Plan, pipeline_id: int, names: Sequence[str]
) -> None:
    """Put the jobs downstream of `names` that the scheduler skipped back to
    `created`, so it decides them again (GitLab's reset of skipped jobs on a retry)."""
    downstream: dict[str, set[str]] = {}
    for upstream, job in plan.edges():
        downstream.setdefault(upstream, set()).add(job)
    seen: set[str] = set()
    todo = list(names)
    while todo:
        for after in downstream.get(todo.pop(), ()):
            if after not in seen:
                seen.add(after)
                todo.append(after)
    jobs = _current_jobs(session, pipeline_id)
    _reopen(session, [jobs[name].id for name in seen if name in jobs], {"skipped"})


# -- child pipelines (`trigger:` jobs) -------------------------------------------------------
#
# A trigger job runs on no worker: when the scheduler would make it pending, it is moved to
# `running` under `DOWNSTREAM_WORKER` and its child pipeline is recorded, in the transaction that
# decided it (a compare-and-set on the job: one child per attempt, whoever advances); after the
# commit the child is sent to be planned at the parent's commit (`plan_recorded_pipeline`). The
# trigger job then succeeds at once, or with `strategy: depend` ends as its child does (the
# child's end, after its commit, finishes it through `finish_job`). A trigger job asked to
# cancel cancels its child; `requeue_pending` picks up what a lost message left.

CHILDREN_TO_PLAN = "kapal.children_to_plan"
CHILDREN_ENDED = "kapal.children_ended"
CHILDREN_TO_CANCEL = "kapal.children_to_cancel"


def child_triggers(plan: Plan) -> frozenset[str]:
    """The jobs of `plan` that start a child pipeline (`trigger: include:`); those with
    `trigger: project` go to a worker, which fails them (they need a GitLab server)."""
    return frozenset(
        job.name
        for job in plan.runnable_jobs()
        if job.trigger is not None and job.trigger.project is None
    )


def _note(session: Session, key: str, pipeline_id: int) -> None:
    """Keep, on the session, a child pipeline to act on once the transaction has committed."""
    session.info.setdefault(key, []).append(pipeline_id)


def _start_downstream(
    session: Session, pipeline: PipelineRead, job_id: int, from_statuses: Collection[str]
) -> bool:
    """Start trigger job `job_id` of `pipeline` (locked): running, no worker, its child pipeline
    recorded and planned after the commit; False when it was not in `from_statuses` any more."""
    if not start_trigger_job(session=session, job_id=job_id, from_statuses=from_statuses):
        return False
    child = create_child_pipeline(session=session, parent=pipeline, job_id=job_id)
    _note(session, CHILDREN_TO_PLAN, child.id)
    return True


def _for_workers(session: Session, pipeline_id: int, job_ids: list[int]) -> list[int]:
    """Of jobs just made pending, those a worker runs: the trigger jobs among them start their
    child pipelines instead (`_start_downstream`)."""
    plan = _plan(session, pipeline_id)
    triggers = child_triggers(plan) if plan is not None else frozenset()
    if not triggers:
        return job_ids
    pipeline = get_pipeline(session=session, pipeline_id=pipeline_id)
    assert pipeline is not None
    kept = []
    for job_id in job_ids:
        if _job(session, job_id).name in triggers:
            _start_downstream(session, pipeline, job_id, {"pending"})
        else:
            kept.append(job_id)
    return kept


def _downstream_work(services: Services, session: Session) -> None:
    """What the committed `session` left for child pipelines: plan the new ones, cancel those
    whose trigger job stops, end the trigger jobs whose child ended. Never raises (logged):
    `requeue_pending` finds what was left undone."""
    work = (
        (CHILDREN_TO_PLAN, _send_child_to_plan),
        (CHILDREN_TO_CANCEL, _cancel_child),
        (CHILDREN_ENDED, _end_trigger_job),
    )
    for key, act in work:
        for child in dict.fromkeys(session.info.pop(key, [])):
            try:
                act(services, child)
            except Exception:
                log.exception("child pipeline %s: %s failed", child, act.__name__)


def _send_child_to_plan(services: Services, child_id: int) -> None:
    """Have a worker plan the child pipeline (as a webhook's pipeline), or plan it here when
    the broker cannot be reached."""
    try:
        services.dispatcher.plan_pipeline(child_id, {})
        return
    except Exception:
        log.exception("cannot send child pipeline %s to be planned; planning it here", child_id)
    plan_recorded_pipeline(services=services, pipeline_id=child_id)


def _plan_child(
    services: Services, child: PipelineRead, repository: RepositoryRead
) -> PipelineRead:
    """Plan a recorded child pipeline at its parent's commit and start it; when it cannot be
    (its files missing or wrong, too deep, an artifact unreadable, no job), it is kept failed or
    skipped with the reason and its trigger job fails saying why."""
    assert child.parent_job_id is not None
    with services.database.transaction() as session:
        job = get_job(session=session, job_id=child.parent_job_id)
        parent = None if job is None else get_pipeline(session=session, pipeline_id=job.pipeline_id)
        data = None if parent is None else get_pipeline_plan(session=session, pipeline_id=parent.id)
        depth = 0 if parent is None else pipeline_depth(session=session, pipeline=parent)
    if job is None or parent is None or data is None:
        return _fail_pipeline(services, child.id, "its trigger job no longer exists")
    if job.status != "running" or job.cancel_requested:
        return _child_not_created(
            services,
            child.id,
            "canceled",
            "canceled before it started",
            JobEnd(JobStatus.CANCELED, reason=f"child pipeline #{child.id} was canceled"),
        )
    parent_plan = Plan.from_dict(data)
    trigger_job = parent_plan.job(job.name)
    assert trigger_job.trigger is not None
    lines: list[str] = []
    planned: PlannedTrigger | None = None
    try:
        with (
            parent_artifacts(services.settings) as artifacts,
            RepositoryMirror(
                services.settings.data_dir, name=repository.name, clone_url=repository.clone_url
            ) as mirror,
            include_fetcher(services.settings) as remote,
        ):
            planned = plan_trigger(
                trigger_of_pipeline(child, repository),
                mirror,
                pipeline_id=child.id,
                default_branch=repository.default_branch,
                source=CHILD_SOURCE,
                server_url=services.settings.gitlab_url,
                remote=remote,
                plan_child=child_planner(
                    trigger_job,
                    parent=parent_plan,
                    parent_id=parent.id,
                    child_id=child.id,
                    depth=depth,
                    artifacts=artifacts,
                    log=lines.append,
                ),
            )
    except (MirrorError, RunnerError) as exc:
        problem = str(exc)
    except Exception as exc:  # kapal's own failure: said, never a trigger job running for good
        log.exception("child pipeline %s: cannot plan it", child.id)
        problem = f"kapal could not plan it: {exc}"
    else:
        error = planned.error
        problem = "\n".join(str(p) for p in error.problems) if error is not None else ""
    if planned is None or planned.plan is None or problem:
        problem = problem or "no pipeline could be planned"
        return _child_not_created(
            services,
            child.id,
            "failed",
            problem,
            JobEnd(
                JobStatus.FAILED,
                reason=f"child pipeline #{child.id} cannot be created: {problem.splitlines()[0]}",
            ),
            lines + [f"kapal: {line}" for line in problem.splitlines()],
        )
    the_plan = planned.plan
    if not the_plan.created or not the_plan.runnable_jobs():
        why = the_plan.skip_reason if not the_plan.created else "its rules leave it no job"
        return _child_not_created(
            services,
            child.id,
            "skipped",
            f"not created: {why}",
            JobEnd(
                JobStatus.FAILED,
                reason=f"the child pipeline is not created: {why} (GitLab fails the trigger "
                "job too)",
            ),
            lines,
        )
    return _start_child(services, child.id, job, trigger_job.trigger, the_plan, lines)


def _start_child(
    services: Services,
    child_id: int,
    job: JobRead,
    spec: TriggerSpec,
    the_plan: Plan,
    lines: list[str],
) -> PipelineRead:
    """Record a child pipeline's plan and forwarded variables, and start it; trigger job `job`
    (`spec` its `trigger:`) succeeds now unless it waits for the child (`strategy: depend`)."""
    wake: list[float] = []
    with services.database.transaction() as session:
        lock_pipeline(session=session, pipeline_id=child_id)
        child = get_pipeline(session=session, pipeline_id=child_id)
        assert child is not None
        if child.status != "created" or get_pipeline_plan(session=session, pipeline_id=child_id):
            return child  # planned (a request sent twice) or canceled meanwhile
        record_plan(session=session, pipeline_id=child_id, plan=the_plan)
        forwarded = {v.name: v.value for v in the_plan.variables if v.source == "trigger"}
        session.execute(
            update(PipelineRow)
            .where(PipelineRow.id == child_id)
            .values(variables=forwarded, reason="")  # not "its plan request sent again"
        )
        count = len(the_plan.runnable_jobs())
        lines = [
            *lines,
            f"kapal: child pipeline #{child_id}: {count} job(s) from {spec.describe()}",
        ]
        append_log(session=session, job_id=job.id, lines=lines)
        started = _advance_locked(session, child_id, wake)
        recorded = get_pipeline(session=session, pipeline_id=child_id)
    _dispatch(services, started, session)
    _wake_later(services, child_id, wake)
    if not spec.depends:
        reason = f"child pipeline #{child_id} created; it runs on (`strategy: depend` would wait)"
        finish_job(services=services, job_id=job.id, end=JobEnd(JobStatus.SUCCESS, reason=reason))
    assert recorded is not None
    return recorded


def _child_not_created(
    services: Services,
    child_id: int,
    status: str,
    reason: str,
    end: JobEnd,
    lines: Sequence[str] = (),
) -> PipelineRead:
    """Keep a child pipeline that will not run `status` with `reason`, and end its trigger job
    with `end` (`lines` added to its log); a child planned meanwhile is left as it is."""
    with services.database.transaction() as session:
        lock_pipeline(session=session, pipeline_id=child_id)
        child = get_pipeline(session=session, pipeline_id=child_id)
        assert child is not None and child.parent_job_id is not None
        unplanned = get_pipeline_plan(session=session, pipeline_id=child_id) is None
        if unplanned:
            set_pipeline_status(session=session, pipeline_id=child_id, status=status, reason=reason)
            if lines:
                append_log(session=session, job_id=child.parent_job_id, lines=list(lines))
        child = get_pipeline(session=session, pipeline_id=child_id)
    assert child is not None and child.parent_job_id is not None
    if unplanned:
        finish_job(services=services, job_id=child.parent_job_id, end=end)
    return child


def _lock_with_ancestors(session: Session, pipeline_id: int) -> None:
    """Lock a pipeline that a retry or a play may reopen, its parent pipelines first (outermost
    first): reopening a child reopens its trigger job (`_wait_again_for_child`), and taking
    every pipeline lock in one order, before any repository lock, keeps two transactions from
    waiting for each other."""
    lineage = [pipeline_id]
    while (pipeline := get_pipeline(session=session, pipeline_id=lineage[-1])) is not None:
        job = (
            None
            if pipeline.parent_job_id is None
            else get_job(session=session, job_id=pipeline.parent_job_id)
        )
        if job is None or job.pipeline_id in lineage:
            break
        lineage.append(job.pipeline_id)
    for each in reversed(lineage):
        lock_pipeline(session=session, pipeline_id=each)


def _wait_again_for_child(session: Session, child: PipelineRead, job_id: int) -> list[int]:
    """Child pipeline `child` ended and now runs again (its jobs retried): its `strategy:
    depend` trigger job `job_id`, if still the current attempt, runs again and ends as the child
    will, with the parent's jobs it skipped reopened (GitLab's status sync of a retried
    downstream pipeline); the jobs this made pending. In the retry's own transaction, so no
    crash leaves the child running under a trigger job that already ended; the retry locked the
    parent before the child (`_lock_with_ancestors`)."""
    job = get_job(session=session, job_id=job_id)
    if job is None:
        return []
    lock_pipeline(session=session, pipeline_id=job.pipeline_id)
    plan = _plan(session, job.pipeline_id)
    trigger = None
    if plan is not None and job.name in {j.name for j in plan.jobs}:
        trigger = plan.job(job.name).trigger
    if plan is None or trigger is None or not trigger.depends:
        return []  # without `strategy: depend` the trigger job's end does not follow the child
    if not wait_again_for_child(session=session, job_id=job.id):
        return []  # retried itself since (a newer child), canceled, or not started by kapal
    append_log(
        session=session,
        job_id=job.id,
        lines=[f"kapal: child pipeline #{child.id} runs again (retried); waiting for its end"],
    )
    _reopen_skipped_after(session, plan, job.pipeline_id, [job.name])
    # a reopened job waits for this trigger job, so none of the parent's is made scheduled here
    return _advance_locked(session, job.pipeline_id)


def _end_trigger_job(services: Services, child_id: int) -> None:
    """A child pipeline ended: its trigger job, if it still runs (`strategy: depend`), ends as
    the child did."""
    with services.database.transaction() as session:
        child = get_pipeline(session=session, pipeline_id=child_id)
        if child is None or child.parent_job_id is None:
            return
        job = get_job(session=session, job_id=child.parent_job_id)
        if child.status not in job_rows.FINISHED_STATUSES or job is None:
            return
        if job.status != "running" or job.worker != DOWNSTREAM_WORKER:
            return
        failed = [
            row.name
            for row in list_jobs(session=session, pipeline_id=child_id, include_retried=False)
            if row.status == "failed" and not row.allow_failure
        ]
    status, reason = mirrored_end(child_id, child.status, failed)
    try:
        with services.database.transaction() as session:
            append_log(session=session, job_id=job.id, lines=[f"kapal: {reason}"])
    except Exception:  # a line of its log is never worth leaving the job running for
        log.exception("trigger job %s: cannot log how its child pipeline ended", job.id)
    finish_job(services=services, job_id=job.id, end=JobEnd(status, reason=reason))


def _cancel_child(services: Services, child_id: int) -> None:
    """Cancel a child pipeline (its trigger job or its parent was canceled), and so its own
    children; one not planned yet is canceled at once, with its trigger job."""
    with services.database.transaction() as session:
        child = get_pipeline(session=session, pipeline_id=child_id)
        planned = get_pipeline_plan(session=session, pipeline_id=child_id) is not None
    if child is None or child.status in job_rows.FINISHED_STATUSES:
        return
    if not planned:
        child = _child_not_created(
            services,
            child_id,
            "canceled",
            "canceled before it started",
            JobEnd(JobStatus.CANCELED, reason=f"child pipeline #{child_id} was canceled"),
        )
        if child.status in job_rows.FINISHED_STATUSES:
            return
    cancel_pipeline(services=services, pipeline_id=child_id)
