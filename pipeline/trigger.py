"""`trigger:`: a job that starts a downstream pipeline, read and checked as GitLab does.

Forms (GitLab's Bridge and Trigger entries)::

    job: {trigger: group/project}                       # another project's pipeline (shorthand)
    job: {trigger: {project: group/project, branch: main, strategy: depend, forward: {...}}}
    job: {trigger: {include: ci/child.yml}}             # a child pipeline of this repository
    job: {trigger: {include: [{local: a.yml}, {artifact: gen.yml, job: generate}],
                    strategy: depend, forward: {yaml_variables: true, pipeline_variables: false}}}

A trigger job runs no script: only `TRIGGER_JOB_KEYWORDS` may go with `trigger:`. A child
pipeline's files are local to the repository (read through `pipeline.repofiles`, never out of
it), so `kapal lint` and `kapal plan` check them as pipelines of their own, their problems
positioned in the child's files; a child made at run time from an artifact is checked when it
exists. Another project's pipeline needs a GitLab server: planned with a warning, failed at run
time. Child pipelines nest at most `MAX_CHILD_DEPTH` levels below their parent.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from pipeline.config import PipelineConfig, VariableDef
from pipeline.context import TriggerContext
from pipeline.document import Document, YList, YMap, as_top_level, describe, loads
from pipeline.errors import Location, PipelineError, PipelineWarning, ValidationError
from pipeline.globs import expand_variables
from pipeline.keywords import (
    JOB_KEYWORDS,
    MAX_CHILD_DEPTH,
    MAX_TRIGGER_INCLUDES,
    TRIGGER_JOB_KEYWORDS,
    TRIGGER_STRATEGIES,
    TRIGGER_WHEN,
)
from pipeline.plan import Job, Plan, TriggerInclude, TriggerSpec
from pipeline.records import record
from pipeline.remote import RemoteFetcher
from pipeline.suggest import name_hint

if TYPE_CHECKING:
    from pipeline.validate import _Checker

__all__ = [
    "SERVER_ONLY_TRIGGER",
    "TriggerReader",
    "TriggerSite",
    "check_downstream",
    "child_context",
    "child_document",
    "forwarded_variables",
    "plan_child",
]

SERVER_ONLY_TRIGGER = (
    "`trigger: project` starts another project's pipeline, which needs a GitLab server; "
    "kapal plans the job and fails it when it runs"
)
_INCLUDE_KINDS = ("local", "artifact", "remote", "project", "template", "component")
_INCLUDE_KEYS = {
    "local": {"local"},
    "artifact": {"artifact", "job"},
    "remote": {"remote"},
    "project": {"project", "file", "ref"},
    "template": {"template"},
    "component": {"component"},
}
_FORWARD_KEYS = ("yaml_variables", "pipeline_variables")
MAX_CHILDREN_CHECKED = 25
"""How many different child pipelines of one pipeline `kapal lint` checks (the rest at run time)."""

ValidateChild = Callable[..., tuple[PipelineConfig | None, list[PipelineError]]]


@record
class TriggerSite:
    """A trigger job as written: what `check_downstream` needs to check its child pipeline."""

    job: str
    spec: TriggerSpec
    trigger_at: Location
    include: Any  # `trigger: include:` as written (with positions), None for a project
    include_at: Location
    variables: tuple[VariableDef, ...]


class TriggerReader:
    """Reads `trigger:` of a job through a validator's checker (errors recorded on it)."""

    def __init__(self, checker: _Checker) -> None:
        self.checker = checker
        self.sites: list[TriggerSite] = []

    def check_job_keys(self, job: YMap, name: str) -> None:
        """Report the keywords a trigger job may not hold (GitLab's Bridge allows few)."""
        for key in job:
            if not isinstance(key, str) or key in TRIGGER_JOB_KEYWORDS or key not in JOB_KEYWORDS:
                continue  # unknown keys are reported by the job's own check
            if key == "script":
                message = (
                    "`script:` and `trigger:` cannot be used together: a trigger job starts a "
                    "downstream pipeline and runs no script; move the commands into another job "
                    "or into the child pipeline"
                )
            else:
                message = (
                    f"`{key}:` cannot be used in a trigger job (one with `trigger:`), which runs "
                    "nothing itself; it takes only "
                    + ", ".join(sorted(TRIGGER_JOB_KEYWORDS - {"trigger"}))
                )
            self.checker.error(message, job.key_at(key), f"{name}: {key}")
        when = job.get("when")
        if isinstance(when, str) and when not in TRIGGER_WHEN and when != "never":
            self.checker.error(
                f"{when!r} is not allowed for a trigger job; it takes {', '.join(TRIGGER_WHEN)}",
                job.value_at("when"),
                f"{name}: when",
            )
        parallel = job.get("parallel")
        if "parallel" in job and not (isinstance(parallel, YMap) and "matrix" in parallel):
            self.checker.error(
                "a trigger job takes only `parallel: matrix:` (GitLab), not a number of copies",
                job.value_at("parallel"),
                f"{name}: parallel",
            )

    def read(self, job: YMap, name: str, variables: tuple[VariableDef, ...]) -> TriggerSpec | None:
        """`trigger:` of `job` as a TriggerSpec; None (with errors recorded) when it is wrong."""
        path = f"{name}: trigger"
        value = job["trigger"]
        where = job.value_at("trigger")
        if isinstance(value, str):
            if not value.strip():
                self.checker.error(_EMPTY_TRIGGER, where, path)
                return None
            spec = TriggerSpec(project=value)
            self._remember(name, spec, job, None, where, variables)
            return spec
        if not isinstance(value, YMap):
            self.checker.error(
                "expected a project path or a mapping with `include:` (a child pipeline) or "
                f"`project:` (another project's pipeline), found {describe(value)}",
                where,
                path,
            )
            return None
        if not value:
            self.checker.error(_EMPTY_TRIGGER, where, path)
            return None
        if "include" in value and "project" in value:
            self.checker.error(
                "`include:` (a child pipeline) and `project:` (another project's pipeline) "
                "cannot be used together; write two trigger jobs",
                value.key_at("project"),
                path,
            )
            return None
        if "include" not in value and "project" not in value:
            self.checker.error(
                "config must specify either `project:` (another project's pipeline) or "
                "`include:` (a child pipeline's files)",
                value.location,
                path,
            )
            return None
        child = "include" in value
        allowed = ("include", "strategy", "forward") if child else _PROJECT_KEYS
        self.checker.keys(value, allowed, {}, path)
        strategy = self.checker.choice(value, "strategy", TRIGGER_STRATEGIES, f"{path}: strategy")
        yaml_vars, pipeline_vars = self._forward(value, path)
        common = {
            "strategy": strategy,
            "forward_yaml_variables": yaml_vars,
            "forward_pipeline_variables": pipeline_vars,
        }
        if not child:
            project = self.checker.string(value, "project", f"{path}: project")
            branch = self.checker.string(value, "branch", f"{path}: branch")
            if project is None or not project.strip():
                if project is not None:
                    self.checker.error(_EMPTY_TRIGGER, value.value_at("project"), path)
                return None
            spec = TriggerSpec(project=project, branch=branch, **common)  # type: ignore[arg-type]
            self._remember(name, spec, job, None, where, variables)
            return spec
        includes = self._includes(value["include"], value.value_at("include"), f"{path}: include")
        if includes is None:
            return None
        spec = TriggerSpec(includes=includes, **common)  # type: ignore[arg-type]
        self._remember(name, spec, job, value["include"], value.value_at("include"), variables)
        return spec

    def _remember(
        self,
        name: str,
        spec: TriggerSpec,
        job: YMap,
        include: Any,
        include_at: Location,
        variables: tuple[VariableDef, ...],
    ) -> None:
        self.sites.append(
            TriggerSite(name, spec, job.key_at("trigger"), include, include_at, variables)
        )

    def _forward(self, value: YMap, path: str) -> tuple[bool, bool]:
        if "forward" not in value:
            return True, False
        forward = value["forward"]
        if not isinstance(forward, YMap):
            self.checker.error(
                "expected a mapping like {yaml_variables: true, pipeline_variables: false}, "
                f"found {describe(forward)}",
                value.value_at("forward"),
                f"{path}: forward",
            )
            return True, False
        self.checker.keys(forward, _FORWARD_KEYS, {}, f"{path}: forward")
        yaml_vars = self.checker.boolean(forward, "yaml_variables", f"{path}: forward")
        pipeline_vars = self.checker.boolean(forward, "pipeline_variables", f"{path}: forward")
        return (
            True if yaml_vars is None else yaml_vars,
            False if pipeline_vars is None else pipeline_vars,
        )

    def _includes(
        self, value: Any, where: Location, path: str
    ) -> tuple[TriggerInclude, ...] | None:
        items: list[tuple[Any, Location]]
        if isinstance(value, YList):
            items = [(item, value.item_at(i)) for i, item in enumerate(value)]
        else:
            items = [(value, where)]
        if not items:
            self.checker.error("must name at least one file of the child pipeline", where, path)
            return None
        if len(items) > MAX_TRIGGER_INCLUDES:
            self.checker.error(
                f"a child pipeline is made of at most {MAX_TRIGGER_INCLUDES} files (as in "
                f"GitLab), found {len(items)}; include the others from one of them",
                where,
                path,
            )
            return None
        out: list[TriggerInclude] = []
        for item, at in items:
            entry = self._include(item, at, path)
            if entry is None:
                return None
            out.extend(entry)
        return tuple(out)

    def _include(self, item: Any, at: Location, path: str) -> list[TriggerInclude] | None:
        if isinstance(item, str) and item.strip():
            remote = item.startswith(("http://", "https://"))
            return [TriggerInclude(kind="remote" if remote else "local", path=item)]
        if not isinstance(item, YMap):
            self.checker.error(
                "expected a file path or a mapping like {local: path} or "
                f"{{artifact: path, job: name}}, found {describe(item)}",
                at,
                path,
            )
            return None
        kinds = [k for k in _INCLUDE_KINDS if k in item]
        if len(kinds) != 1:
            self.checker.error(
                "each entry names one file: `local:`, `artifact:` with `job:`, `remote:`, "
                "`project:` with `file:`, `template:` or `component:`",
                item.location,
                path,
            )
            return None
        kind = kinds[0]
        if "rules" in item:
            self.checker.unsupported(
                "`rules:` on a child pipeline's file is not supported by kapal yet (GitLab "
                "has not settled it either); put `rules:` on the trigger job",
                item.key_at("rules"),
                f"{path}: rules",
            )
            return None
        allowed = _INCLUDE_KEYS[kind] | ({"inputs"} if kind != "artifact" else set())
        self.checker.keys(item, allowed, {}, path)
        if any(key not in allowed for key in item):
            return None
        inputs = None
        if "inputs" in item:
            given = item["inputs"]
            if not isinstance(given, YMap):
                self.checker.error(
                    f"expected a mapping of input names to values, found {describe(given)}",
                    item.value_at("inputs"),
                    f"{path}: inputs",
                )
                return None
            import json  # only for a trigger that gives inputs

            try:
                inputs = json.dumps(given, ensure_ascii=False)
            except (TypeError, ValueError):  # a key that is no name (a list, say)
                self.checker.error(
                    "input names must be names and values plain YAML",
                    item.value_at("inputs"),
                    f"{path}: inputs",
                )
                return None
        text = self.checker.string(item, kind, f"{path}: {kind}")
        if text is None or not text.strip():
            if text is not None:
                self.checker.error("must not be empty", item.value_at(kind), f"{path}: {kind}")
            return None
        if kind == "artifact":
            job = self.checker.string(item, "job", f"{path}: job")
            if job is None:
                if "job" not in item:
                    self.checker.error(
                        "`artifact:` needs `job:`, the job whose artifact holds the file",
                        item.location,
                        path,
                    )
                return None
            return [TriggerInclude(kind="artifact", path=text, job=job)]
        if kind == "project":
            files = self.checker.strings(item, "file", f"{path}: file")
            ref = self.checker.string(item, "ref", f"{path}: ref")
            if not files:
                if "file" not in item:
                    self.checker.error("`project:` needs `file:`", item.location, path)
                return None
            return [
                TriggerInclude(kind="project", path=f, project=text, ref=ref, inputs=inputs)
                for f in files
            ]
        return [TriggerInclude(kind=kind, path=text, inputs=inputs)]  # type: ignore[arg-type]


_PROJECT_KEYS = ("project", "branch", "strategy", "forward")
_EMPTY_TRIGGER = (
    "must name what to trigger: a child pipeline (`trigger: {include: path/child.yml}`) or "
    "another project (`trigger: group/project`)"
)


def forwarded_variables(
    spec: TriggerSpec,
    yaml_variables: Iterable[tuple[str, str]],
    pipeline_variables: Iterable[tuple[str, str]],
) -> tuple[tuple[str, str], ...]:
    """The variables a downstream pipeline receives, in precedence order (later wins).

    GitLab passes the trigger job's YAML variables (its own and the pipeline's `variables:`)
    unless `forward: yaml_variables: false`, and the pipeline's trigger, schedule and manual
    variables when `forward: pipeline_variables: true`.
    """
    out: list[tuple[str, str]] = []
    if spec.forward_yaml_variables:
        out.extend(yaml_variables)
    if spec.forward_pipeline_variables:
        out.extend(pipeline_variables)
    return tuple(out)


def child_context(
    parent: TriggerContext, variables: tuple[tuple[str, str], ...], pipeline_id: int | None = None
) -> TriggerContext:
    """The trigger of a child pipeline: the parent's commit, source `parent_pipeline`."""
    return dataclasses.replace(
        parent,
        source="parent_pipeline",
        variables=variables,
        pipeline_id=parent.pipeline_id if pipeline_id is None else pipeline_id,
    )


def child_document(
    includes: tuple[TriggerInclude, ...],
    *,
    root_dir: str,
    parent_file: str,
    artifacts: dict[tuple[str, str], str] | None = None,
) -> Document:
    """The configuration of a child pipeline: its files merged as `include:` merges them.

    `artifacts` holds the text of each `artifact` include by (job, path), read by the caller
    (the runner, from the job's stored artifacts). The generated file is the child's main file;
    the trigger's other files are included before its own `include:`. LoadError when the
    generated file is not a pipeline.
    """
    where = Location(parent_file)
    entries = YList(where)
    main: Document | None = None
    for include in includes:
        if include.kind == "artifact":
            assert include.job is not None
            text = (artifacts or {}).get((include.job, include.path))
            if text is None:
                raise ValidationError(
                    f"the artifact {include.path!r} of job {include.job!r} was not read",
                    where,
                )
            main = loads(
                text, filename=f"{include.path} (artifact of job {include.job})", root_dir=root_dir
            )
            main.data = as_top_level(main.data, main.path)
            continue
        entry = YMap(where)
        key = include.kind
        entry.set(key, include.project if key == "project" else include.path, where, where)
        if key == "project":
            entry.set("file", include.path, where, where)
            if include.ref is not None:
                entry.set("ref", include.ref, where, where)
        if include.inputs is not None:
            import json  # only for a trigger that gives inputs

            entry.set("inputs", _positioned(json.loads(include.inputs), where), where, where)
        entries.add(entry, where)
    if main is None:
        data = YMap(where)
        data.set("include", entries, where, where)
        return Document(path=parent_file, root_dir=root_dir, data=data)
    if entries:
        own = main.data.get("include")
        if isinstance(own, YList):
            for i, item in enumerate(own):
                entries.add(item, own.item_at(i))
        elif own is not None:
            entries.add(own, main.data.value_at("include"))
        merged = YMap(main.data.location)
        merged.set("include", entries, where, where)
        for key in main.data:
            if key != "include":
                merged.copy_entry(main.data, key)
        main.data = merged
    return main


def _positioned(value: Any, where: Location) -> Any:
    """Plain JSON data as the YMap/YList a loaded file holds, every item at `where`."""
    if isinstance(value, dict):
        mapping = YMap(where)
        for key, item in value.items():
            mapping.set(key, _positioned(item, where), where, where)
        return mapping
    if isinstance(value, list):
        items = YList(where)
        for item in value:
            items.add(_positioned(item, where), where)
        return items
    return value


def check_downstream(
    sites: list[TriggerSite],
    config: PipelineConfig | None,
    *,
    document: Document,
    context: TriggerContext | None,
    remote: RemoteFetcher | None,
    depth: int,
    validate_child: ValidateChild,
) -> list[PipelineError]:
    """The problems of a pipeline's trigger jobs and of the child pipelines they start.

    Each child made of local (or fetched) files is validated as a pipeline `depth + 1` levels
    below the first; its problems are positioned in its own files. A trigger `depth` levels
    down that would pass `MAX_CHILD_DEPTH` is an error; `trigger: project` a warning. The same
    files are checked once (again per variables when their paths hold `$`), and at most
    `MAX_CHILDREN_CHECKED` children per pipeline: a file cannot make lint check without end.
    """
    problems: list[PipelineError] = []
    checked: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
    names = {job.name for job in config.jobs} if config is not None else set()
    seen: set[tuple[str, str]] = set()
    base = context or TriggerContext(branch=TriggerContext().default_branch)
    globals_ = config.variables if config is not None else ()
    for site in sites:
        if site.spec.project is not None:
            problems.append(
                PipelineWarning(
                    f"{site.job}: trigger: {SERVER_ONLY_TRIGGER}; `--strict` refuses it",
                    dataclasses.replace(site.trigger_at, keyword=f"{site.job}: trigger"),
                )
            )
            continue
        if depth >= MAX_CHILD_DEPTH:
            problems.append(
                ValidationError(
                    f"{site.job}: trigger: this pipeline is already a child pipeline {depth} "
                    f"levels below its parent, and GitLab nests child pipelines at most "
                    f"{MAX_CHILD_DEPTH} levels deep; move these jobs into this pipeline",
                    dataclasses.replace(site.trigger_at, keyword=f"{site.job}: trigger"),
                )
            )
            continue
        artifacts = [i for i in site.spec.includes if i.kind == "artifact"]
        for include in artifacts:
            if config is not None and include.job not in names:
                assert include.job is not None
                problems.append(
                    ValidationError(
                        f"{site.job}: trigger: include: job {include.job!r} is not a job in "
                        f"this pipeline{name_hint(include.job, names)}; `artifact:` reads the "
                        "file from the artifacts of an earlier job",
                        dataclasses.replace(site.include_at, keyword=f"{site.job}: trigger"),
                    )
                )
        if artifacts:
            continue  # the child's configuration exists once that job has run
        yaml_vars = [(v.name, v.value) for v in (*globals_, *site.variables)]
        variables = forwarded_variables(site.spec, yaml_vars, base.variables)
        written = repr(site.include)
        key = (written, variables if "$" in written else ())
        if key in checked:
            continue
        if len(checked) == MAX_CHILDREN_CHECKED:
            problems.append(
                PipelineWarning(
                    f"{site.job}: trigger: the child pipelines of more than "
                    f"{MAX_CHILDREN_CHECKED} trigger jobs are checked when they run, not now",
                    dataclasses.replace(site.trigger_at, keyword=f"{site.job}: trigger"),
                )
            )
            break
        checked.add(key)
        data = YMap(site.include_at)
        data.set("include", site.include, site.include_at, site.include_at)
        child = Document(path=document.path, root_dir=document.root_dir, data=data)
        _, found = validate_child(child, child_context(base, variables), remote, depth=depth + 1)
        empty = [p for p in found if p.location == site.include_at and "has no jobs" in p.message]
        if len(empty) < len([p for p in found if p.severity == "error"]):
            found = [p for p in found if p not in empty]  # what broke the files says it
        for problem in found:
            mark = (str(problem.location), problem.message)
            if mark not in seen:  # two trigger jobs may start the same child
                seen.add(mark)
                problems.append(problem)
    return problems


_YAML_SOURCES = ("pipeline", "job", "matrix", "rule")


def trigger_job_variables(
    job: Job, dotenv: Mapping[str, str] | None = None
) -> tuple[tuple[str, str], ...]:
    """What a planned trigger job forwards to its downstream pipeline, values expanded.

    Its YAML variables (the pipeline's `variables:`, its own, matrix and rules ones) expanded
    against all of the job's variables, as GitLab expands a bridge's variables (unless
    `expand: false`), and the `dotenv` report variables of the jobs it needs (GitLab 16.7+,
    winning over the file's variables); then the pipeline's trigger variables when
    `forward: pipeline_variables`.
    """
    assert job.trigger is not None
    trigger_vars = [(v.name, v.value) for v in job.variables if v.source == "trigger"]
    values = {**job.variables_dict(), **(dotenv or {}), **dict(trigger_vars)}
    yaml_vars = [
        (v.name, expand_variables(v.value, values) if v.expand else v.value)
        for v in job.variables
        if v.source in _YAML_SOURCES
    ]
    yaml_vars += list((dotenv or {}).items())
    return forwarded_variables(job.trigger, yaml_vars, trigger_vars)


def plan_child(
    job: Job,
    *,
    parent_context: TriggerContext,
    root_dir: str,
    parent_file: str,
    depth: int,
    pipeline_id: int,
    artifacts: dict[tuple[str, str], str] | None = None,
    remote: RemoteFetcher | None = None,
    dotenv: Mapping[str, str] | None = None,
) -> Plan:
    """Plan the child pipeline a trigger job starts, `depth` levels below the first pipeline.

    `artifacts` holds the generated files of `artifact` includes, `dotenv` the dotenv report
    variables of the jobs the trigger job needs (see `trigger_job_variables`).

    PipelineError when it cannot be planned: too deep, a file missing or wrong (positioned in
    the child's files), another project's pipeline (needs a GitLab server).
    """
    from pipeline.planner import plan  # the planner imports validate, which imports this module
    from pipeline.validate import validate_collecting

    spec = job.trigger
    assert spec is not None
    where = Location(parent_file, keyword=f"{job.name}: trigger")
    if spec.project is not None:
        raise ValidationError(f"{job.name}: {SERVER_ONLY_TRIGGER}", where)
    if depth > MAX_CHILD_DEPTH:
        raise ValidationError(
            f"{job.name}: a child pipeline {depth} levels below the first one: GitLab nests "
            f"child pipelines at most {MAX_CHILD_DEPTH} levels deep",
            where,
        )
    context = child_context(parent_context, trigger_job_variables(job, dotenv), pipeline_id)
    document = child_document(
        spec.includes, root_dir=root_dir, parent_file=parent_file, artifacts=artifacts
    )
    config, found = validate_collecting(document, context, remote, depth=depth)
    problems = [p for p in found if p.severity == "error"]
    if config is None or problems:
        if len(problems) == 1:
            raise problems[0]
        raise ValidationError(
            f"the child pipeline of {job.name!r} has {len(problems)} problems:\n"
            + "\n".join(str(p) for p in problems),
            where,
            problems=problems,
        )
    return plan(config, context)
