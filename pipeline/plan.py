"""The `Plan`: what a runner needs to execute one pipeline, with nothing of YAML left in it.

`pipeline.plan(document, context)` builds a `Plan`; `runner` consumes only this module's types.
Every type here is a frozen dataclass whose fields are strings, numbers, booleans, None, tuples
or other such dataclasses, so a plan is immutable, hashable where its contents are, and
round-trips through JSON with `Plan.to_json()` / `Plan.from_json()` (the JSON is versioned by
`PLAN_FORMAT`).

Shape::

    Plan
    ├── stages, variables (predefined + file, in precedence order), trigger facts
    ├── skip_reason / run_reason: why `workflow: rules` do (not) create the pipeline
    ├── warnings: Notice... (duplicate keys, keywords kapal ignores), planned anyway
    └── jobs: Job, by stage then file order, parallel instances expanded ("test 1/3", "t: [a, b]")
        ├── image: ImageSpec, services: ServiceSpec...
        ├── variables: Variable... (predefined, pipeline, job, matrix, rules, trigger; last wins)
        ├── before_script / script / after_script (lists of shell lines)
        ├── when, allow_failure (+ exit codes), retry, timeout, artifacts, caches
        ├── needs: Need... (concrete job names) or None for stage ordering; `waits_for` resolved
        ├── environment, interruptible, resource_group, tags, network, build, deploy
        ├── trigger: TriggerSpec (a downstream pipeline: child files or another project)
        ├── skip_reason: why the job does not run (None when it runs)
        └── run_reason: why it runs (the rule that matched...; None when it does not)

Variable values are stored as written (after YAML, before `$VAR` expansion); the runner expands
them at run time against the job's own variables, the way GitLab's runner does. CI_JOB_ID is the
job's 1-based position in the plan; a runner that has real job ids replaces it.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Callable, Iterator
from dataclasses import field
from typing import Any, Literal

from pipeline.errors import PlanError
from pipeline.records import record

PLAN_FORMAT = 1

VariableSource = Literal["predefined", "trigger", "pipeline", "job", "matrix", "rule", "service"]
When = Literal["on_success", "on_failure", "always", "manual"]


@record
class Variable:
    """One CI variable: its name, its value as written, where it came from, whether to expand it."""

    name: str
    value: str
    source: VariableSource
    expand: bool = True


@record
class ImageSpec:
    """The image a job runs in; `has_variables` when the name needs `$VAR` expansion."""

    name: str
    entrypoint: tuple[str, ...] | None = None
    has_variables: bool = False
    # GitLab's `pull_policy`: always, if-not-present, never, tried in order (empty: kapal's way)
    pull_policy: tuple[str, ...] = ()


@record
class ServiceSpec:
    """A service container started beside the job, reachable under each of `aliases`.

    Without an explicit `alias`, GitLab's two default aliases are given: the image name without
    its tag with `/` replaced by `__`, and by `-` (`postgres:15` gives `postgres`).
    """

    name: str
    aliases: tuple[str, ...]
    variables: tuple[Variable, ...] = ()
    command: tuple[str, ...] | None = None
    entrypoint: tuple[str, ...] | None = None
    has_variables: bool = False
    pull_policy: tuple[str, ...] = ()


@record
class RetrySpec:
    """How often a failed job is retried (0-2) and on which failure kinds (`retry:when`)."""

    max: int = 0
    when: tuple[str, ...] = ("always",)
    exit_codes: tuple[int, ...] = ()


@record
class ReportSpec:
    """One `artifacts: reports:` entry: its GitLab type and the files (globs) it names.

    The files are kept as artifacts whatever the job's result. `coverage_format` is set for
    `coverage_report` (cobertura or jacoco).
    """

    kind: str
    paths: tuple[str, ...]
    coverage_format: str | None = None


@record
class ArtifactsSpec:
    """Files kept after a job: paths/exclude globs, when, for how long, JUnit reports.

    `junit` repeats the junit report's paths (read for test results); `reports` holds every
    report type, junit included. `expose_as` is the label GitLab shows in merge requests.
    """

    paths: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    when: Literal["on_success", "on_failure", "always"] = "on_success"
    expire_in: str | None = None
    expire_in_seconds: int | None = None
    untracked: bool = False
    name: str | None = None
    junit: tuple[str, ...] = ()
    reports: tuple[ReportSpec, ...] = ()
    expose_as: str | None = None
    # Who may download them from a server: all, developer, maintainer, none (`public: false`
    # is developer)
    access: Literal["all", "developer", "maintainer", "none"] = "all"


@record
class CacheSpec:
    """One cache: a key (a string, or derived from the contents of `key_files`), paths, policy."""

    key: str = "default"
    key_files: tuple[str, ...] = ()
    key_prefix: str | None = None
    paths: tuple[str, ...] = ()
    policy: Literal["pull-push", "pull", "push"] = "pull-push"
    when: Literal["on_success", "on_failure", "always"] = "on_success"
    untracked: bool = False
    # Keys whose cache is restored, in order, when `key` has none (nothing is saved to them).
    fallback_keys: tuple[str, ...] = ()
    # GitLab keeps protected and unprotected branches' caches apart unless this is set.
    unprotect: bool = False
    # `policy: $VAR` as written (GitLab 16.1+): the runner expands it with the job's variables
    # and uses the result as `policy`; anything but pull, push or pull-push fails the job.
    policy_text: str | None = None


@record
class Need:
    """One `needs:` entry resolved to a concrete job name."""

    job: str
    artifacts: bool = True
    optional: bool = False


@record
class EnvironmentSpec:
    """The environment a job deploys to (`CI_ENVIRONMENT_NAME`), name and url expanded.

    `on_stop` names the job that stops it, `auto_stop_in` how long until it stops by itself
    ("never" or a duration, in seconds in `auto_stop_in_seconds`): recorded for whoever ships.
    """

    name: str
    url: str | None = None
    action: Literal["start", "prepare", "stop", "verify", "access"] = "start"
    on_stop: str | None = None
    auto_stop_in: str | None = None
    auto_stop_in_seconds: int | None = None
    deployment_tier: str | None = None


@record
class BuildSpec:
    """kapal's `build:` extension: build an image with the embedded builder, maybe push it."""

    context: str = "."
    dockerfile: str = "Dockerfile"
    tags: tuple[str, ...] = ()
    build_args: tuple[tuple[str, str], ...] = ()
    target: str | None = None
    push: bool = False


@record
class DeployServiceSpec:
    """kapal's `deploy: service:`: run the shipped image as a long-lived service."""

    name: str
    port: int | None = None
    health: str | None = None  # `/path`: HTTP GET on `port`; anything else: a shell command
    # on 127.0.0.1 of the host (a string holds a $VARIABLE); None: the service is not published
    host_port: int | str | None = None
    env: tuple[tuple[str, str], ...] = ()
    command: tuple[str, ...] | None = None


@record
class DeploySpec:
    """kapal's `deploy:` extension: ship `image` to `to`, maybe run it as a service."""

    image: str
    to: str | None = None
    service: DeployServiceSpec | None = None


@record
class TriggerInclude:
    """One file of a child pipeline's configuration, as `trigger: include:` names it.

    `kind` is `local` (a file of this repository), `artifact` (a file the job `job` left as an
    artifact: a dynamic child pipeline), or `remote`, `project`, `template`, `component` (read
    as `include:` reads them). `path` is the file, URL, template or component; `project` and
    `ref` belong to `kind == "project"`; `inputs` is the JSON text of the file's `inputs:`.
    """

    kind: Literal["local", "artifact", "remote", "project", "template", "component"]
    path: str
    job: str | None = None
    project: str | None = None
    ref: str | None = None
    inputs: str | None = None


@record
class TriggerSpec:
    """`trigger:`: the job starts a downstream pipeline instead of running a script.

    A child pipeline (`includes`, same project and commit) or another project's pipeline
    (`project`, `branch`: needs a GitLab server). `strategy` `depend` (or `mirror`, GitLab 18.2)
    makes the job's status the downstream pipeline's; without it the job succeeds once the
    pipeline is created. `forward_*` say which variables reach it (GitLab's `forward:`).
    """

    includes: tuple[TriggerInclude, ...] = ()
    project: str | None = None
    branch: str | None = None
    strategy: Literal["depend", "mirror"] | None = None
    forward_yaml_variables: bool = True
    forward_pipeline_variables: bool = False

    @property
    def depends(self) -> bool:
        """True when the job's status mirrors the downstream pipeline's."""
        return self.strategy is not None

    def describe(self) -> str:
        """What the job triggers, as `kapal plan` shows it."""
        if self.project is not None:
            branch = f" (branch {self.branch})" if self.branch else ""
            what = f"the pipeline of project {self.project}{branch}"
        else:
            what = "a child pipeline of " + ", ".join(_shown_include(i) for i in self.includes)
        return what + (f", strategy: {self.strategy}" if self.strategy else "")


def _shown_include(include: TriggerInclude) -> str:
    if include.kind == "local":
        return include.path
    if include.kind == "artifact":
        return f"{include.path} (artifact of job {include.job}, made at run time)"
    if include.kind == "project":
        ref = f"@{include.ref}" if include.ref else ""
        return f"{include.project}{ref}:{include.path}"
    return f"{include.kind} {include.path}"


@record
class Job:
    """One concrete job of the pipeline (parallel instances are separate jobs)."""

    name: str
    stage: str
    base_name: str
    script: tuple[str, ...] = ()
    before_script: tuple[str, ...] = ()
    after_script: tuple[str, ...] = ()
    image: ImageSpec | None = None
    services: tuple[ServiceSpec, ...] = ()
    variables: tuple[Variable, ...] = ()
    when: When = "on_success"
    allow_failure: bool = False
    allow_failure_exit_codes: tuple[int, ...] = ()
    retry: RetrySpec = field(default_factory=RetrySpec)
    timeout_seconds: int | None = None
    artifacts: ArtifactsSpec | None = None
    caches: tuple[CacheSpec, ...] = ()
    needs: tuple[Need, ...] | None = None
    waits_for: tuple[str, ...] = ()
    dependencies: tuple[str, ...] | None = None
    environment: EnvironmentSpec | None = None
    coverage: str | None = None
    interruptible: bool = False
    resource_group: str | None = None
    tags: tuple[str, ...] = ()
    # None: the job did not say; jobs and build RUN steps then get the NAT network (the
    # outside world through slirp4netns, not the host)
    network: Literal["none", "host"] | None = None
    build: BuildSpec | None = None
    deploy: DeploySpec | None = None
    parallel_index: int | None = None
    parallel_total: int | None = None
    # `when: delayed`: the job starts this many seconds after it could have started
    start_in_seconds: int | None = None
    # Keywords only a GitLab server honours, left out of this plan: (keyword, what is lost)
    ignored_keywords: tuple[tuple[str, str], ...] = ()
    # What a person is asked to confirm before starting this manual job
    manual_confirmation: str | None = None
    # `trigger:`: the job starts a downstream pipeline (it has no script, image or services)
    trigger: TriggerSpec | None = None
    skip_reason: str | None = None
    run_reason: str | None = None

    @property
    def runs(self) -> bool:
        """True when the job is part of the pipeline that will run (manual jobs included)."""
        return self.skip_reason is None

    @property
    def manual(self) -> bool:
        """True when the job waits for a person to start it."""
        return self.when == "manual"

    def variable(self, name: str) -> str | None:
        """The value of a job variable (the last definition wins), or None."""
        found: str | None = None
        for var in self.variables:
            if var.name == name:
                found = var.value
        return found

    def variables_dict(self) -> dict[str, str]:
        """The job's variables as a dict, later definitions winning (the precedence order)."""
        return {var.name: var.value for var in self.variables}


@record
class Notice:
    """A warning about the pipeline file that did not stop the plan, where it was found."""

    message: str
    file: str = ""
    line: int = 0
    column: int = 0
    job: str | None = None
    keyword: str | None = None
    severity: str = "warning"

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.column}" if self.line else self.file
        return f"{where}: warning: {self.message}" if where else f"warning: {self.message}"


@record
class Plan:
    """A whole pipeline ready to run: stages, pipeline variables, and every job."""

    stages: tuple[str, ...]
    jobs: tuple[Job, ...]
    variables: tuple[Variable, ...] = ()
    source: str = "push"
    ref: str = ""
    is_tag: bool = False
    commit_sha: str = ""
    pipeline_file: str = ""
    workflow_name: str | None = None
    skip_reason: str | None = None
    run_reason: str | None = None
    warnings: tuple[Notice, ...] = ()
    # `workflow: auto_cancel` (GitLab's defaults when not set): which running jobs a newer
    # pipeline for the same ref cancels, and whether one failed job cancels the rest (`all`).
    auto_cancel_on_new_commit: Literal["conservative", "interruptible", "none"] = "conservative"
    auto_cancel_on_job_failure: Literal["none", "all"] = "none"

    @property
    def created(self) -> bool:
        """False when `workflow: rules` decided not to create the pipeline at all."""
        return self.skip_reason is None

    def runnable_jobs(self) -> tuple[Job, ...]:
        """The jobs that run (including manual ones), in file order."""
        return tuple(job for job in self.jobs if job.runs)

    def skipped_jobs(self) -> tuple[Job, ...]:
        """The jobs left out, each with its `skip_reason`."""
        return tuple(job for job in self.jobs if not job.runs)

    def job(self, name: str) -> Job:
        """The job called `name`; KeyError when there is none."""
        for job in self.jobs:
            if job.name == name:
                return job
        raise KeyError(name)

    def edges(self) -> Iterator[tuple[str, str]]:
        """(upstream, downstream) pairs of the DAG over runnable jobs."""
        for job in self.runnable_jobs():
            for upstream in job.waits_for:
                yield upstream, job.name

    def variables_dict(self) -> dict[str, str]:
        """The pipeline variables as a dict, later definitions winning."""
        return {var.name: var.value for var in self.variables}

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of this plan (versioned with `format`)."""
        data = _dump(self)
        assert isinstance(data, dict)
        return {"format": PLAN_FORMAT, **data}

    def to_json(self, *, indent: int | None = None) -> str:
        """This plan as a JSON document."""
        import json  # here: `kapal lint` builds jobs but never serialises a plan

        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False)

    @classmethod
    def from_dict(cls, data: Any) -> Plan:
        """Rebuild a plan from `to_dict()` output; PlanError when the data does not fit."""
        if not isinstance(data, dict):
            raise PlanError("a serialised plan must be a JSON object")
        data = dict(data)
        fmt = data.pop("format", None)
        if fmt != PLAN_FORMAT:
            raise PlanError(f"unsupported plan format {fmt!r} (this kapal reads {PLAN_FORMAT})")
        plan = _load(Plan, data, "plan")
        assert isinstance(plan, Plan)
        return plan

    @classmethod
    def from_json(cls, text: str | bytes) -> Plan:
        """Rebuild a plan from `to_json()` output; PlanError when the text is not such a plan."""
        import json

        try:
            data = json.loads(text)
        except (ValueError, UnicodeDecodeError) as exc:
            raise PlanError(f"a serialised plan is not valid JSON: {exc}") from None
        return cls.from_dict(data)


def _dump(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _dump(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple):
        return [_dump(item) for item in value]
    return value


_Reader = Callable[[Any, str], Any]


def _load(tp: Any, value: Any, where: str) -> Any:
    return _reader(tp)(value, where)


@functools.cache
def _reader(tp: Any) -> _Reader:
    """A function reading JSON data as type `tp` (built once per type: plans can be large)."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return _dataclass_reader(tp)
    if origin in (typing.Union, types.UnionType):
        return _union_reader(typing.get_args(tp))
    if origin is Literal:
        choices = typing.get_args(tp)

        def read_literal(value: Any, where: str) -> Any:
            if value not in choices:
                raise PlanError(f"{where}: {value!r} is not one of {choices}")
            return value

        return read_literal
    if origin is tuple:
        return _tuple_reader(typing.get_args(tp))
    if tp in _SCALARS:
        kind, wanted = _SCALARS[tp]

        def read_scalar(value: Any, where: str) -> Any:
            if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
                raise PlanError(f"{where}: expected {wanted}")
            return value

        return read_scalar
    raise PlanError(f"cannot read a value of type {tp!r}")  # pragma: no cover


_SCALARS: dict[Any, tuple[type, str]] = {
    bool: (bool, "true or false"),
    int: (int, "an integer"),
    str: (str, "a string"),
    type(None): (type(None), "null"),
}


def _dataclass_reader(cls: type) -> _Reader:
    hints = typing.get_type_hints(cls)
    fields = [(f.name, _reader(hints[f.name])) for f in dataclasses.fields(cls)]
    names = {name for name, _ in fields}

    def read(value: Any, where: str) -> Any:
        if not isinstance(value, dict):
            raise PlanError(f"{where}: expected an object for {cls.__name__}")
        unknown = set(value) - names
        if unknown:
            raise PlanError(f"{where}: unknown field(s) {', '.join(sorted(map(str, unknown)))}")
        kwargs = {
            name: reader(value[name], f"{where}.{name}") for name, reader in fields if name in value
        }
        try:
            return cls(**kwargs)
        except TypeError as exc:
            raise PlanError(f"{where}: {exc}") from None

    return read


def _union_reader(args: tuple[Any, ...]) -> _Reader:
    optional = type(None) in args
    readers = [_reader(arg) for arg in args if arg is not type(None)]

    def read(value: Any, where: str) -> Any:
        if value is None and optional:
            return None
        errors = []
        for reader in readers:
            try:
                return reader(value, where)
            except PlanError as exc:
                errors.append(exc.message)
        raise PlanError(errors[0] if errors else f"{where}: unexpected null")

    return read


def _tuple_reader(args: tuple[Any, ...]) -> _Reader:
    if len(args) == 2 and args[1] is Ellipsis:
        item = _reader(args[0])

        def read_all(value: Any, where: str) -> Any:
            if not isinstance(value, list):
                raise PlanError(f"{where}: expected a list")
            return tuple(item(v, f"{where}[{i}]") for i, v in enumerate(value))

        return read_all
    items = [_reader(arg) for arg in args]

    def read_fixed(value: Any, where: str) -> Any:
        if not isinstance(value, list) or len(value) != len(items):
            raise PlanError(f"{where}: expected a list of {len(items)} items")
        return tuple(
            r(v, f"{where}[{i}]") for i, (r, v) in enumerate(zip(items, value, strict=True))
        )

    return read_fixed
