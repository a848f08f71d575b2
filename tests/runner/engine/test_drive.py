"""The scheduler and `JobRunner` driven the way the server drives them, with no `Engine`.

Job states live in a table (a dict standing for the database rows); each job runs in its own
"task" (a `JobRunner` call); after each job ends, the pipeline advances through `next_steps` and
takes its status from `pipeline_status`. Manual jobs are played by moving them to `pending`.
"""

from __future__ import annotations

from pipeline.plan import ArtifactsSpec, Plan, RetrySpec
from runner.engine.job_runner import JobRunner
from runner.engine.recorder import JobStatus, PipelineStatus
from runner.engine.schedule import (
    JobState,
    ScheduleOptions,
    failure_allowed,
    next_steps,
    pipeline_status,
    retry_wanted,
)
from runner.runtime.backend import ContainerSpec
from runner.runtime.fake import FakeBehaviour
from tests.runner.engine.conftest import Harness, job, plan, workspace_of


class Pipeline:
    """One pipeline's rows and queue, advanced as the server's tasks advance it."""

    def __init__(self, harness: Harness, the_plan: Plan) -> None:
        self.harness = harness
        self.plan = the_plan
        self.rows: dict[str, JobState] = {}
        self.attempts: dict[str, int] = {}
        self.queue: list[str] = []
        self.options = ScheduleOptions()

    def advance(self) -> None:
        """What a task does in its transaction once a job ended (and at the pipeline's start)."""
        for step in next_steps(self.plan, self.rows, self.options):
            self.rows[step.job] = JobState(step.status)
            if step.status == JobStatus.PENDING:
                self.queue.append(step.job)

    def play(self, name: str) -> None:
        """`POST /jobs/{id}/play`: a manual job moves to pending and is queued."""
        assert self.rows[name].status == JobStatus.MANUAL
        self.rows[name] = JobState(JobStatus.PENDING)
        self.queue.append(name)

    def work(self, jobs: int = 100) -> None:
        """Workers take queued jobs one by one, at most `jobs`, until the queue is empty."""
        for _ in range(jobs):
            if not self.queue:
                return
            name = self.queue.pop(0)
            the_job = self.plan.job(name)
            attempt = self.attempts[name] = self.attempts.get(name, 0) + 1
            self.rows[name] = JobState(JobStatus.RUNNING)
            outcome = JobRunner(
                the_job,
                plan=self.plan,
                pipeline_id=3,
                job_id=300 + len(self.attempts),
                attempt=attempt,
                source=self.harness.source,
                work_dir=self.harness.tmp_path / "worker",
                backend=self.harness.backend,
                images=self.harness.images,
                artifacts=self.harness.artifacts,
                caches=self.harness.caches,
                recorder=self.harness.recorder,
            ).run()
            if outcome.status == JobStatus.FAILED and retry_wanted(
                the_job,
                attempt=attempt,
                exit_code=outcome.exit_code,
                failure_kind=outcome.failure_kind,
            ):
                self.queue.append(name)  # a new attempt; the job stays running meanwhile
                continue
            allowed = outcome.status == JobStatus.FAILED and failure_allowed(
                the_job, outcome.exit_code
            )
            self.rows[name] = JobState(outcome.status, allowed)
            self.advance()

    @property
    def status(self) -> PipelineStatus:
        """The pipeline row's status."""
        return pipeline_status(self.plan, self.rows)


def test_a_gated_pipeline_waits_for_its_manual_job_then_runs_to_the_end(
    harness: Harness,
) -> None:
    def compile_writes(spec: ContainerSpec) -> FakeBehaviour:
        (workspace_of(spec) / "app.bin").write_text("v1\n")
        return FakeBehaviour()

    def deploy_reads(spec: ContainerSpec) -> FakeBehaviour:
        return FakeBehaviour(stdout=f"deploying {(workspace_of(spec) / 'app.bin').read_text()}")

    harness.backend.script(lambda spec: spec.name == "compile", compile_writes)
    harness.backend.script(lambda spec: spec.name == "deploy", deploy_reads)
    p = Pipeline(
        harness,
        plan(
            job("compile", "build", artifacts=ArtifactsSpec(paths=("app.bin",))),
            job("gate", "test", when="manual", allow_failure=False),
            job("deploy", "deploy"),
        ),
    )
    assert p.status == PipelineStatus.CREATED
    p.advance()
    assert p.queue == ["compile"] and p.status == PipelineStatus.RUNNING
    p.work()
    assert p.rows["gate"].status == JobStatus.MANUAL
    assert "deploy" not in p.rows  # held: still created, not skipped
    assert p.status == PipelineStatus.MANUAL
    p.play("gate")
    p.work()
    assert p.rows["deploy"].status == JobStatus.SUCCESS
    assert "deploying v1" in harness.recorder.log("deploy")
    assert p.status == PipelineStatus.SUCCESS


def test_a_retried_job_and_an_allowed_failure(harness: Harness) -> None:
    runs: list[str] = []

    def flaky(spec: ContainerSpec) -> FakeBehaviour:
        runs.append(spec.env["CI_JOB_ATTEMPT"])
        return FakeBehaviour(exit_code=0 if spec.env["CI_JOB_ATTEMPT"] == "2" else 1)

    harness.backend.script(lambda spec: spec.name == "flaky", flaky)
    harness.backend.script(lambda spec: spec.name == "lint", FakeBehaviour(exit_code=3))
    p = Pipeline(
        harness,
        plan(
            job("flaky", "build", retry=RetrySpec(max=2)),
            job("lint", "build", allow_failure=True),
            job("report", "test", when="on_failure"),
            job("ship", "deploy"),
        ),
    )
    p.advance()
    p.work()
    assert runs == ["1", "2"]
    assert p.rows["lint"] == JobState(JobStatus.FAILED, allowed_failure=True)
    assert p.rows["report"].status == JobStatus.SKIPPED
    assert p.rows["ship"].status == JobStatus.SUCCESS
    assert p.status == PipelineStatus.SUCCESS


def test_a_canceled_pipeline_cancels_what_has_not_started(harness: Harness) -> None:
    p = Pipeline(harness, plan(job("compile", "build"), job("unit"), job("ship", "deploy")))
    p.advance()
    p.work(jobs=1)
    assert p.queue == ["unit"]
    p.options = ScheduleOptions(canceled=True)
    p.queue.clear()  # the queued job's task finds the pipeline canceled
    p.rows["unit"] = JobState(JobStatus.CANCELED)
    p.advance()
    assert p.rows["ship"].status == JobStatus.CANCELED
    assert p.status == PipelineStatus.CANCELED
