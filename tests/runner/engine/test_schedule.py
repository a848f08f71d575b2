"""The scheduler's decisions, table by table, against GitLab's status rules (no threads, no I/O)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.plan import DeploySpec, Job, Need, Plan, RetrySpec
from runner.engine.recorder import JobStatus, PipelineStatus
from runner.engine.schedule import (
    JobState,
    ScheduleOptions,
    Step,
    failure_allowed,
    next_steps,
    pipeline_status,
    retry_wanted,
)
from runner.errors import UnknownJobError
from tests.runner.engine.conftest import job, plan

S = JobStatus
WAIT = ScheduleOptions()
SKIP = ScheduleOptions(held="skip", play_hint="run it with --job {job!r}")


def states(**given: Any) -> dict[str, JobState]:
    """`name=status` or `name=(status, allowed_failure)`."""
    out = {}
    for name, value in given.items():
        status, allowed = value if isinstance(value, tuple) else (value, False)
        out[name] = JobState(status, allowed)
    return out


STAGED = plan(job("compile", "build"), job("unit"), job("lint"), job("publish", "deploy"))

# (id, plan, states, options, expected steps: (job, status, words the reason contains))
CASES: list[tuple[str, Plan, dict[str, JobState], ScheduleOptions, list[tuple[str, S, str]]]] = [
    (
        "a fresh pipeline starts its first stage only",
        STAGED,
        {},
        WAIT,
        [("compile", S.PENDING, "")],
    ),
    (
        "a later stage starts once the earlier one succeeded",
        STAGED,
        states(compile=S.SUCCESS),
        WAIT,
        [("unit", S.PENDING, ""), ("lint", S.PENDING, "")],
    ),
    (
        "nothing moves while an upstream job runs",
        STAGED,
        states(compile=S.RUNNING),
        WAIT,
        [],
    ),
    (
        "a stage waits for every job of the stage before it",
        STAGED,
        states(compile=S.SUCCESS, unit=S.SUCCESS, lint=S.RUNNING),
        WAIT,
        [],
    ),
    (
        "a failure skips the on_success jobs after it, transitively, in one call",
        STAGED,
        states(compile=S.FAILED),
        WAIT,
        [
            ("unit", S.SKIPPED, "compile failed"),
            ("lint", S.SKIPPED, "compile failed"),
            ("publish", S.SKIPPED, "compile failed"),
        ],
    ),
    (
        "a failure allowed to fail does not count",
        STAGED,
        states(compile=(S.FAILED, True)),
        WAIT,
        [("unit", S.PENDING, ""), ("lint", S.PENDING, "")],
    ),
    (
        "on_failure runs after a failure, always runs in any case",
        plan(
            job("compile", "build"),
            job("report", when="on_failure"),
            job("cleanup", when="always"),
        ),
        states(compile=S.FAILED),
        WAIT,
        [("report", S.PENDING, ""), ("cleanup", S.PENDING, "")],
    ),
    (
        "on_failure is skipped when nothing failed",
        plan(job("compile", "build"), job("report", when="on_failure")),
        states(compile=S.SUCCESS),
        WAIT,
        [("report", S.SKIPPED, "when: on_failure, and nothing failed")],
    ),
    (
        "on_failure is skipped when the only failure was allowed",
        plan(job("compile", "build"), job("report", when="on_failure")),
        states(compile=(S.FAILED, True)),
        WAIT,
        [("report", S.SKIPPED, "nothing failed")],
    ),
    (
        "a canceled upstream job cancels the jobs after it, when: always included",
        plan(job("compile", "build"), job("unit"), job("cleanup", when="always")),
        states(compile=S.CANCELED),
        WAIT,
        [
            ("unit", S.CANCELED, "an earlier job was canceled"),
            ("cleanup", S.CANCELED, "an earlier job was canceled"),
        ],
    ),
    (
        "a canceled pipeline cancels every created job and leaves running ones to the driver",
        STAGED,
        states(compile=S.RUNNING),
        ScheduleOptions(canceled=True),
        [
            ("unit", S.CANCELED, "pipeline canceled"),
            ("lint", S.CANCELED, "pipeline canceled"),
            ("publish", S.CANCELED, "pipeline canceled"),
        ],
    ),
    (
        "a manual job waits for a person, with the driver's hint",
        plan(job("compile", "build"), job("release", when="manual", allow_failure=True)),
        states(compile=S.SUCCESS),
        SKIP,
        [("release", S.MANUAL, "run it with --job 'release'")],
    ),
    (
        "a manual job starts with --manual",
        plan(job("release", when="manual", allow_failure=True)),
        {},
        ScheduleOptions(manual=True),
        [("release", S.PENDING, "")],
    ),
    (
        "a manual job named in only starts",
        plan(job("release", when="manual", allow_failure=True)),
        {},
        ScheduleOptions(only=frozenset({"release"})),
        [("release", S.PENDING, "")],
    ),
    (
        "a manual job after a failure is skipped",
        plan(job("compile", "build"), job("release", when="manual", allow_failure=True)),
        states(compile=S.FAILED),
        WAIT,
        [("release", S.SKIPPED, "compile failed")],
    ),
    (
        "a blocking manual job holds later jobs on the server",
        plan(job("gate", "build", when="manual", allow_failure=False), job("unit")),
        states(gate=S.MANUAL),
        WAIT,
        [],
    ),
    (
        "a blocking manual job skips later jobs in kapal run",
        plan(job("gate", "build", when="manual", allow_failure=False), job("unit")),
        states(gate=S.MANUAL),
        SKIP,
        [("unit", S.SKIPPED, "blocked by the manual job gate (run it with --job 'gate')")],
    ),
    (
        "a non-blocking manual job lets later stages run",
        plan(job("gate", "build", when="manual", allow_failure=True), job("unit")),
        states(gate=S.MANUAL),
        WAIT,
        [("unit", S.PENDING, "")],
    ),
    (
        "a played blocking manual job that succeeded releases the jobs it held",
        plan(job("gate", "build", when="manual", allow_failure=False), job("unit")),
        states(gate=S.SUCCESS),
        WAIT,
        [("unit", S.PENDING, "")],
    ),
    (
        "needs start a job before its stage is reached",
        plan(job("compile", "build"), job("slow", "build"), job("unit", needs=["compile"])),
        states(compile=S.SUCCESS, slow=S.RUNNING),
        WAIT,
        [("unit", S.PENDING, "")],
    ),
    (
        "an empty needs starts at once",
        plan(job("compile", "build"), job("lint", needs=[])),
        {},
        WAIT,
        [("compile", S.PENDING, ""), ("lint", S.PENDING, "")],
    ),
    (
        "needs ignore failures outside them",
        plan(job("compile", "build"), job("docs", "build"), job("unit", needs=["compile"])),
        states(compile=S.SUCCESS, docs=S.FAILED),
        WAIT,
        [("unit", S.PENDING, "")],
    ),
    (
        "a need that was skipped skips the job",
        plan(
            job("compile", "build", when="on_failure"),
            job("unit", needs=["compile"]),
        ),
        states(compile=S.SKIPPED),
        WAIT,
        [("unit", S.SKIPPED, "needs compile, which did not run")],
    ),
    (
        "a need on a manual job nobody played skips the job",
        plan(
            job("compile", "build", when="manual", allow_failure=True),
            job("unit", needs=["compile"]),
        ),
        states(compile=S.MANUAL),
        WAIT,
        [("unit", S.SKIPPED, "needs compile, which did not run")],
    ),
    (
        "an optional need that was skipped does not",
        plan(
            job("compile", "build", when="on_failure"),
            job("unit", needs=[Need(job="compile", optional=True)]),
        ),
        states(compile=S.SKIPPED),
        WAIT,
        [("unit", S.PENDING, "")],
    ),
    (
        "a failure far up a needs chain skips the whole chain",
        plan(
            job("a", "build"),
            job("b", needs=["a"]),
            job("c", "deploy", needs=["b"]),
        ),
        states(a=S.FAILED),
        WAIT,
        [("b", S.SKIPPED, "a failed"), ("c", S.SKIPPED, "a failed")],
    ),
    (
        "one job of a resource group at a time",
        plan(
            job("deploy-a", resource_group="prod"),
            job("deploy-b", resource_group="prod"),
            job("free"),
        ),
        {},
        WAIT,
        [("deploy-a", S.PENDING, ""), ("free", S.PENDING, "")],
    ),
    (
        "a busy resource group holds its next job",
        plan(job("deploy-a", resource_group="prod"), job("deploy-b", resource_group="prod")),
        states(**{"deploy-a": S.RUNNING}),
        WAIT,
        [],
    ),
    (
        "a freed resource group starts its next job",
        plan(job("deploy-a", resource_group="prod"), job("deploy-b", resource_group="prod")),
        states(**{"deploy-a": S.FAILED}),
        WAIT,
        [("deploy-b", S.PENDING, "")],
    ),
    (
        "deploy jobs start like the others",
        plan(job("ship", "deploy", deploy=DeploySpec(image="app:1"))),
        {},
        WAIT,
        [("ship", S.PENDING, "")],
    ),
    (
        "jobs outside only are skipped; what the named job waits for runs",
        STAGED,
        {},
        ScheduleOptions(only=frozenset({"unit"})),
        [
            ("compile", S.PENDING, ""),
            ("lint", S.SKIPPED, "not selected for this run"),
            ("publish", S.SKIPPED, "not selected for this run"),
        ],
    ),
    (
        "a stage selection runs that stage and what it waits for",
        STAGED,
        states(compile=S.SUCCESS),
        ScheduleOptions(stage="test"),
        [
            ("unit", S.PENDING, ""),
            ("lint", S.PENDING, ""),
            ("publish", S.SKIPPED, "not selected for this run"),
        ],
    ),
    (
        "jobs the rules left out are not part of the pipeline",
        Plan(
            stages=("build", "test"),
            jobs=(
                Job(name="compile", stage="build", base_name="compile", skip_reason="no rule"),
                Job(name="unit", stage="test", base_name="unit", waits_for=("compile",)),
            ),
        ),
        {},
        WAIT,
        [("unit", S.PENDING, "")],
    ),
    (
        "jobs that already moved are never decided again",
        STAGED,
        states(compile=S.SUCCESS, unit=S.PENDING, lint=S.SKIPPED),
        WAIT,
        [],
    ),
]


@pytest.mark.parametrize(
    ("the_plan", "given", "options", "expected"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_next_steps(
    the_plan: Plan,
    given: dict[str, JobState],
    options: ScheduleOptions,
    expected: list[tuple[str, S, str]],
) -> None:
    steps = next_steps(the_plan, given, options)
    assert [(s.job, s.status) for s in steps] == [(name, status) for name, status, _ in expected]
    for step, (_, _, words) in zip(steps, expected, strict=True):
        assert words in step.reason
        if step.status == S.PENDING:
            assert step.reason == ""


def test_unknown_selection_is_a_clear_error() -> None:
    with pytest.raises(UnknownJobError, match="no job named 'nope'"):
        next_steps(STAGED, {}, ScheduleOptions(only=frozenset({"nope"})))
    with pytest.raises(UnknownJobError, match="no stage named 'qa'; stages: build, test, deploy"):
        next_steps(STAGED, {}, ScheduleOptions(stage="qa"))


TWO = plan(job("compile", "build"), job("unit"))
GATED = plan(job("gate", "build", when="manual", allow_failure=False), job("unit"))
SOFT = plan(job("gate", "build", when="manual", allow_failure=True), job("unit"))

STATUS_CASES: list[tuple[str, Plan, dict[str, JobState], bool, PipelineStatus]] = [
    ("nothing moved yet", TWO, {}, False, PipelineStatus.CREATED),
    ("a job is pending", TWO, states(compile=S.PENDING), False, PipelineStatus.RUNNING),
    ("a job runs", TWO, states(compile=S.RUNNING), False, PipelineStatus.RUNNING),
    ("a job may still start", TWO, states(compile=S.SUCCESS), False, PipelineStatus.RUNNING),
    ("held by a blocking manual job", GATED, states(gate=S.MANUAL), False, PipelineStatus.MANUAL),
    (
        "every job passed",
        TWO,
        states(compile=S.SUCCESS, unit=S.SUCCESS),
        False,
        PipelineStatus.SUCCESS,
    ),
    (
        "a failure allowed to fail",
        TWO,
        states(compile=S.SUCCESS, unit=(S.FAILED, True)),
        False,
        PipelineStatus.SUCCESS,
    ),
    (
        "a failure",
        TWO,
        states(compile=S.FAILED, unit=S.SKIPPED),
        False,
        PipelineStatus.FAILED,
    ),
    (
        "a canceled job",
        TWO,
        states(compile=S.CANCELED, unit=S.CANCELED),
        False,
        PipelineStatus.CANCELED,
    ),
    (
        "a failure outweighs a cancel",
        TWO,
        states(compile=S.FAILED, unit=S.CANCELED),
        False,
        PipelineStatus.FAILED,
    ),
    (
        "canceled after every job passed",
        TWO,
        states(compile=S.SUCCESS, unit=S.SUCCESS),
        True,
        PipelineStatus.CANCELED,
    ),
    (
        "a manual job nobody played does not count",
        SOFT,
        states(gate=S.MANUAL, unit=S.SUCCESS),
        False,
        PipelineStatus.SUCCESS,
    ),
]


@pytest.mark.parametrize(
    ("the_plan", "given", "canceled", "expected"),
    [case[1:] for case in STATUS_CASES],
    ids=[case[0] for case in STATUS_CASES],
)
def test_pipeline_status(
    the_plan: Plan, given: dict[str, JobState], canceled: bool, expected: PipelineStatus
) -> None:
    assert pipeline_status(the_plan, given, canceled=canceled) == expected


LAST_GATE = plan(job("unit", "build"), job("deploy", when="manual", allow_failure=False))


def test_a_blocking_gate_holds_the_pipeline_even_as_its_last_job() -> None:
    """GitLab: a pipeline whose `allow_failure: false` manual job waits is blocked (`manual`),
    whether or not jobs wait behind it; a run that does not wait for gates (`kapal run`) ends
    as its jobs did, and a gate allowed to fail never holds anything."""
    waiting = states(unit=S.SUCCESS, deploy=S.MANUAL)
    assert pipeline_status(LAST_GATE, waiting) == PipelineStatus.MANUAL
    assert pipeline_status(LAST_GATE, waiting, held="skip") == PipelineStatus.SUCCESS
    assert pipeline_status(GATED, states(gate=S.MANUAL), held="skip") == PipelineStatus.MANUAL
    soft = plan(job("unit", "build"), job("deploy", when="manual", allow_failure=True))
    assert pipeline_status(soft, waiting) == PipelineStatus.SUCCESS


@pytest.mark.parametrize(
    ("spec", "attempt", "exit_code", "kind", "expected"),
    [
        (RetrySpec(max=0), 1, 1, "script_failure", False),
        (RetrySpec(max=2), 1, 1, "script_failure", True),
        (RetrySpec(max=2), 2, 1, "script_failure", True),
        (RetrySpec(max=2), 3, 1, "script_failure", False),
        (RetrySpec(max=2, when=("stuck_or_timeout_failure",)), 1, 1, "script_failure", False),
        (
            RetrySpec(max=2, when=("stuck_or_timeout_failure",)),
            1,
            137,
            "stuck_or_timeout_failure",
            True,
        ),
        (RetrySpec(max=1, when=("unknown_failure",)), 1, None, "unknown_failure", True),
        (RetrySpec(max=1, exit_codes=(137,)), 1, 1, "script_failure", False),
        (RetrySpec(max=1, exit_codes=(137,)), 1, 137, "script_failure", True),
        (RetrySpec(max=1, when=()), 1, 1, "runner_system_failure", True),
    ],
)
def test_retry_wanted(
    spec: RetrySpec, attempt: int, exit_code: int | None, kind: str, expected: bool
) -> None:
    the_job = job("unit", retry=spec)
    assert (
        retry_wanted(the_job, attempt=attempt, exit_code=exit_code, failure_kind=kind) == expected
    )


@pytest.mark.parametrize(
    ("fields", "exit_code", "expected"),
    [
        ({}, 1, False),
        ({"allow_failure": True}, 1, True),
        ({"allow_failure": True, "allow_failure_exit_codes": (3,)}, 1, False),
        ({"allow_failure_exit_codes": (3, 4)}, 4, True),
        ({"allow_failure_exit_codes": (3,)}, None, False),
    ],
)
def test_failure_allowed(fields: dict[str, Any], exit_code: int | None, expected: bool) -> None:
    assert failure_allowed(job("unit", **fields), exit_code) == expected


# -- properties over random pipelines -------------------------------------------------------

FINAL = (S.SUCCESS, S.FAILED, S.CANCELED)


@st.composite
def random_plans(draw: st.DrawFn) -> Plan:
    """Up to 8 jobs over 3 stages, each with needs or stage order, any `when`, maybe a group."""
    count = draw(st.integers(min_value=1, max_value=8))
    jobs: list[Job] = []
    for i in range(count):
        stage = draw(st.sampled_from(["build", "test", "deploy"]))
        earlier = [j.name for j in jobs]
        needs = draw(
            st.none() | st.lists(st.sampled_from(earlier), unique=True) if earlier else st.none()
        )
        jobs.append(
            job(
                f"j{i}",
                stage,
                when=draw(st.sampled_from(["on_success", "on_failure", "always", "manual"])),
                allow_failure=draw(st.booleans()),
                resource_group=draw(st.none() | st.just("prod")),
                needs=needs,
            )
        )
    order = {"build": 0, "test": 1, "deploy": 2}
    jobs.sort(key=lambda j: order[j.stage])  # the planner lists jobs stage by stage
    return plan(*(replace(j, needs=_earlier_needs(j, jobs)) for j in jobs))


def _earlier_needs(the_job: Job, jobs: list[Job]) -> tuple[Need, ...] | None:
    """Needs kept only on jobs listed before, so the graph has no cycle."""
    if the_job.needs is None:
        return None
    before = {j.name for j in jobs[: jobs.index(the_job)]}
    return tuple(n for n in the_job.needs if n.job in before)


@settings(max_examples=200, deadline=None)
@given(random_plans(), st.data())
def test_a_driven_pipeline_always_finishes_and_decisions_are_stable(
    the_plan: Plan, data: st.DataObject
) -> None:
    """Drive a pipeline as `kapal run` does, each started job ending as chance says: every job
    ends finished, each job is decided once, a second call right after decides nothing, and a
    resource group never has two jobs pending or running."""
    options = ScheduleOptions(held="skip")
    current: dict[str, JobState] = {}
    decided: list[Step] = []
    for _ in range(100):
        steps = next_steps(the_plan, current, options)
        decided += steps
        for step in steps:
            current[step.job] = JobState(step.status)
        assert next_steps(the_plan, current, options) == []
        busy = [
            j.resource_group
            for j in the_plan.jobs
            if j.resource_group and current.get(j.name, JobState(S.CREATED)).status == S.PENDING
        ]
        assert len(busy) == len(set(busy))
        pending = [name for name, state in current.items() if state.status == S.PENDING]
        if not pending:
            break
        name = data.draw(st.sampled_from(sorted(pending)))
        ended = data.draw(st.sampled_from(FINAL))
        allowed = ended == S.FAILED and failure_allowed(the_plan.job(name), 1)
        current[name] = JobState(ended, allowed)
    assert {j.name for j in the_plan.jobs} == set(current)
    assert all(state.status.finished for state in current.values())
    assert len({s.job for s in decided}) == len(decided)
    assert pipeline_status(the_plan, current, held="skip") in (
        PipelineStatus.SUCCESS,
        PipelineStatus.FAILED,
        PipelineStatus.CANCELED,
    )
