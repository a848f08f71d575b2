"""`JobRunner`: one attempt of one job, from an empty directory to its stored artifacts.

It knows nothing of the pipeline around the job beyond the `Plan` (whose artifacts to restore):
no scheduling, no retries, no job statuses. `kapal run`'s `Engine` runs one per attempt in a
thread; the server runs one per Celery task.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import hashlib
import shutil
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.plan import CacheSpec, Job, Plan, ServiceSpec, Variable
from pipeline.records import record
from runner.artifacts import ArtifactStore, collect_paths, parse_junit
from runner.cache import CachePolicy, CacheStore
from runner.confined import ConfinedTree
from runner.engine.recorder import (
    ArtifactStored,
    CoverageReport,
    JobStatus,
    LogLine,
    Recorder,
    TestCase,
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
    RunnerError,
    ServiceError,
    ShipError,
)
from runner.job_images import BuildRequest, ImageProvider, RunnableImage
from runner.masking import LineMasker, SecretMasker
from runner.reports import (
    MAX_DOTENV_BYTES,
    MAX_XML_BYTES,
    Coverage,
    ReportError,
    parse_cobertura,
    parse_dotenv,
)
from runner.runtime.backend import (
    Backend,
    Container,
    ContainerSpec,
    ExitStatus,
    Limits,
    Mount,
    Sandbox,
    SandboxSpec,
    format_size,
)
from runner.runtime.disk import LimitedDisk
from runner.runtime.durations import format_duration

if TYPE_CHECKING:  # the shipper is made (and imported) only for a pipeline that ships
    from runner.ship.deploy import Shipper

SCRIPT_DIR = "/kapal"

WorkspaceSource = Callable[[Path], object] | InPlaceTree
"""Fills an empty directory with the project's files, or names a tree jobs use in place (see
`runner.engine.workspace`)."""


@dataclass(frozen=True)
class JobOptions:
    """How jobs run; the defaults suit `kapal run`."""

    use_cache: bool = True  # False: no job cache restored or saved, no build layer cache used
    project_dir: str = "/builds/project"
    default_timeout: float = 3600.0
    after_script_timeout: float = 300.0
    service_timeout: float = 30.0
    stop_grace: float = 2.0
    secrets: Mapping[str, str] = field(default_factory=dict)
    limits: Limits = field(default_factory=Limits)
    keep_work_dir: bool = False
    # the job's folder (workspace, scripts) is a disk of this many bytes of its own, so a job
    # cannot fill the host's disk; None: a plain folder (an in-place tree is never capped)
    workspace_disk_bytes: int | None = None
    # pushes (`build: push:`), `deploy:` jobs and deployment records; None: they fail the job
    ship: Shipper | None = None


@record
class JobOutcome:
    """How one attempt of a job ended.

    `status` is `success`, `failed` or `canceled`. `failure_kind` is GitLab's failure reason for
    a failed attempt: `script_failure` (non-zero exit), `stuck_or_timeout_failure`,
    `runner_system_failure` (kapal could not run it: image, service, workspace, container
    start) or `unknown_failure` (a bug in kapal). `reason` is masked.
    """

    status: JobStatus
    exit_code: int | None = None
    reason: str = ""
    failure_kind: str = "script_failure"


def job_folder(name: str) -> str:
    """A job's folder and container-name stem: its slug plus a short hash of the exact name.

    `a/b`, `a_b` and `a-b` share the slug `a-b`; the hash keeps their workspaces apart.
    """
    digest = hashlib.sha256(name.encode("utf-8", "surrogateescape")).hexdigest()[:8]
    return f"{slug(name)[:54]}-{digest}"


def slug(name: str) -> str:
    """`CI_JOB_NAME_SLUG`: lower case, runs of other characters as one `-`, at most 63 long."""
    out = "".join(c.lower() if c.isalnum() else "-" for c in name)
    while "--" in out:
        out = out.replace("--", "-")
    return out.strip("-")[:63] or "job"


def job_variables(
    job: Job,
    options: JobOptions,
    *,
    job_id: int,
    attempt: int,
    inherited: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment of `job`'s containers: predefined, the plan's, then the secrets.

    `inherited` holds the dotenv report variables of the jobs it gets artifacts from: as in
    GitLab they win over the file's variables but not over pipeline (trigger) variables or
    the project's secrets.
    """
    project_dir = options.project_dir
    defaults = {
        "CI_JOB_NAME": job.name,
        "CI_JOB_STAGE": job.stage,
        "CI_JOB_NAME_SLUG": slug(job.name),
        "CI_SERVER": "yes",
    }
    if job.parallel_index is not None and job.parallel_total is not None:
        defaults["CI_NODE_INDEX"] = str(job.parallel_index)
        defaults["CI_NODE_TOTAL"] = str(job.parallel_total)
    # what only the runner knows wins over the plan's placeholders
    forced = {
        "CI_JOB_ID": str(job_id),
        "CI_JOB_ATTEMPT": str(attempt),
        "CI_PROJECT_DIR": project_dir,
        "CI_BUILDS_DIR": str(Path(project_dir).parent),
    }
    return resolve_variables(
        (
            *(Variable(name=k, value=v, source="predefined") for k, v in defaults.items()),
            *(var for var in job.variables if var.source != "trigger"),
            *(Variable(name=k, value=v, source="job") for k, v in (inherited or {}).items()),
            *(var for var in job.variables if var.source == "trigger"),
            *(Variable(name=k, value=v, source="predefined") for k, v in forced.items()),
            *(
                Variable(name=k, value=v, source="pipeline", expand=False)
                for k, v in options.secrets.items()
            ),
        )
    )


def dotenv_variables(
    plan: Plan,
    job: Job,
    artifacts: ArtifactStore,
    pipeline_id: int,
    log: Callable[[str], None],
) -> dict[str, str]:
    """The dotenv report variables of the jobs `job` gets artifacts from, in that order (a
    later job's value wins), read from their stored artifacts inside the store; what cannot be
    used is said through `log`. A trigger job passes them to its downstream pipeline."""
    found: dict[str, str] = {}
    names = {other.name for other in plan.jobs}
    for source in artifact_sources(plan, job):
        spec = plan.job(source).artifacts if source in names else None
        paths = tuple(
            p for r in (spec.reports if spec else ()) if r.kind == "dotenv" for p in r.paths
        )
        stored = artifacts.job_dir(pipeline_id, source)
        if not paths or not stored.is_dir():
            continue
        with ConfinedTree(stored) as tree:
            for rel in collect_paths(stored, paths):
                try:
                    found.update(parse_dotenv(tree.read_bytes(rel, MAX_DOTENV_BYTES + 1)))
                except (ReportError, RunnerError) as exc:
                    log(f"kapal: dotenv report {rel} of {source} not used: {exc}")
    if found:
        log(f"kapal: variables from dotenv reports: {', '.join(sorted(found))}")
    return found


def artifact_sources(plan: Plan, job: Job) -> list[str]:
    """The jobs whose artifacts `job` gets: `dependencies`, else its `needs` with artifacts,
    else every job of earlier stages."""
    if job.dependencies is not None:
        return list(job.dependencies)
    if job.needs is not None:
        return [need.job for need in job.needs if need.artifacts]
    stage_index = {stage: i for i, stage in enumerate(plan.stages)}
    mine = stage_index.get(job.stage, 0)
    return [other.name for other in plan.runnable_jobs() if stage_index.get(other.stage, 0) < mine]


class CachePolicyError(EngineError):
    """A `cache: policy` written with variables expands to no policy GitLab knows."""


def cache_policy(spec: CacheSpec, values: Mapping[str, str]) -> CachePolicy:
    """The cache's policy: `policy_text` (`policy: $VAR`) expanded with the job's variables,
    else `policy`. Raises `CachePolicyError` naming the value when it is not pull, push or
    pull-push."""
    if spec.policy_text is None:
        return CachePolicy(spec.policy)
    value = expand(spec.policy_text, values).strip()
    try:
        return CachePolicy(value)
    except ValueError:
        raise CachePolicyError(
            f"cache: policy {spec.policy_text!r} expands to {value!r}; it must be pull, push "
            "or pull-push (check the variable it uses)"
        ) from None


def fallback_keys(spec: CacheSpec, values: Mapping[str, str]) -> list[str]:
    """The keys tried, in order, when the cache's own key has no cache: its `fallback_keys`,
    then the `CACHE_FALLBACK_KEY` variable (ignored when it ends in `-protected`, as GitLab's
    runner does), each expanded; empty ones dropped."""
    keys = [expand(key, values).strip() for key in spec.fallback_keys]
    global_key = values.get("CACHE_FALLBACK_KEY", "").strip()
    if global_key and not global_key.endswith("-protected"):
        keys.append(global_key)
    return [key for key in keys if key]


def ignored_note(job: Job) -> str:
    """What a failure's reason adds for a job using keywords kapal ignores."""
    named = "; ".join(f"`{keyword}`: {lost}" for keyword, lost in job.ignored_keywords)
    return f"it uses keywords kapal ignores, which may be why ({named})"


def _remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


class JobRunner:
    """Runs one attempt of one job to its end.

    Lifecycle:
    1. Construct it (no I/O) with the job, its plan, the attempt's ids and the shared parts.
    2. Call `run()` once, in the thread that owns the attempt. It makes the attempt's directory
       `work_dir/<job_folder(name)>-<attempt>`, fills its `workspace` from `source` (an
       `InPlaceTree` is used as it is, uncopied), restores caches and the artifacts of the
       jobs this one gets them from (a cancel meanwhile ends the attempt here, `canceled`,
       with nothing run or saved), then either builds the image (`build:` jobs) or starts the
       services in one sandbox, waits for their ports, runs `before_script` + `script` and
       then `after_script` (with `CI_JOB_STATUS`); it saves artifacts (JUnit reports whatever
       the result) and caches, and returns a `JobOutcome` once every container of the attempt
       is gone. The directory is then handed to `remove_dir` (by default removed at once)
       unless `options.keep_work_dir`. `run` does not raise for what a job or its images do:
       a failing script, a timeout, a service that never listens, an image that cannot start,
       a workspace that cannot be made are outcomes (see `JobOutcome.failure_kind`).
    3. `cancel()` may be called from any thread at any time, before, during or after `run`,
       and returns at once. It stops the attempt's running containers (the backend's stop:
       SIGTERM, then SIGKILL after `options.stop_grace`) and its build; as in GitLab 17.0 and
       later the job's `after_script` still runs, with `CI_JOB_STATUS=canceled` and its own
       timeout, and artifacts are kept as for a failed job (caches are not saved). A second
       `cancel()`, or `cancel(force=True)`, stops the after_script too. `run` then returns a
       `canceled` outcome, unless the attempt had already succeeded.

    It reports `LogLine`, `ArtifactStored` and `TestReport` events (masked) to `recorder`, from
    the thread calling `run` and from service-log threads, serialised by the runner; job status
    changes are the caller's to record.
    """

    def __init__(
        self,
        job: Job,
        *,
        plan: Plan,
        pipeline_id: int,
        job_id: int,
        attempt: int = 1,
        source: WorkspaceSource,
        work_dir: Path,
        backend: Backend,
        images: ImageProvider,
        artifacts: ArtifactStore,
        caches: CacheStore,
        recorder: Recorder,
        options: JobOptions | None = None,
        remove_dir: Callable[[Path], object] = _remove_tree,
    ) -> None:
        self.job = job
        self.plan = plan
        self.pipeline_id = pipeline_id
        self.job_id = job_id
        self.attempt = attempt
        self.source = source
        self.work_dir = work_dir
        self.backend = backend
        self.images = images
        self.artifacts = artifacts
        self.caches = caches
        self.options = options or JobOptions()
        self._recorder = recorder
        self._record_lock = threading.Lock()
        self._remove_dir = remove_dir
        self._masker = SecretMasker(self.options.secrets.values())
        self._lock = threading.Lock()
        self._canceled = threading.Event()
        self._forced = threading.Event()  # stop after_script containers too
        self._containers: list[Container] = []
        self._after_containers: list[Container] = []

    @property
    def canceled(self) -> bool:
        """Whether `cancel` was called."""
        return self._canceled.is_set()

    def cancel(self, *, force: bool = False) -> None:
        """Stop the attempt (see the class's lifecycle); never raises, returns at once."""
        with self._lock:
            if force or self._canceled.is_set():
                self._forced.set()
            self._canceled.set()
            stopping = list(self._containers)
            if self._forced.is_set():
                stopping += self._after_containers
        for container in stopping:  # in parallel: each stop may wait `stop_grace`
            threading.Thread(
                target=self._stop_all, args=([container],), name="kapal-stop", daemon=True
            ).start()

    def run(self) -> JobOutcome:
        """Run the attempt to its end and say how it ended (see the class's lifecycle)."""
        if self._canceled.is_set():
            return JobOutcome(JobStatus.CANCELED, reason="canceled before it started")
        try:
            outcome = self._attempt()
        except RunnerError as exc:
            outcome = JobOutcome(
                JobStatus.FAILED, reason=str(exc), failure_kind="runner_system_failure"
            )
        except Exception as exc:
            outcome = JobOutcome(
                JobStatus.FAILED,
                reason=f"internal error in kapal: {type(exc).__name__}: {exc}",
                failure_kind="unknown_failure",
            )
        if self._canceled.is_set() and outcome.status != JobStatus.SUCCESS:
            outcome = JobOutcome(JobStatus.CANCELED, outcome.exit_code, "canceled")
        if outcome.status == JobStatus.FAILED and self.job.ignored_keywords:
            outcome = dataclasses.replace(
                outcome, reason=f"{outcome.reason}; {ignored_note(self.job)}"
            )
        return dataclasses.replace(outcome, reason=self._masker.mask(outcome.reason))

    # -- the attempt -----------------------------------------------------------------------

    def _attempt(self) -> JobOutcome:
        job = self.job
        job_dir = self.work_dir / f"{job_folder(job.name)}-{self.attempt}"
        disk: LimitedDisk | None = None
        try:
            if isinstance(self.source, InPlaceTree):
                workspace = self.source.checked()
                job_dir.mkdir(parents=True)
            else:
                disk = self._job_disk(job_dir)
                workspace = job_dir / "workspace"
                workspace.mkdir(parents=True)
                self.source(workspace)
            for keyword, lost in job.ignored_keywords:
                self._log(f"kapal: ignoring `{keyword}`: {lost}")
            values = job_variables(
                job,
                self.options,
                job_id=self.job_id,
                attempt=self.attempt,
                inherited=self._dotenv_variables(),
            )
            # keys from the files as the source has them, before artifacts or caches land
            cache_keys = [
                self._cache_key(index, workspace, values) for index in range(len(job.caches))
            ]
            try:
                policies = [cache_policy(spec, values) for spec in job.caches]
            except CachePolicyError as exc:
                return JobOutcome(JobStatus.FAILED, reason=str(exc))
            self._restore_artifacts(workspace)
            self._restore_caches(workspace, values, cache_keys, policies)
            if self._canceled.is_set():  # while the workspace was made: nothing of it ran
                return JobOutcome(JobStatus.CANCELED, reason="canceled before its script started")
            if job.build is not None:
                outcome = self._build(workspace, values)
            elif job.deploy is not None:
                outcome = self._deploy(values)
            else:
                outcome = self._script_job(job_dir, workspace, values)
                if outcome.status == JobStatus.SUCCESS and self.options.ship is not None:
                    self.options.ship.record_script(job, values)
            # as GitLab's runner does for a job canceled while running: artifacts are uploaded
            # as for a failed job (`when: always|on_failure`); caches are not saved
            outcome = self._save_artifacts(workspace, outcome)
            if outcome.status != JobStatus.CANCELED:
                self._save_caches(workspace, values, cache_keys, policies, outcome)
            if outcome.status == JobStatus.FAILED and disk is not None and disk.full():
                size = format_size(disk.size)
                outcome = dataclasses.replace(
                    outcome, reason=f"disk limit exceeded ({size} workspace): {outcome.reason}"
                )
            return outcome
        finally:
            if disk is not None:
                disk.remove()  # unmounting drops the files at once
            elif not self.options.keep_work_dir:
                self._remove_dir(job_dir)

    def _job_disk(self, job_dir: Path) -> LimitedDisk | None:
        """Mount a disk of its own on `job_dir` when the options cap the workspace."""
        size = self.options.workspace_disk_bytes
        if size is None or self.options.keep_work_dir:
            return None
        job_dir.parent.mkdir(parents=True, exist_ok=True)
        return LimitedDisk.create(job_dir, size)

    def _record(self, event: LogLine | ArtifactStored | TestReport | CoverageReport) -> None:
        with self._record_lock, contextlib.suppress(Exception):
            self._recorder.record(event)

    def _log(self, text: str) -> None:
        self._record(LogLine(job=self.job.name, text=self._masker.mask(text)))

    # -- artifacts and caches --------------------------------------------------------------

    def _restore_artifacts(self, workspace: Path) -> None:
        for source in artifact_sources(self.plan, self.job):
            files = self.artifacts.restore(self.pipeline_id, source, workspace)
            if files:
                self._log(f"kapal: restored {len(files)} artifact file(s) of {source}")

    def _dotenv_variables(self) -> dict[str, str]:
        """The dotenv report variables of the jobs this one gets artifacts from."""
        return dotenv_variables(self.plan, self.job, self.artifacts, self.pipeline_id, self._log)

    def _save_artifacts(self, workspace: Path, outcome: JobOutcome) -> JobOutcome:
        """Store the job's artifacts: every report's files whatever the result (JUnit cases and
        Cobertura coverage recorded), the other paths as `when` says; the outcome, failed
        when a dotenv report is one GitLab refuses."""
        spec = self.job.artifacts
        if spec is None:
            return outcome
        succeeded = outcome.status == JobStatus.SUCCESS
        if spec.junit:
            self._report_tests(workspace, collect_paths(workspace, spec.junit))
        self._report_coverage(workspace)
        outcome = self._check_dotenv(workspace, outcome)
        # reports are kept whatever the result, as GitLab does; paths follow `when`
        reports = (*spec.junit, *(path for report in spec.reports for path in report.paths))
        wanted = {"always": True, "on_success": succeeded, "on_failure": not succeeded}[spec.when]
        paths = (*spec.paths, *reports) if wanted else reports
        skipped: list[str] = []
        files = collect_paths(workspace, paths, spec.exclude, skipped=skipped)
        for why in skipped:  # a path through a symlink: never followed out of the workspace
            self._log(f"kapal: artifacts: left out {why}")
        if not files:
            if wanted and spec.paths:
                self._log("kapal: no files matched the artifacts paths")
            return outcome
        stored = self.artifacts.save(self.pipeline_id, self.job.name, workspace, files)
        for why in stored.skipped:
            self._log(f"kapal: artifacts: left out {why}")
        self._log(f"kapal: stored {len(files)} artifact file(s) ({stored.size} bytes)")
        shown = tuple(self._masker.mask(name) for name in stored.files)
        self._record(ArtifactStored(job=self.job.name, files=shown, size=stored.size))
        return outcome

    def _report_coverage(self, workspace: Path) -> None:
        """Read the Cobertura `coverage_report` files (inside the workspace) and record their
        line coverage, as GitLab shows it next to the test results."""
        spec = self.job.artifacts
        assert spec is not None
        figures: list[tuple[str, Coverage]] = []
        for report in spec.reports:
            if report.kind != "coverage_report":
                continue
            if report.coverage_format != "cobertura":
                self._log(
                    f"kapal: {report.coverage_format} coverage reports are kept but not read "
                    "(kapal reads cobertura)"
                )
                continue
            with ConfinedTree(workspace) as tree:
                for rel in collect_paths(workspace, report.paths):
                    try:
                        data = tree.read_bytes(rel, MAX_XML_BYTES + 1)
                        figures.append((rel, parse_cobertura(data)))
                    except (ReportError, RunnerError) as exc:
                        self._log(f"kapal: cannot read the coverage report {rel}: {exc}")
        if not figures:
            return
        # several files: weighted by their lines when each says how many, else averaged
        lines_covered: int | None = 0
        lines_valid: int | None = 0
        for _, figure in figures:
            if (
                lines_covered is None
                or lines_valid is None
                or figure.lines_covered is None
                or not figure.lines_valid
            ):
                lines_covered = lines_valid = None
            else:
                lines_covered += figure.lines_covered or 0
                lines_valid += figure.lines_valid
        if lines_covered is not None and lines_valid:
            percent = round(100 * lines_covered / lines_valid, 2)
        else:
            percent = round(sum(f.percent for _, f in figures) / len(figures), 2)
        files = tuple(self._masker.mask(rel) for rel, _ in figures)
        self._log(f"kapal: coverage {percent:.2f}% ({', '.join(files)})")
        self._record(
            CoverageReport(
                job=self.job.name,
                percent=percent,
                files=files,
                lines_covered=lines_covered,
                lines_valid=lines_valid,
            )
        )

    def _check_dotenv(self, workspace: Path, outcome: JobOutcome) -> JobOutcome:
        """Check the job's dotenv reports as GitLab does when they are uploaded: a file it
        refuses fails the job (a job that succeeded), naming the file and what is wrong."""
        spec = self.job.artifacts
        assert spec is not None
        paths = tuple(p for r in spec.reports if r.kind == "dotenv" for p in r.paths)
        if not paths:
            return outcome
        with ConfinedTree(workspace) as tree:
            for rel in collect_paths(workspace, paths):
                try:
                    parse_dotenv(tree.read_bytes(rel, MAX_DOTENV_BYTES + 1))
                except (ReportError, RunnerError) as exc:
                    problem = f"the dotenv report {rel} {exc}"
                    self._log(f"kapal: {problem}")
                    if outcome.status == JobStatus.SUCCESS:
                        return JobOutcome(JobStatus.FAILED, exit_code=0, reason=problem)
        return outcome

    def _report_tests(self, workspace: Path, reports: list[str]) -> None:
        """Parse the JUnit reports (read inside the workspace: a report that is a link to a host
        file reads the workspace's own path) and record their cases, masked."""
        if not reports:
            return
        cases: list[TestCase] = []
        with ConfinedTree(workspace) as tree:
            for rel in reports:
                try:
                    cases.extend(parse_junit(tree.read_bytes(rel)))
                except (ValueError, RunnerError) as exc:
                    self._log(f"kapal: cannot read the JUnit report {rel}: {exc}")
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
        self._record(TestReport(job=self.job.name, cases=masked))

    def _cache_key(self, index: int, workspace: Path, values: Mapping[str, str]) -> str:
        """The key of the job's `index`th cache; `key: files:` hashes those files as read
        inside the workspace (a link out of it reads the workspace's own path)."""
        spec = self.job.caches[index]
        if not spec.key_files:
            return expand(spec.key, values)
        digest = hashlib.sha256()
        with ConfinedTree(workspace) as tree:
            for rel in sorted(spec.key_files):
                digest.update(rel.encode() + b"\0")
                with contextlib.suppress(RunnerError):
                    digest.update(tree.read_bytes(expand(rel, values)))
        key = digest.hexdigest()[:16]
        prefix = expand(spec.key_prefix, values) if spec.key_prefix else ""
        return f"{prefix}-{key}" if prefix else key

    def _restore_caches(
        self,
        workspace: Path,
        values: Mapping[str, str],
        keys: list[str],
        policies: list[CachePolicy],
    ) -> None:
        """Restore each pulled cache from its key, else from the first of its `fallback_keys`
        (then the `CACHE_FALLBACK_KEY` variable) that has a cache, as GitLab's runner does."""
        if not self.options.use_cache:
            return
        for spec, key, policy in zip(self.job.caches, keys, policies, strict=True):
            if not policy.pulls:
                continue
            files = self.caches.restore(key, workspace)
            if files:
                self._log(f"kapal: restored cache {key!r} ({len(files)} file(s))")
                continue
            for fallback in fallback_keys(spec, values):
                files = self.caches.restore(fallback, workspace)
                if files:
                    self._log(
                        f"kapal: no cache {key!r} yet; restored the fallback cache {fallback!r} "
                        f"({len(files)} file(s))"
                    )
                    break
            else:
                self._log(f"kapal: no cache {key!r} yet")

    def _save_caches(
        self,
        workspace: Path,
        values: Mapping[str, str],
        keys: list[str],
        policies: list[CachePolicy],
        outcome: JobOutcome,
    ) -> None:
        """Save each pushed cache under its own key (never under a fallback key)."""
        if not self.options.use_cache:
            return
        succeeded = outcome.status == JobStatus.SUCCESS
        for spec, key, policy in zip(self.job.caches, keys, policies, strict=True):
            if not policy.pushes:
                continue
            if not {"always": True, "on_success": succeeded, "on_failure": not succeeded}[
                spec.when
            ]:
                continue
            files = self.caches.save(key, workspace, [expand(p, values) for p in spec.paths])
            self._log(f"kapal: saved cache {key!r} ({len(files)} file(s))")

    # -- build jobs ------------------------------------------------------------------------

    def _build(self, workspace: Path, values: Mapping[str, str]) -> JobOutcome:
        """Run a `build:` job with the builder.

        RUN steps get the NAT network (the outside world, not the host) unless the job says
        `network: none` or `network: host` (the latter only where the operator allows it).
        """
        job = self.job
        spec = job.build
        assert spec is not None
        context = (workspace / expand(spec.context, values)).resolve()
        dockerfile = (context / expand(spec.dockerfile, values)).resolve()
        if not context.is_relative_to(workspace.resolve()):
            return JobOutcome(
                JobStatus.FAILED, reason=f"build context {spec.context} leaves the project"
            )
        request = BuildRequest(
            context=context,
            dockerfile=dockerfile,
            dockerfile_root=workspace,
            tags=tuple(expand(tag, values) for tag in spec.tags),
            build_args={k: expand(v, values) for k, v in spec.build_args},
            target=spec.target,
            epoch=_source_date_epoch(values),
            network=job.network or "nat",
            cancel=self._canceled,
            # `kapal run --no-cache` uses no cache at all, the builder's layer cache included
            no_cache=not self.options.use_cache,
        )
        masker = LineMasker(self._masker)

        def log(line: str) -> None:
            if self._canceled.is_set():
                raise BuildError("canceled")
            for shown in masker.push(line):
                self._record(LogLine(job=job.name, text=shown))

        self._log(f"kapal: building {', '.join(request.tags) or 'an untagged image'}")
        try:
            digest = self.images.build(request, log)
        except BuildError as exc:
            for shown in masker.flush():
                self._record(LogLine(job=job.name, text=shown))
            if self._canceled.is_set():
                return JobOutcome(JobStatus.CANCELED, reason="canceled")
            return JobOutcome(JobStatus.FAILED, exit_code=1, reason=str(exc))
        for shown in masker.flush():
            self._record(LogLine(job=job.name, text=shown))
        self._log(f"kapal: built {digest}")
        if spec.push:
            if self.options.ship is None:
                return JobOutcome(JobStatus.FAILED, reason="this runner cannot push images")
            try:
                self.options.ship.push_built(request.tags, values, self._log)
            except ShipError as exc:
                return JobOutcome(JobStatus.FAILED, exit_code=1, reason=str(exc))
        return JobOutcome(JobStatus.SUCCESS, exit_code=0)

    def _deploy(self, values: Mapping[str, str]) -> JobOutcome:
        """Run a `deploy:` job with the shipper (runner.ship.deploy)."""
        if self.options.ship is None:
            return JobOutcome(JobStatus.FAILED, reason="this runner cannot run deploy: jobs")
        try:
            self.options.ship.deploy_job(self.job, values, self._log)
        except ShipError as exc:
            return JobOutcome(JobStatus.FAILED, exit_code=1, reason=str(exc))
        return JobOutcome(JobStatus.SUCCESS, exit_code=0)

    # -- script jobs -----------------------------------------------------------------------

    def _script_job(self, job_dir: Path, workspace: Path, values: dict[str, str]) -> JobOutcome:
        job = self.job
        assert job.image is not None
        image = self.images.resolve(expand(job.image.name, values), job.image.pull_policy)
        services = [
            (
                svc,
                self.images.resolve(expand(svc.name, values), svc.pull_policy),
                expand(svc.name, values),
            )
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
                name=f"p{self.pipeline_id}-{job_folder(job.name)}",
                network=job.network or "nat",
                aliases=tuple(aliases),
            )
        )
        service_logs: list[_ServiceLog] = []
        try:
            for svc, svc_image, name in services:
                self._start_service(sandbox, (svc_image, image), name, svc, values, service_logs)
            outcome = self._run_step(sandbox, image, mounts, values)
            if job.after_script and not self._forced.is_set():
                self._run_after_script(sandbox, image, mounts, values, outcome)
            return outcome
        finally:
            with self._lock:
                running = self._containers + self._after_containers
                self._containers = []
                self._after_containers = []
            self._stop_all(running)
            self.backend.teardown(sandbox)
            for service_log in service_logs:
                service_log.thread.join()

    def _stop_all(self, containers: list[Container]) -> None:
        for container in containers:
            with contextlib.suppress(RunnerError):
                self.backend.stop(container, grace=self.options.stop_grace)

    def _track(self, container: Container, *, after: bool = False) -> None:
        """Remember a running container so `cancel` can stop it (after_script: only if forced)."""
        with self._lock:
            (self._after_containers if after else self._containers).append(container)
            stop = self._forced.is_set() if after else self._canceled.is_set()
        if stop:
            self._stop_all([container])

    def _untrack(self, container: Container) -> None:
        with self._lock:
            for tracked in (self._containers, self._after_containers):
                if container in tracked:
                    tracked.remove(container)

    def _start_service(
        self,
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
        env.update(resolve_variables((*self.job.variables, *svc.variables)))
        self._log(f"kapal: starting service {name}")
        spec = ContainerSpec(
            name=f"service-{slug((svc.aliases or (name,))[0])}",
            layers=image.layers,
            image=image.defaults,
            command=svc.command,
            entrypoint=svc.entrypoint,
            env=env,
            limits=self.options.limits,
        )
        container = self.backend.start(sandbox, spec)
        self._track(container)
        service_log = _ServiceLog(self.backend, container, self._masker)
        service_logs.append(service_log)
        if not image.exposed_ports:
            return
        probe = ContainerSpec(
            name=f"probe-{slug((svc.aliases or (name,))[0])}",
            layers=job_image.layers,
            image=job_image.defaults,
            entrypoint=(),
            command=PROBE_COMMAND,
            timeout=10.0,
        )
        ports = ", ".join(map(str, image.exposed_ports))
        self._log(f"kapal: waiting for {name} to listen on {ports}")
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
                self._log(f"[service {name}] {line}")
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
        sandbox: Sandbox,
        image: RunnableImage,
        mounts: tuple[Mount, ...],
        values: Mapping[str, str],
    ) -> JobOutcome:
        timeout = float(self.job.timeout_seconds or self.options.default_timeout)
        env = {**values, "CI_JOB_STATUS": "running"}
        spec = self._script_spec(image, mounts, env, script="step_script", timeout=timeout)
        try:
            status = self._run_container(sandbox, spec)
        except ContainerStartError as exc:
            return JobOutcome(
                JobStatus.FAILED, reason=str(exc), failure_kind="runner_system_failure"
            )
        return _outcome_of(status)

    def _run_after_script(
        self,
        sandbox: Sandbox,
        image: RunnableImage,
        mounts: tuple[Mount, ...],
        values: Mapping[str, str],
        outcome: JobOutcome,
    ) -> None:
        env = dict(values)
        canceled = outcome.status == JobStatus.CANCELED or (
            self._canceled.is_set() and outcome.status != JobStatus.SUCCESS
        )
        succeeded = outcome.status == JobStatus.SUCCESS
        env["CI_JOB_STATUS"] = "canceled" if canceled else "success" if succeeded else "failed"
        if canceled:
            self._log("kapal: running after_script of the canceled job (cancel again to stop)")
        else:
            self._log("kapal: running after_script")
        timeout = self.options.after_script_timeout
        spec = self._script_spec(image, mounts, env, script="after_script", timeout=timeout)
        try:
            status = self._run_container(sandbox, spec, after=True)
        except ContainerStartError as exc:
            self._log(f"kapal: after_script could not start: {exc}")
            return
        if not status.ok:
            self._log(f"kapal: after_script {status.describe()} (the job's status stands)")

    def _script_spec(
        self,
        image: RunnableImage,
        mounts: tuple[Mount, ...],
        env: Mapping[str, str],
        *,
        script: str,
        timeout: float,
    ) -> ContainerSpec:
        """The container running one of the job's scripts (`step_script`, `after_script`)."""
        job = self.job
        suffix = "" if script == "step_script" else "-after"
        return ContainerSpec(
            name=f"{slug(job.name)}{suffix}",
            layers=image.layers,
            image=image.defaults,
            entrypoint=job.image.entrypoint if job.image else None,
            command=("sh", f"{SCRIPT_DIR}/{script}"),
            env=dict(env),
            cwd=self.options.project_dir,
            hostname=slug(job.name)[:63] or "job",
            mounts=mounts,
            limits=self.options.limits,
            timeout=timeout,
        )

    def _run_container(
        self, sandbox: Sandbox, spec: ContainerSpec, *, after: bool = False
    ) -> ExitStatus:
        container = self.backend.start(sandbox, spec)
        self._track(container, after=after)
        try:
            maskers: dict[str, LineMasker] = {}
            for entry in self.backend.logs(container):
                masker = maskers.setdefault(entry.stream, LineMasker(self._masker))
                for shown in masker.push(entry.text):
                    self._record(LogLine(job=self.job.name, text=shown))
            for masker in maskers.values():
                for shown in masker.flush():
                    self._record(LogLine(job=self.job.name, text=shown))
            return self.backend.wait(container)
        finally:
            self._untrack(container)


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


def _outcome_of(status: ExitStatus) -> JobOutcome:
    if status.ok:
        return JobOutcome(JobStatus.SUCCESS, exit_code=0)
    if status.canceled:
        return JobOutcome(JobStatus.CANCELED, exit_code=status.exit_code, reason="canceled")
    kind = "stuck_or_timeout_failure" if status.timed_out else "script_failure"
    return JobOutcome(
        JobStatus.FAILED, exit_code=status.exit_code, reason=status.describe(), failure_kind=kind
    )


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
