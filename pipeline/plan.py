"""The `Plan`: what a runner needs to execute one pipeline, with nothing of YAML left in it.

`pipeline.plan(document, context)` builds a `Plan`; `runner` consumes only this module's types.
Every type here is a frozen dataclass whose fields are strings, numbers, booleans, None, tuples
or other such dataclasses, so a plan is immutable, hashable where its contents are, and
round-trips through JSON with `Plan.to_json()` / `Plan.from_json()` (the JSON is versioned by
`PLAN_FORMAT`).

Shape::

    Plan
    ├── stages, variables (predefined + file, in precedence order), trigger facts, skip_reason
    └── jobs: Job, by stage then file order, parallel instances expanded ("test 1/3", "t: [a, b]")
        ├── image: ImageSpec, services: ServiceSpec...
        ├── variables: Variable... (predefined, pipeline, job, matrix, rules, trigger; last wins)
        ├── before_script / script / after_script (lists of shell lines)
        ├── when, allow_failure (+ exit codes), retry, timeout, artifacts, caches
        ├── needs: Need... (concrete job names) or None for stage ordering; `waits_for` resolved
        ├── environment, interruptible, resource_group, tags, network, build, deploy
        └── skip_reason: why the job does not run (None when it runs)

Variable values are stored as written (after YAML, before `$VAR` expansion); the runner expands
them at run time against the job's own variables, the way GitLab's runner does. CI_JOB_ID is the
job's 1-based position in the plan; a runner that has real job ids replaces it.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from pipeline.errors import PlanError

PLAN_FORMAT = 1

VariableSource = Literal["predefined", "trigger", "pipeline", "job", "matrix", "rule", "service"]
When = Literal["on_success", "on_failure", "always", "manual"]


@dataclass(frozen=True)
class Variable:
    """One CI variable: its name, its value as written, where it came from, whether to expand it."""

    name: str
    value: str
    source: VariableSource
    expand: bool = True


@dataclass(frozen=True)
class ImageSpec:
    """The image a job runs in; `has_variables` when the name needs `$VAR` expansion."""

    name: str
    entrypoint: tuple[str, ...] | None = None
    has_variables: bool = False


@dataclass(frozen=True)
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


@dataclass(frozen=True)
class RetrySpec:
    """How often a failed job is retried (0-2) and on which failure kinds (`retry:when`)."""

    max: int = 0
    when: tuple[str, ...] = ("always",)
    exit_codes: tuple[int, ...] = ()


@dataclass(frozen=True)
class ArtifactsSpec:
    """Files kept after a job: paths/exclude globs, when, for how long, JUnit reports."""

    paths: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    when: Literal["on_success", "on_failure", "always"] = "on_success"
    expire_in: str | None = None
    expire_in_seconds: int | None = None
    untracked: bool = False
    name: str | None = None
    junit: tuple[str, ...] = ()


@dataclass(frozen=True)
class CacheSpec:
    """One cache: a key (a string, or derived from the contents of `key_files`), paths, policy."""

    key: str = "default"
    key_files: tuple[str, ...] = ()
    key_prefix: str | None = None
    paths: tuple[str, ...] = ()
    policy: Literal["pull-push", "pull", "push"] = "pull-push"
    when: Literal["on_success", "on_failure", "always"] = "on_success"
    untracked: bool = False


@dataclass(frozen=True)
class Need:
    """One `needs:` entry resolved to a concrete job name."""

    job: str
    artifacts: bool = True
    optional: bool = False


@dataclass(frozen=True)
class EnvironmentSpec:
    """The environment a job deploys to (`CI_ENVIRONMENT_NAME`)."""

    name: str
    url: str | None = None
    action: Literal["start", "prepare", "stop", "verify", "access"] = "start"


@dataclass(frozen=True)
class BuildSpec:
    """kapal's `build:` extension: build an image with the embedded builder, maybe push it."""

    context: str = "."
    dockerfile: str = "Dockerfile"
    tags: tuple[str, ...] = ()
    build_args: tuple[tuple[str, str], ...] = ()
    target: str | None = None
    push: bool = False


@dataclass(frozen=True)
class DeployServiceSpec:
    """kapal's `deploy: service:`: run the shipped image as a long-lived service."""

    name: str
    port: int | None = None
    health: str | None = None


@dataclass(frozen=True)
class DeploySpec:
    """kapal's `deploy:` extension: ship `image` to `to`, maybe run it as a service."""

    image: str
    to: str | None = None
    service: DeployServiceSpec | None = None


@dataclass(frozen=True)
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
    network: Literal["none", "host"] = "none"
    build: BuildSpec | None = None
    deploy: DeploySpec | None = None
    parallel_index: int | None = None
    parallel_total: int | None = None
    skip_reason: str | None = None

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


@dataclass(frozen=True)
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


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    # get_type_hints is slow; the dataclasses here never change, so resolving once is enough.
    return typing.get_type_hints(cls)


def _load(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if not isinstance(value, dict):
            raise PlanError(f"{where}: expected an object for {tp.__name__}")
        hints = _hints(tp)
        kwargs: dict[str, Any] = {}
        names = {f.name for f in dataclasses.fields(tp)}
        unknown = set(value) - names
        if unknown:
            raise PlanError(f"{where}: unknown field(s) {', '.join(sorted(map(str, unknown)))}")
        for f in dataclasses.fields(tp):
            if f.name in value:
                kwargs[f.name] = _load(hints[f.name], value[f.name], f"{where}.{f.name}")
        try:
            return tp(**kwargs)
        except TypeError as exc:
            raise PlanError(f"{where}: {exc}") from None
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _load(arg, value, where)
            except PlanError as exc:
                errors.append(exc.message)
        raise PlanError(errors[0] if errors else f"{where}: unexpected null")
    if origin is Literal:
        if value not in typing.get_args(tp):
            raise PlanError(f"{where}: {value!r} is not one of {typing.get_args(tp)}")
        return value
    if origin is tuple:
        if not isinstance(value, list):
            raise PlanError(f"{where}: expected a list")
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_load(args[0], item, f"{where}[{i}]") for i, item in enumerate(value))
        if len(args) != len(value):
            raise PlanError(f"{where}: expected {len(args)} items")
        return tuple(
            _load(a, item, f"{where}[{i}]")
            for i, (a, item) in enumerate(zip(args, value, strict=True))
        )
    if tp is bool:
        if not isinstance(value, bool):
            raise PlanError(f"{where}: expected true or false")
        return value
    if tp is int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise PlanError(f"{where}: expected an integer")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise PlanError(f"{where}: expected a string")
        return value
    if tp is type(None):
        if value is not None:
            raise PlanError(f"{where}: expected null")
        return None
    raise PlanError(f"{where}: cannot read a value of type {tp!r}")  # pragma: no cover
