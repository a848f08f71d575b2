"""`plan()`: evaluate a validated pipeline against a trigger and produce the `Plan`.

Order, as GitLab does it: `workflow: rules` decide whether there is a pipeline at all; each job
is expanded for `parallel` / `parallel: matrix` (so rules can see matrix variables); `rules` or
`only`/`except` decide whether each instance is added, with which `when`, `allow_failure` and
extra variables; `needs` and `dependencies` are resolved to concrete job names; each running
job gets `waits_for` (its needs, or every running job of earlier stages); cycles are reported.

Variable precedence, lowest first (later wins): predefined, pipeline (`variables:` at the top,
as `inherit: variables` allows, then `workflow: rules: variables`), job, matrix, rules, trigger
(the context's variables, like GitLab's pipeline/schedule variables).
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import re
from collections.abc import Mapping
from pathlib import Path

from pipeline.config import (
    JobConfig,
    MatrixEntry,
    NeedConfig,
    PipelineConfig,
    RefFilter,
    RuleConfig,
    VariableDef,
    shown_list,
)
from pipeline.context import TriggerContext
from pipeline.document import Document
from pipeline.errors import ExpressionError, Location, PipelineError, PlanError
from pipeline.expressions import Expression, evaluate, parse_expression
from pipeline.globs import expand_variables, matches_changes, matches_exists
from pipeline.keywords import ONLY_REF_KEYWORDS
from pipeline.plan import Job, Need, Notice, Plan, Variable
from pipeline.predefined import job_variables, pipeline_variables
from pipeline.records import record
from pipeline.regex import compile_regex, split_ref_pattern
from pipeline.remote import RemoteFetcher
from pipeline.validate import find_cycle, validate

_DEFAULT_ONLY = ("branches", "tags")
_MATRIX_EXPRESSION = re.compile(r"\$\[\[\s*matrix\.([^\s\]]+)\s*\]\]")
_RULES_SHOWN = 3
"""How many failed rules a "no rule matched" reason names before it says how many more."""
MAX_LISTED_FILES = 100_000


@record
class _Instance:
    config: JobConfig
    name: str
    index: int | None
    total: int | None
    matrix: tuple[tuple[str, str], ...]


@record
class _Decision:
    """Whether a pipeline or job is created; `reason` says why either way (for `kapal plan`)."""

    runs: bool
    reason: str | None = None
    when: str = "on_success"
    allow_failure: bool = False
    exit_codes: tuple[int, ...] = ()
    variables: tuple[VariableDef, ...] = ()
    explicit_allow_failure: bool = False
    rule_sets_when: bool = False
    start_in_seconds: int | None = None
    auto_cancel: tuple[str | None, str | None] | None = None
    needs: tuple[NeedConfig, ...] | None = None
    interruptible: bool | None = None


def plan(
    document: Document | PipelineConfig,
    context: TriggerContext,
    remote: RemoteFetcher | None = None,
) -> Plan:
    """Plan a pipeline for a trigger; PipelineError (only) when the file or the plan is wrong.

    `remote` fetches `include: remote` files; without one they are errors.
    """
    if isinstance(document, PipelineConfig):
        config = document
    else:
        config = validate(document, context, remote)
    try:
        return _Planner(config, context).run()
    except RecursionError:
        raise PlanError(
            "the pipeline is too deeply nested to plan", Location(config.path)
        ) from None


def notice(problem: PipelineError) -> Notice:
    """A warning as the plan carries it."""
    fields = problem.as_dict()
    return Notice(
        message=fields["message"],
        file=fields["file"],
        line=fields["line"],
        column=fields["column"],
        job=fields["job"],
        keyword=fields["keyword"],
    )


def _as_variables(defs: tuple[VariableDef, ...], source: str) -> tuple[Variable, ...]:
    return tuple(Variable(d.name, d.value, source, d.expand) for d in defs)  # type: ignore[arg-type]


def _as_dict(variables: tuple[Variable, ...]) -> dict[str, str]:
    return {v.name: v.value for v in variables}


class _Planner:
    def __init__(self, config: PipelineConfig, context: TriggerContext) -> None:
        self.config = config
        self.context = context
        self.trigger = tuple(Variable(k, v, "trigger") for k, v in context.variables)
        self._listed: tuple[str, ...] | None = None
        self._parsed: dict[str, Expression] = {}
        self.instance_of: dict[str, _Instance] = {}
        self.rule_needs: dict[str, tuple[NeedConfig, ...]] = {}
        self.predefined = pipeline_variables(
            context, config_path=config.path, workflow_name=config.workflow_name
        )

    def run(self) -> Plan:
        """Build the whole plan."""
        config = self.config
        file_vars = _as_variables(config.variables, "pipeline")
        workflow = self.workflow(_as_dict(self.predefined + file_vars + self.trigger))
        workflow_vars = _as_variables(workflow.variables, "rule")
        pipeline_vars = self.predefined + file_vars + workflow_vars + self.trigger
        instances = [inst for job in config.jobs for inst in self.expand(job)]
        stage_order = {stage: i for i, stage in enumerate(config.stages)}
        instances.sort(key=lambda inst: stage_order.get(inst.config.template.stage, 0))
        jobs: list[Job] = []
        for position, inst in enumerate(instances, start=1):
            jobs.append(self.job(inst, position, file_vars + workflow_vars, workflow))
        jobs = self.link(jobs, instances, stage_order)
        new_commit, job_failure = config.auto_cancel
        if workflow.auto_cancel is not None:
            # A matching workflow rule's auto_cancel wins over workflow: auto_cancel.
            new_commit = workflow.auto_cancel[0] or new_commit
            job_failure = workflow.auto_cancel[1] or job_failure
        return Plan(
            stages=config.stages,
            jobs=tuple(jobs),
            variables=pipeline_vars,
            source=self.context.source,
            ref=self.context.ref,
            is_tag=self.context.tag is not None,
            commit_sha=self.context.commit_sha,
            pipeline_file=config.path,
            workflow_name=config.workflow_name,
            skip_reason=None if workflow.runs else workflow.reason,
            run_reason=workflow.reason if workflow.runs else None,
            auto_cancel_on_new_commit=new_commit or "conservative",  # type: ignore[arg-type]
            auto_cancel_on_job_failure=job_failure or "none",  # type: ignore[arg-type]
            warnings=tuple(notice(w) for w in config.warnings),
        )

    # workflow and job decisions ------------------------------------------------------------
    def workflow(self, variables: Mapping[str, str]) -> _Decision:
        """Whether `workflow: rules` create the pipeline, and with which variables."""
        rules = self.config.workflow_rules
        if rules is None:
            return _Decision(True)
        decision = self.rules(rules, variables, default_when="always")
        return dataclasses.replace(decision, reason=f"workflow: rules: {decision.reason}")

    def rules(
        self,
        rules: tuple[RuleConfig, ...],
        variables: Mapping[str, str],
        default_when: str,
    ) -> _Decision:
        """The decision of the first matching rule (not added when none matches)."""
        tried: list[str] = []
        for i, rule in enumerate(rules):
            failed = self.rule_failure(rule, variables)
            if failed is not None:
                tried.append(f"rule {i + 1}: {failed}")
                continue
            when = rule.when or default_when
            if when == "never":
                return _Decision(False, f"{rule.describe(i)} says when: never")
            return _Decision(
                True,
                f"{rule.describe(i)} matched{self.unknown_changes_note(rule.changes)}",
                when=when,
                allow_failure=bool(rule.allow_failure),
                exit_codes=rule.allow_failure_exit_codes,
                variables=rule.variables,
                explicit_allow_failure=rule.allow_failure is not None,
                rule_sets_when=rule.when is not None,
                start_in_seconds=rule.start_in_seconds,
                auto_cancel=rule.auto_cancel,
                needs=rule.needs,
                interruptible=rule.interruptible,
            )
        if not tried:
            return _Decision(False, "no rule matched (the list is empty)")
        shown = "; ".join(tried[:_RULES_SHOWN])
        if len(tried) > _RULES_SHOWN:
            shown += f"; … {len(tried) - _RULES_SHOWN} more"
        return _Decision(False, f"no rule matched ({shown})")

    def unknown_changes_note(self, changes: tuple[str, ...] | None) -> str:
        """Why `changes:` matched without a list of changed files (GitLab: then it always does)."""
        if changes is None or self.context.changed_files is not None:
            return ""
        return " (the changed files are unknown, so `changes` counts as matched)"

    def rule_failure(self, rule: RuleConfig, variables: Mapping[str, str]) -> str | None:
        """The first condition of a rule (if, changes, exists) that fails, or None if all hold."""
        if rule.if_text is not None and not self.expression(rule.if_text, variables, rule.location):
            return f"if {rule.if_text} is false"
        if rule.changes is not None and not matches_changes(
            rule.changes, self.context.changed_files, variables=variables
        ):
            return f"changes {shown_list(rule.changes)} match no changed file"
        if rule.exists is not None and not matches_exists(
            rule.exists, self.project_files(), variables=variables
        ):
            return f"exists {shown_list(rule.exists)} match no file"
        return None

    def project_files(self) -> tuple[str, ...]:
        """The context's project files, else the files under the pipeline's root directory."""
        if self.context.project_files is not None:
            return self.context.project_files
        if self._listed is None:
            self._listed = list_project_files(self.config.root_dir) if self.config.root_dir else ()
        return self._listed

    def expression(self, text: str, variables: Mapping[str, str], where: Location) -> bool:
        """Evaluate an `if:` expression, errors pointing at where it is written."""
        try:
            parsed = self._parsed.get(text)
            if parsed is None:
                parsed = self._parsed[text] = parse_expression(text)
            return evaluate(parsed, variables)
        except ExpressionError as exc:
            raise ExpressionError(f"{exc.message} (in {text!r})", where) from None

    def decide(self, inst: _Instance, variables: Mapping[str, str]) -> _Decision:
        """Whether a job instance is added, with its when and allow_failure."""
        job = inst.config
        if job.rules is not None:
            decision = self.rules(job.rules, variables, default_when=job.when)
            decision = dataclasses.replace(decision, reason=f"rules: {decision.reason}")
            if not decision.runs or decision.explicit_allow_failure:
                return decision
            if job.allow_failure is not None:
                return dataclasses.replace(
                    decision,
                    allow_failure=job.allow_failure,
                    exit_codes=job.allow_failure_exit_codes,
                )
            # GitLab: `when: manual` written in a rule blocks (allow_failure false); written at
            # the job level it stays optional (allow_failure true) even when rules are used.
            optional = not decision.rule_sets_when and decision.when == "manual"
            return dataclasses.replace(decision, allow_failure=optional)
        refused = self.only_except(job, variables)
        if refused is not None:
            return _Decision(False, refused)
        allow = job.allow_failure
        if allow is None:
            # GitLab: a manual job without rules may fail without failing the pipeline.
            allow = job.when == "manual"
        return _Decision(
            True,
            self.only_except_admits(job),
            when=job.when,
            allow_failure=allow,
            exit_codes=job.allow_failure_exit_codes,
        )

    def only_except_admits(self, job: JobConfig) -> str:
        """Why `only`/`except` (or their defaults) let a job in; call after `only_except`."""
        ref = self.describe_ref()
        if job.only is None and job.except_ is None:
            if self.config.workflow_rules is not None:
                return "no rules/only: the job runs in every pipeline workflow: rules create"
            return f"no rules/only: a job runs for any branch or tag ({ref})"
        parts = []
        if job.only is not None:
            flt = job.only
            refs = flt.refs if flt.refs is not None else _DEFAULT_ONLY
            held = [f"refs {shown_list(refs)} match {self.describe_for_refs(refs)}"]
            if flt.variables is not None:
                held.append(f"one of variables {shown_list(flt.variables)} is true")
            if flt.changes is not None:
                note = self.unknown_changes_note(flt.changes)
                held.append(f"changes {shown_list(flt.changes)} match{note}")
            parts.append("only: " + ", ".join(held))
        if job.except_ is not None:
            this = self.describe_for_refs(job.except_.refs or ())
            parts.append(f"except: nothing in it matches {this}")
        return "; ".join(parts)

    def only_except(self, job: JobConfig, variables: Mapping[str, str]) -> str | None:
        """Why `only`/`except` (or their defaults) leave a job out, or None."""
        only = job.only
        # GitLab drops the default `only: [branches, tags]` when `workflow: rules` exist.
        default_only = self.config.workflow_rules is None
        if only is None and job.except_ is None:
            if default_only and not self.refs_match(_DEFAULT_ONLY):
                if self.context.source == "merge_request_event":
                    this = self.describe_ref()
                else:
                    this = f"a {self.context.source} pipeline for {self.describe_ref()}"
                return (
                    f"jobs without rules/only run for branches and tags, and this is {this}; "
                    "add `rules:` to run it here"
                )
            return None
        if only is not None:
            failed = self.filter_fails(only, variables)
            if failed is not None:
                return f"only: {failed}"
        elif default_only and not self.refs_match(_DEFAULT_ONLY):
            return f"only (default branches, tags): {self.describe_ref()} is neither"
        if job.except_ is not None:
            matched = self.except_matches(job.except_, variables)
            if matched is not None:
                return f"except: {matched}"
        return None

    def except_matches(self, flt: RefFilter, variables: Mapping[str, str]) -> str | None:
        """What part of an `except:` matches (GitLab excludes when any of its keys matches)."""
        if flt.refs is not None and self.refs_match(flt.refs):
            return f"refs {shown_list(flt.refs)} match {self.describe_for_refs(flt.refs)}"
        if flt.variables is not None:
            for expr in flt.variables:
                if self.expression(expr, variables, flt.location):
                    return f"variables: {expr} is true"
        if flt.changes is not None and matches_changes(
            flt.changes, self.context.changed_files, variables=variables
        ):
            return f"changes {shown_list(flt.changes)} match the changed files"
        return None

    def filter_fails(self, flt: RefFilter, variables: Mapping[str, str]) -> str | None:
        """Why a filter does not match (None when every part of it matches)."""
        refs = flt.refs if flt.refs is not None else _DEFAULT_ONLY
        if not self.refs_match(refs):
            return f"refs {shown_list(refs)} do not match {self.describe_for_refs(refs)}"
        if flt.variables is not None and not any(
            self.expression(e, variables, flt.location) for e in flt.variables
        ):
            return f"variables {shown_list(flt.variables)} are all false"
        if flt.changes is not None and not matches_changes(
            flt.changes, self.context.changed_files, variables=variables
        ):
            return f"changes {shown_list(flt.changes)} match no changed file"
        return None

    def describe_ref(self) -> str:
        """The trigger's ref as skip reasons show it."""
        ctx = self.context
        if ctx.source == "merge_request_event":
            # Its ref is refs/merge-requests/N/head: no branch name or pattern matches it.
            return f"a merge request pipeline (from branch {ctx.branch!r})"
        if ctx.tag is not None:
            return f"tag {ctx.tag!r}"
        if ctx.branch is not None:
            return f"branch {ctx.branch!r}"
        return "no ref"

    def describe_for_refs(self, refs: tuple[str, ...]) -> str:
        """The trigger as a refs reason shows it: with its source when the refs name sources."""
        ref = self.describe_ref()
        if self.context.source == "merge_request_event" or not any(
            r in ONLY_REF_KEYWORDS for r in refs
        ):
            return ref
        return f"a {self.context.source} pipeline for {ref}"

    def refs_match(self, refs: tuple[str, ...]) -> bool:
        """True when any `only`/`except` ref entry matches the trigger."""
        ctx = self.context
        is_mr = ctx.source == "merge_request_event"
        project = ctx.project_path or ctx.project_name
        for written in refs:
            # `ref@group/project` matches only in that project (GitLab's full project path).
            ref, at, path = written.partition("@")
            if at and path != project:
                continue
            if ref == "branches" and ctx.branch is not None and ctx.tag is None and not is_mr:
                return True
            if ref == "tags" and ctx.tag is not None:
                return True
            if ONLY_REF_KEYWORDS.get(ref) == ctx.source:
                return True
            if is_mr:
                # GitLab matches names and patterns only in branch and tag pipelines: a merge
                # request pipeline runs on refs/merge-requests/N/head, which no name matches.
                continue
            pattern = split_ref_pattern(ref)
            if pattern is not None:
                try:
                    if compile_regex(*pattern).search(ctx.ref):
                        return True
                except ExpressionError as exc:
                    raise PlanError(f"only/except: {exc.message}") from None
            elif ref == ctx.ref and ref and ref not in ("branches", "tags"):
                return True
        return False

    # parallel ------------------------------------------------------------------------------
    def expand(self, job: JobConfig) -> list[_Instance]:
        """The instances of a job: one, `parallel: N` of them, or one per matrix cell."""
        if job.parallel is not None:
            n = job.parallel
            return [_Instance(job, f"{job.name} {i}/{n}", i, n, ()) for i in range(1, n + 1)]
        if job.matrix is not None:
            combos = [combo for entry in job.matrix for combo in _combinations(entry)]
            total = len(combos)
            return [
                _Instance(job, f"{job.name}: [{', '.join(v for _, v in combo)}]", i, total, combo)
                for i, combo in enumerate(combos, start=1)
            ]
        return [_Instance(job, job.name, None, None, ())]

    # one job -------------------------------------------------------------------------------
    def job(
        self,
        inst: _Instance,
        position: int,
        pipeline_vars: tuple[Variable, ...],
        workflow: _Decision,
    ) -> Job:
        """The plan `Job` of one instance: variables, decision, parallel index."""
        cfg = inst.config
        template = cfg.template
        inherited = self.inherited(pipeline_vars, cfg.inherit_variables)
        job_vars = _as_variables(cfg.variables, "job")
        matrix_vars = tuple(Variable(k, v, "matrix") for k, v in inst.matrix)
        env = template.environment

        def predefined_with(
            environment: tuple[str, str | None, str] | None,
        ) -> tuple[Variable, ...]:
            return self.predefined + job_variables(
                name=inst.name,
                stage=template.stage,
                job_id=position,
                node_index=inst.index,
                node_total=inst.total,
                manual=False,
                environment=environment,
            )

        if env is not None:
            # GitLab expands `environment: name` and `url` when it creates the job.
            known = _as_dict(
                predefined_with(None) + inherited + job_vars + matrix_vars + self.trigger
            )
            env = dataclasses.replace(
                env,
                name=expand_variables(env.name, known),
                url=None if env.url is None else expand_variables(env.url, known),
            )
            template = dataclasses.replace(template, environment=env)
        base_predefined = predefined_with((env.name, env.url, env.action) if env else None)
        visible = base_predefined + inherited + job_vars + matrix_vars + self.trigger
        if not workflow.runs:
            decision = _Decision(False, workflow.reason)
        else:
            decision = self.decide(inst, _as_dict(visible))
        rule_vars = _as_variables(decision.variables, "rule")
        predefined = base_predefined
        if decision.when == "manual" and decision.runs:
            predefined = (*base_predefined, Variable("CI_JOB_MANUAL", "true", "predefined"))
        variables = predefined + inherited + job_vars + matrix_vars + rule_vars + self.trigger
        when = decision.when if decision.runs else cfg.when
        if decision.runs and decision.needs is not None:
            # `rules: needs` replaces the job's needs when the rule matches.
            self.rule_needs[inst.name] = decision.needs
        return dataclasses.replace(
            template,
            name=inst.name,
            variables=variables,
            # `when: delayed` runs on success after its `start_in`.
            when="on_success" if when == "delayed" else when,  # type: ignore[arg-type]
            start_in_seconds=(decision.start_in_seconds or cfg.start_in_seconds)
            if when == "delayed"
            else None,
            allow_failure=decision.allow_failure,
            allow_failure_exit_codes=decision.exit_codes,
            parallel_index=inst.index,
            parallel_total=inst.total,
            interruptible=template.interruptible
            if decision.interruptible is None
            else decision.interruptible,
            skip_reason=None if decision.runs else decision.reason,
            run_reason=decision.reason if decision.runs else None,
        )

    def inherited(
        self, variables: tuple[Variable, ...], inherit: bool | tuple[str, ...]
    ) -> tuple[Variable, ...]:
        """The pipeline variables a job inherits (`inherit: variables`)."""
        if inherit is True:
            return variables
        if inherit is False:
            return tuple(v for v in variables if v.source == "rule")
        return tuple(v for v in variables if v.source == "rule" or v.name in inherit)

    # needs and the DAG ---------------------------------------------------------------------
    def link(
        self, jobs: list[Job], instances: list[_Instance], stage_order: dict[str, int]
    ) -> list[Job]:
        """Resolve needs and dependencies to concrete jobs, compute `waits_for`."""
        by_base: dict[str, list[tuple[Job, _Instance]]] = {}
        for job, inst in zip(jobs, instances, strict=True):
            by_base.setdefault(inst.config.name, []).append((job, inst))
            self.instance_of[job.name] = inst
        # Jobs are sorted by stage, so "every running job of an earlier stage" is a prefix.
        earlier: dict[int, tuple[str, ...]] = {}
        running_so_far: list[str] = []
        current = None
        for job in jobs:
            order = stage_order.get(job.stage, 0)
            if order != current:
                earlier[order] = tuple(running_so_far)
                current = order
            if job.runs:
                running_so_far.append(job.name)
        linked: list[Job] = []
        for job, inst in zip(jobs, instances, strict=True):
            if not job.runs:
                linked.append(job)
                continue
            needs = None
            wanted = self.rule_needs.get(job.name, inst.config.needs)
            if wanted is not None:
                needs = tuple(
                    need
                    for cfg_need in wanted
                    for need in self.resolve_need(job, cfg_need, by_base)
                )
            dependencies = None
            if inst.config.dependencies is not None:
                dependencies = tuple(
                    target.name
                    for dep, where in inst.config.dependencies
                    for target in self.running(dep, by_base, job.name, where, "dependencies")
                )
            if needs is not None:
                waits = tuple(n.job for n in needs)
            else:
                waits = earlier[stage_order.get(job.stage, 0)]
            linked.append(
                dataclasses.replace(job, needs=needs, dependencies=dependencies, waits_for=waits)
            )
        # Stage edges point to strictly earlier stages, so only `needs` edges can close a cycle.
        graph = {
            job.name: [n.job for n in job.needs]
            for job in linked
            if job.runs and job.needs is not None
        }
        cycle = find_cycle(graph)
        if cycle:
            raise PlanError(f"needs cycle: {' → '.join(cycle)}", Location(self.config.path))
        return linked

    def resolve_need(
        self, job: Job, need: NeedConfig, by_base: dict[str, list[tuple[Job, _Instance]]]
    ) -> list[Need]:
        """The concrete running jobs one `needs:` entry stands for."""
        candidates = by_base.get(need.job, [])
        if need.matrix is not None:
            own = dict(self.instance_of[job.name].matrix)
            wanted = [
                {k: _MATRIX_EXPRESSION.sub(lambda m: own.get(m[1], m[0]), v) for k, v in combo}
                for entry in need.matrix
                for combo in _combinations(entry)
            ]
            candidates = [(j, i) for j, i in candidates if dict(i.matrix) in wanted]
            if not candidates and not need.optional:
                raise PlanError(
                    f"{job.name}: needs: no instance of {need.job!r} has the matrix values "
                    f"asked for{self.matrix_mismatch(wanted, by_base.get(need.job, []))}",
                    need.location,
                )
        running = [j for j, _ in candidates if j.runs]
        if not running and not need.optional:
            why = candidates[0][0].skip_reason if candidates else "it does not exist"
            raise PlanError(
                f"{job.name}: needs {need.job!r}, which is not in this pipeline ({why}); "
                "make the need `optional: true` or give both jobs the same rules",
                need.location,
            )
        return [Need(j.name, need.artifacts, need.optional) for j in running]

    @staticmethod
    def matrix_mismatch(
        wanted: list[dict[str, str]], instances: list[tuple[Job, _Instance]]
    ) -> str:
        """What a `needs: parallel: matrix:` asked for next to what the job's instances have."""
        asked = " or ".join(", ".join(f"{k}={v}" for k, v in combo.items()) for combo in wanted)
        if not instances or not instances[0][1].matrix:
            return f" ({asked}), and it has no `parallel: matrix`"
        names = ", ".join(j.name for j, _ in instances[:4])
        if len(instances) > 4:
            names += f", … {len(instances) - 4} more"
        text = f" ({asked}); its instances are {names}"
        keys = {k for k, _ in instances[0][1].matrix}
        if any(set(combo) != keys for combo in wanted):
            text += f"; name every variable of its matrix ({', '.join(sorted(keys))})"
        return text

    def running(
        self,
        base: str,
        by_base: dict[str, list[tuple[Job, _Instance]]],
        name: str,
        where: Location,
        keyword: str,
    ) -> list[Job]:
        """The running instances of a job named by `dependencies:`."""
        candidates = [j for j, _ in by_base.get(base, [])]
        running = [j for j in candidates if j.runs]
        if not running:
            why = candidates[0].skip_reason if candidates else "it does not exist"
            raise PlanError(f"{name}: {keyword}: {base!r} is not in this pipeline ({why})", where)
        return running


def list_project_files(root: str | Path, limit: int = MAX_LISTED_FILES) -> tuple[str, ...]:
    """Paths of the files under `root`, relative and sorted, `.git` left out (for `exists:`)."""
    base = Path(root)
    found: list[str] = []
    for current, dirs, files in os.walk(base):
        dirs[:] = sorted(d for d in dirs if d != ".git")
        rel = Path(current).relative_to(base)
        for name in sorted(files):
            found.append((rel / name).as_posix() if rel.parts else name)
            if len(found) >= limit:
                return tuple(found)
    return tuple(found)


def _combinations(entry: MatrixEntry) -> list[tuple[tuple[str, str], ...]]:
    names = [name for name, _ in entry]
    return [
        tuple(zip(names, values, strict=True))
        for values in itertools.product(*(values for _, values in entry))
    ]
