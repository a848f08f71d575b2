"""`validate()`: check every keyword and value of a resolved document, build a `PipelineConfig`.

Each problem names file:line:col and the keyword path (`build: retry: max`), and all problems
are collected: `validate()` raises one `ValidationError` holding them, `validate_collecting()`
returns them for `kapal lint`. Types are checked before values are used, so no input reaches
anything but a `PipelineError`.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
from collections.abc import Iterable
from typing import Any, TypeVar

from pipeline.config import (
    DEFAULT_STAGES,
    JobConfig,
    MatrixEntry,
    NeedConfig,
    PipelineConfig,
    RefFilter,
    RuleConfig,
    VariableDef,
)
from pipeline.context import TriggerContext
from pipeline.document import Document, YList, YMap, describe, shown_value
from pipeline.durations import parse_duration
from pipeline.errors import (
    ExpressionError,
    IncludeError,
    LoadError,
    Location,
    PipelineError,
    PipelineWarning,
    PlanError,
    UnsupportedKeywordError,
    ValidationError,
)
from pipeline.expressions import parse_expression
from pipeline.globs import compile_glob
from pipeline.keywords import (
    ARTIFACT_ACCESS,
    AUTO_CANCEL_ON_JOB_FAILURE,
    AUTO_CANCEL_ON_NEW_COMMIT,
    COVERAGE_FORMATS,
    DEFAULT_KEYWORDS,
    ENVIRONMENT_TIERS,
    GLOBAL_KEYWORDS,
    JOB_KEYWORDS,
    JOB_WHEN,
    LEGACY_GLOBAL_DEFAULTS,
    MAX_START_IN,
    PULL_POLICIES,
    REMOVED_REPORT_KINDS,
    REPORT_KINDS,
    RETRY_WHEN,
    RULE_KEYWORDS,
    RULE_WHEN,
    SERVER_KEYWORDS,
    UNSUPPORTED_GLOBAL_KEYWORDS,
    UNSUPPORTED_JOB_KEYWORDS,
    UNSUPPORTED_RULE_KEYWORDS,
    UNSUPPORTED_WORKFLOW_KEYWORDS,
    WORKFLOW_KEYWORDS,
    WORKFLOW_RULE_KEYWORDS,
)
from pipeline.plan import (
    ArtifactsSpec,
    BuildSpec,
    CacheSpec,
    DeployServiceSpec,
    DeploySpec,
    EnvironmentSpec,
    ImageSpec,
    Job,
    ReportSpec,
    RetrySpec,
    ServiceSpec,
    Variable,
)
from pipeline.regex import compile_regex, split_ref_pattern
from pipeline.remote import RemoteFetcher
from pipeline.resolve import resolve_collecting
from pipeline.suggest import keyword_hint, name_hint
from pipeline.trigger import TriggerReader, check_downstream

MAX_PARALLEL = 200
MAX_NEEDS = 50
MAX_CACHES = 4
MAX_TIMEOUT = 30 * 86400
_VARIABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# GitLab takes any name for a matrix variable (`MY-VAR`); one that fits in an environment.
_MATRIX_NAME = re.compile(r"[^=\x00]+")
_MATRIX_EXPRESSION = re.compile(r"\$\[\[\s*matrix\.([^\s\]]+)\s*\]\]")
MAX_NESTING = 10
"""GitLab flattens lists nested (by anchors or !reference) up to this many levels."""
# Keywords whose nested lists GitLab flattens, as (keyword, sub-keyword or "").
_FLATTENED = ("cache", "needs", "rules", "services", "tags")
# Values where null means something of its own rather than "not set".
_NULL_MEANS_SOMETHING = frozenset({"build", "variables", "build_args"})
_T = TypeVar("_T")

_SERVICE_KEYS = {"name", "alias", "variables", "command", "entrypoint", "pull_policy"}
_IMAGE_KEYS = {"name", "entrypoint", "pull_policy"}
_ARTIFACT_KEYS = {
    "paths",
    "exclude",
    "expire_in",
    "when",
    "untracked",
    "name",
    "reports",
    "expose_as",
    "public",
    "access",
}
_UNSUPPORTED_ARTIFACT_KEYS: dict[str, str] = {}
_CACHE_KEYS = {"key", "paths", "policy", "when", "untracked", "fallback_keys", "unprotect"}
MAX_FALLBACK_KEYS = 5
_UNSUPPORTED_CACHE_KEYS: dict[str, str] = {}
_ENVIRONMENT_KEYS = {"name", "url", "action", "on_stop", "auto_stop_in", "deployment_tier"}
_UNSUPPORTED_ENVIRONMENT_KEYS = {
    "kubernetes": "`environment: kubernetes` is not supported by kapal yet",
}
_UNSUPPORTED_IMAGE_KEYS = {
    "docker": "`docker:` executor options are not supported by kapal yet",
    "kubernetes": "`kubernetes:` executor options are not supported by kapal yet",
}
_BUILD_KEYS = {"context", "dockerfile", "tags", "build_args", "target", "push"}
_DEPLOY_KEYS = {"image", "to", "service"}
_DEPLOY_SERVICE_KEYS = {"name", "port", "health", "host_port", "env", "command"}
# A job with one of these already has a problem that explains its missing `script:`.
_INCOMPLETE_MARKERS = {"extends", "trigger", "run"}
_ENVIRONMENT_ACTIONS = ("start", "prepare", "stop", "verify", "access")
_CACHE_POLICIES = ("pull-push", "pull", "push")
_ARTIFACT_WHEN = ("on_success", "on_failure", "always")


_KEYWORDS_LISTED = 8
"""An unknown keyword without a close match lists the allowed ones when there are this few."""


class _Checker:
    """Collects problems while reading values of known types."""

    def __init__(self) -> None:
        self.problems: list[PipelineError] = []

    def error(self, message: str, location: Location, keyword: str) -> None:
        """Record a problem at `location` under the keyword path."""
        loc = Location(location.file, location.line, location.column, keyword)
        self.problems.append(ValidationError(f"{keyword}: {message}" if keyword else message, loc))

    def warn(self, message: str, location: Location, keyword: str) -> None:
        """Record a warning: valid GitLab worth a look, planned anyway."""
        loc = Location(location.file, location.line, location.column, keyword)
        self.problems.append(PipelineWarning(f"{keyword}: {message}" if keyword else message, loc))

    def unsupported(self, message: str, location: Location, keyword: str) -> None:
        """Record a GitLab keyword kapal does not support yet."""
        loc = Location(location.file, location.line, location.column, keyword)
        self.problems.append(UnsupportedKeywordError(f"{keyword}: {message}", loc))

    def keys(
        self,
        mapping: YMap,
        allowed: Iterable[str],
        unsupported: dict[str, str],
        path: str,
        *,
        ignore: frozenset[str] = frozenset(),
    ) -> None:
        """Report keys of `mapping` that are not names, unknown, or known but unsupported."""
        allowed_set = set(allowed)
        for key in mapping:
            where = mapping.key_at(key)
            if key in ignore:
                continue
            if not isinstance(key, str):
                what = (
                    "an empty or null key"
                    if key is None
                    else f"keyword {shown_value(key)} is {describe(key)}"
                )
                self.error(f"{what}; keywords are names", where, path)
            elif key in unsupported:
                self.unsupported(unsupported[key], where, f"{path}: {key}" if path else key)
            elif key not in allowed_set:
                hint = keyword_hint(key, allowed_set | set(unsupported))
                if not hint and len(allowed_set) <= _KEYWORDS_LISTED:
                    hint = f" (it takes {', '.join(sorted(allowed_set))})"
                self.error(f"unknown keyword {key!r}{hint}", where, path)

    def typed(
        self,
        mapping: YMap,
        key: str,
        kind: type[_T] | tuple[type, ...],
        path: str,
        expected: str,
    ) -> _T | None:
        """`mapping[key]` when present and of `kind` (bools are not ints); None otherwise."""
        if key not in mapping:
            return None
        value = mapping[key]
        if isinstance(value, kind) and not (
            isinstance(value, bool) and kind in (int, (int,), (int, float), float)
        ):
            return value  # type: ignore[return-value]
        self.error(f"expected {expected}, found {describe(value)}", mapping.value_at(key), path)
        return None

    def string(self, mapping: YMap, key: str, path: str) -> str | None:
        """A string value; numbers are accepted and turned into text, like GitLab does."""
        if key not in mapping:
            return None
        value = mapping[key]
        if isinstance(value, str):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return _number_text(value)
        self.error(f"expected a string, found {describe(value)}", mapping.value_at(key), path)
        return None

    def strings(
        self, mapping: YMap, key: str, path: str, *, allow_single: bool = True
    ) -> tuple[str, ...] | None:
        """A list of strings (or one string when `allow_single`)."""
        if key not in mapping:
            return None
        value = mapping[key]
        where = mapping.value_at(key)
        if isinstance(value, str) and allow_single:
            return (value,)
        if not isinstance(value, YList):
            want = "a string or a list of strings" if allow_single else "a list of strings"
            self.error(f"expected {want}, found {describe(value)}", where, path)
            return None
        out: list[str] = []
        for i, item in enumerate(value):
            if isinstance(item, str):
                out.append(item)
            elif isinstance(item, int | float) and not isinstance(item, bool):
                out.append(_number_text(item))
            else:
                self.error(
                    f"item {i + 1} should be a string, found {describe(item)}",
                    value.item_at(i),
                    path,
                )
        return tuple(out)

    def script(self, mapping: YMap, key: str, path: str) -> tuple[str, ...] | None:
        """A script: a string or a list of strings, nested lists flattened (up to 10 levels)."""
        if key not in mapping:
            return None
        value = mapping[key]
        where = mapping.value_at(key)
        if isinstance(value, str):
            return (value,)
        if not isinstance(value, YList):
            self.error(
                f"expected a string or a list of strings, found {describe(value)}", where, path
            )
            return None
        out: list[str] = []
        self._flatten(value, out, path, 0)
        return tuple(out)

    def _flatten(self, value: YList, out: list[str], path: str, depth: int) -> None:
        for i, item in enumerate(value):
            where = value.item_at(i)
            if isinstance(item, str):
                out.append(item)
            elif isinstance(item, YList):
                if depth >= MAX_NESTING:
                    self.error(
                        f"a script may nest lists at most {MAX_NESTING} levels deep "
                        "(as in GitLab); flatten the anchors or !reference that build it",
                        where,
                        path,
                    )
                    return
                self._flatten(item, out, path, depth + 1)
            elif isinstance(item, YMap):
                self.error(
                    "a script line became a mapping: an unquoted line containing ': ' is read "
                    "as a key; quote the whole line",
                    where,
                    path,
                )
            elif isinstance(item, int | float) and not isinstance(item, bool):
                out.append(_number_text(item))
            else:
                self.error(f"script lines must be strings, found {describe(item)}", where, path)

    def boolean(self, mapping: YMap, key: str, path: str) -> bool | None:
        """A true/false value."""
        return self.typed(mapping, key, bool, path, "true or false")

    def choice(self, mapping: YMap, key: str, choices: Iterable[str], path: str) -> str | None:
        """A string among `choices`, with a suggestion otherwise."""
        value = self.string(mapping, key, path)
        options = tuple(choices)
        if value is None:
            return None
        if value not in options:
            hint = keyword_hint(value, options)
            self.error(
                f"{shown_value(value)} is not one of {', '.join(options)}{hint}",
                mapping.value_at(key),
                path,
            )
            return None
        return value

    def variables(self, mapping: YMap, key: str, path: str) -> tuple[VariableDef, ...]:
        """A `variables:` mapping: names to strings/numbers or `{value, description, expand}`."""
        if key not in mapping:
            return ()
        value = mapping[key]
        if value is None:
            return ()
        if not isinstance(value, YMap):
            self.error(
                f"expected a mapping of NAME: value, found {describe(value)}",
                mapping.value_at(key),
                path,
            )
            return ()
        out: list[VariableDef] = []
        for name in value:
            where = value.value_at(name)
            if not isinstance(name, str) or not _VARIABLE_NAME.fullmatch(name):
                self.error(
                    f"variable name {shown_value(name)} may only contain letters, digits and '_' "
                    "and must not start with a digit",
                    value.key_at(name),
                    path,
                )
                continue
            item = value[name]
            sub = f"{path}: {name}"
            if isinstance(item, YMap):
                self.keys(item, ("value", "description", "expand", "options"), {}, sub)
                raw = item.get("value")
                text = (
                    ("true" if raw else "false")
                    if isinstance(raw, bool)
                    else self.string(item, "value", sub)
                )
                expand = self.boolean(item, "expand", sub)
                self.typed(item, "description", str, sub, "a string")
                options = self.strings(item, "options", sub, allow_single=False)
                if options is not None and text is not None and text not in options:
                    self.error(
                        f"value {text!r} is not one of its options", item.value_at("value"), sub
                    )
                out.append(VariableDef(name, text or "", True if expand is None else expand))
            elif isinstance(item, str):
                out.append(VariableDef(name, item))
            elif isinstance(item, bool):
                # GitLab reads `DEBUG: true` and `USE_SSL: no` as the strings "true"/"false".
                out.append(VariableDef(name, "true" if item else "false"))
            elif isinstance(item, int | float):
                out.append(VariableDef(name, _number_text(item)))
            elif item is None:
                out.append(VariableDef(name, ""))
            else:
                hint = "a variable holds one string"
                if isinstance(item, YList):
                    hint += "; join the items into one quoted string"
                self.error(
                    f"value must be a string or a number, found {describe(item)} ({hint})",
                    where,
                    sub,
                )
        return tuple(out)

    def expression(self, mapping: YMap, key: str, path: str) -> str | None:
        """An `if:` expression, parsed now so that syntax errors point at the file."""
        text = self.typed(mapping, key, str, path, "an expression string")
        if text is None:
            return None
        try:
            parse_expression(text)
        except ExpressionError as exc:
            where = mapping.text_at(key, exc.column)
            loc = Location(where.file, where.line, where.column, path)
            self.problems.append(ExpressionError(f"{path}: {exc.message}", loc))
            return None
        except (RecursionError, ValueError):
            self.error("the expression is too complex or malformed", mapping.value_at(key), path)
            return None
        return text


def _without_nulls(mapping: YMap) -> YMap:
    """`mapping` without its null values, nested mappings too: GitLab reads null as not set."""
    out = YMap(mapping.location)
    for key in mapping:
        value = mapping[key]
        keeps_null = key in _NULL_MEANS_SOMETHING
        if value is None and not keeps_null:
            continue
        out.copy_entry(mapping, key)
        if keeps_null:
            continue
        if isinstance(value, YMap):
            out.set(key, _without_nulls(value), mapping.key_at(key), mapping.value_at(key))
        elif isinstance(value, YList) and any(isinstance(v, YMap) for v in value):
            items = YList(value.location)
            for i, item in enumerate(value):
                items.add(
                    _without_nulls(item) if isinstance(item, YMap) else item, value.item_at(i)
                )
            out.set(key, items, mapping.key_at(key), mapping.value_at(key))
    return out


def flattened(value: YList, depth: int = 0) -> YList | None:
    """`value` with nested lists spliced in, as GitLab flattens them; None past MAX_NESTING."""
    out = YList(value.location)
    for i, item in enumerate(value):
        if not isinstance(item, YList):
            out.add(item, value.item_at(i))
            continue
        inner = flattened(item, depth + 1) if depth < MAX_NESTING else None
        if inner is None:
            return None
        for j, sub in enumerate(inner):
            out.add(sub, inner.item_at(j))
    return out


def _flatten_key(mapping: YMap, key: str) -> None:
    value = mapping.get(key)
    if isinstance(value, YList):
        flat = flattened(value)
        if flat is not None:
            mapping.set(key, flat, mapping.key_at(key), mapping.value_at(key))


def _normalized(job: YMap) -> YMap:
    """A job (or `default:`) as GitLab reads it: nulls not set, nested lists flattened."""
    out = _without_nulls(job)
    for key in _FLATTENED:
        _flatten_key(out, key)
    artifacts = out.get("artifacts")
    if isinstance(artifacts, YMap):
        _flatten_key(artifacts, "paths")
        _flatten_key(artifacts, "exclude")
    caches = out.get("cache")
    for cache in caches if isinstance(caches, YList) else [caches]:
        if isinstance(cache, YMap):
            _flatten_key(cache, "paths")
    return out


def _number_text(value: int | float) -> str:
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value)) if "e" not in repr(value) else repr(value)
    return str(value)


class _Validator(_Checker):
    def __init__(self, document: Document) -> None:
        super().__init__()
        self.document = document
        self.auto_cancel: tuple[str | None, str | None] = (None, None)
        self.on_stops: list[tuple[str, Location, str]] = []
        self.triggers = TriggerReader(self)
        # A global keyword set to null is not set (jobs set to null stay, to be reported).
        self.data = YMap(document.data.location)
        for key in document.data:
            if document.data[key] is not None or not (
                isinstance(key, str) and key in GLOBAL_KEYWORDS and key != "variables"
            ):
                self.data.copy_entry(document.data, key)

    # pipeline ------------------------------------------------------------------------------
    def run(self) -> PipelineConfig:
        """Check the whole document and build its `PipelineConfig`."""
        data = self.data
        for key in data:
            if isinstance(key, str) and key in UNSUPPORTED_GLOBAL_KEYWORDS:
                self.unsupported(UNSUPPORTED_GLOBAL_KEYWORDS[key], data.key_at(key), key)
        stages = self.stages()
        variables = self.variables(data, "variables", "variables")
        workflow_rules, workflow_name = self.workflow()
        legacy = YMap(data.location)
        for key in LEGACY_GLOBAL_DEFAULTS:
            if key not in data:
                continue
            value = data[key]
            if isinstance(value, YMap) and "script" in value:
                self.error(
                    f"{key!r} is a global keyword (a default for every job), not a job name; "
                    "rename the job",
                    data.key_at(key),
                    key,
                )
                continue
            legacy.copy_entry(data, key)
        self.job_values(_normalized(legacy), "", is_default=True)
        if "default" in data:
            default = data["default"]
            if isinstance(default, YMap):
                default = _normalized(default)
                self.default_keys(default)
                self.job_values(default, "default", is_default=True)
            elif default is not None:
                self.error(
                    f"expected a mapping of job keywords, found {describe(default)}",
                    data.value_at("default"),
                    "default",
                )
        jobs: list[JobConfig] = []
        for key in data:
            value = data[key]
            if isinstance(key, str) and key in GLOBAL_KEYWORDS:
                continue
            where = data.key_at(key)
            if not isinstance(key, str):
                message = (
                    f"job name {shown_value(key)} is {describe(key)}; quote it to make it a name"
                )
                if key is None:
                    message = "a key is empty or null, so it names no job; write a job name there"
                self.error(message, where, "" if key is None else shown_value(key))
                continue
            if key.startswith("."):
                continue
            if not isinstance(value, YMap):
                hint = keyword_hint(key, GLOBAL_KEYWORDS)
                if hint:
                    self.error(f"unknown keyword {key!r}{hint}", where, key)
                else:
                    self.error(
                        f"job {key!r} must be a mapping of keywords (script:, stage:, ...), "
                        f"found {describe(value)}",
                        data.value_at(key),
                        key,
                    )
                continue
            if not key.strip() or len(key) > 255:
                self.error("job names must be 1 to 255 characters", where, key)
                continue
            jobs.append(self.job(key, value, stages))
        if not jobs and not self.problems:
            templates = [k for k in data if isinstance(k, str) and k.startswith(".")]
            message = (
                "the pipeline has no jobs: add a job with a `script:` "
                "(names starting with '.' are templates, not jobs)"
            )
            if templates:
                # Most often a file meant to be included: the file that includes it is the one.
                shown = ", ".join(templates[:3]) + (", ..." if len(templates) > 3 else "")
                message = (
                    f"the pipeline has no jobs, only templates ({shown}); add a job with a "
                    "`script:`, or, if another file includes this one, lint that file"
                )
            self.error(
                message,
                data.location,
                "",
            )
        jobs = self.with_instance_needs(jobs)
        self.check_needs(jobs, stages)
        names = {job.name for job in jobs}
        for target, where, path in self.on_stops:
            if target not in names:
                self.error(
                    f"{target!r} is not a job in this pipeline{name_hint(target, names)}; "
                    "`on_stop` names the job that stops the environment",
                    where,
                    path,
                )
        return PipelineConfig(
            path=self.document.path,
            stages=stages,
            variables=variables,
            jobs=tuple(jobs),
            workflow_rules=workflow_rules,
            workflow_name=workflow_name,
            root_dir=self.document.root_dir,
            auto_cancel=self.auto_cancel,
        )

    def stages(self) -> tuple[str, ...]:
        """The stages, with `.pre` first and `.post` last as GitLab adds them."""
        names = self.strings(self.data, "stages", "stages", allow_single=False)
        if names is None:
            names = DEFAULT_STAGES
        seen: list[str] = []
        for name in names:
            if name not in seen and name not in (".pre", ".post"):
                seen.append(name)
        return (".pre", *seen, ".post")

    def default_keys(self, default: YMap) -> None:
        """Report keys of `default:` that are not default keywords (job-only ones say so)."""
        for key in default:
            if key == "variables":
                self.error(
                    "`default:` has no variables; put variables for every job in the "
                    "top-level `variables:`",
                    default.key_at(key),
                    "default",
                )
            elif isinstance(key, str) and key in JOB_KEYWORDS and key not in DEFAULT_KEYWORDS:
                self.error(
                    f"{key!r} cannot have a default; set it in each job (or in a template "
                    "the jobs extend)",
                    default.key_at(key),
                    "default",
                )
        others = YMap(default.location)
        for key in default:
            if not (isinstance(key, str) and key in JOB_KEYWORDS - DEFAULT_KEYWORDS):
                others.copy_entry(default, key)
        self.keys(others, DEFAULT_KEYWORDS, UNSUPPORTED_JOB_KEYWORDS, "default")

    def workflow(self) -> tuple[tuple[RuleConfig, ...] | None, str | None]:
        """`workflow: rules` and `workflow: name` (`auto_cancel` goes to `self.auto_cancel`)."""
        if "workflow" not in self.data:
            return None, None
        value = self.data["workflow"]
        if isinstance(value, YMap):
            value = _without_nulls(value)
        if not isinstance(value, YMap):
            self.error(
                f"expected a mapping with rules:, found {describe(value)}",
                self.data.value_at("workflow"),
                "workflow",
            )
            return None, None
        self.keys(value, WORKFLOW_KEYWORDS, UNSUPPORTED_WORKFLOW_KEYWORDS, "workflow")
        name = self.string(value, "name", "workflow: name")
        self.auto_cancel = self.auto_cancel_of(value, "workflow: auto_cancel") or (None, None)
        rules = self.rules(value, "workflow: rules", workflow=True)
        return rules, name

    def auto_cancel_of(self, mapping: YMap, path: str) -> tuple[str | None, str | None] | None:
        """`auto_cancel: {on_new_commit:, on_job_failure:}` as a pair (None where unset)."""
        if "auto_cancel" not in mapping:
            return None
        value = mapping["auto_cancel"]
        if not isinstance(value, YMap):
            self.error(
                f"expected a mapping (on_new_commit:, on_job_failure:), found {describe(value)}",
                mapping.value_at("auto_cancel"),
                path,
            )
            return None
        self.keys(value, {"on_new_commit", "on_job_failure"}, {}, path)
        return (
            self.choice(
                value, "on_new_commit", AUTO_CANCEL_ON_NEW_COMMIT, f"{path}: on_new_commit"
            ),
            self.choice(
                value, "on_job_failure", AUTO_CANCEL_ON_JOB_FAILURE, f"{path}: on_job_failure"
            ),
        )

    # rules ---------------------------------------------------------------------------------
    def rules(
        self, mapping: YMap, path: str, *, workflow: bool = False
    ) -> tuple[RuleConfig, ...] | None:
        """A `rules:` list (of a job or of `workflow:`)."""
        if "rules" not in mapping:
            return None
        value = mapping["rules"]
        if not isinstance(value, YList):
            self.error(
                f"expected a list of rules (- if: ...), found {describe(value)}",
                mapping.value_at("rules"),
                path,
            )
            return None
        if not value:
            self.error(
                "must not be blank: GitLab refuses an empty rules list; write at least one rule "
                "(`- when: never` to never run) or remove `rules:`",
                mapping.value_at("rules"),
                path,
            )
            return None
        out: list[RuleConfig] = []
        for i, item in enumerate(value):
            where = value.item_at(i)
            sub = f"{path}[{i + 1}]"
            if not isinstance(item, YMap):
                self.error(
                    "each rule must be a mapping (if:, changes:, when: ...), found "
                    + describe(item),
                    where,
                    sub,
                )
                continue
            allowed = WORKFLOW_RULE_KEYWORDS if workflow else RULE_KEYWORDS
            self.keys(item, allowed, UNSUPPORTED_RULE_KEYWORDS, sub)
            if_text = self.expression(item, "if", f"{sub}: if")
            when = self.when(item, f"{sub}: when", RULE_WHEN)
            if workflow and when not in (None, "always", "never"):
                self.error(
                    "in workflow: rules, when can only be always or never",
                    item.value_at("when"),
                    f"{sub}: when",
                )
            start_in = self.start_in(item, when, sub) if not workflow else None
            allow, codes = self.allow_failure(item, f"{sub}: allow_failure")
            out.append(
                RuleConfig(
                    location=where,
                    if_text=if_text,
                    changes=self.paths_condition(item, "changes", f"{sub}: changes"),
                    exists=self.paths_condition(item, "exists", f"{sub}: exists"),
                    when=when,
                    allow_failure=allow,
                    allow_failure_exit_codes=codes,
                    variables=self.variables(item, "variables", f"{sub}: variables"),
                    start_in_seconds=start_in,
                    auto_cancel=self.auto_cancel_of(item, f"{sub}: auto_cancel"),
                    needs=None if workflow else self.needs(item, f"{sub}: needs"),
                    interruptible=self.boolean(item, "interruptible", f"{sub}: interruptible"),
                )
            )
        return tuple(out)

    def start_in(self, mapping: YMap, when: str | None, path: str) -> int | None:
        """`start_in:` of a `when: delayed` job or rule, in seconds (required there, only there)."""
        if when == "delayed" and "start_in" not in mapping:
            self.error(
                "`when: delayed` needs `start_in:`, like start_in: 30 minutes",
                mapping.value_at("when"),
                f"{path}: when",
            )
            return None
        if "start_in" not in mapping:
            return None
        if when != "delayed":
            self.error(
                "`start_in` only works with `when: delayed`; add it or remove `start_in`",
                mapping.key_at("start_in"),
                f"{path}: start_in",
            )
            return None
        return self.duration(mapping, "start_in", f"{path}: start_in", MAX_START_IN)

    def paths_condition(self, mapping: YMap, key: str, path: str) -> tuple[str, ...] | None:
        """The glob patterns of `changes:`/`exists:`, each compiled once to check it."""
        patterns = self._paths_condition(mapping, key, path)
        for pattern in patterns or ():
            try:
                compile_glob(pattern)
            except PipelineError as exc:
                self.error(exc.message, mapping.value_at(key), path)
        return patterns

    def _paths_condition(self, mapping: YMap, key: str, path: str) -> tuple[str, ...] | None:
        if key not in mapping:
            return None
        value = mapping[key]
        if isinstance(value, YMap):
            unsupported = {
                "compare_to": f"`{key}: compare_to` is not supported by kapal yet",
                "project": f"`{key}: project` is not supported by kapal yet",
                "ref": f"`{key}: ref` is not supported by kapal yet",
            }
            self.keys(value, {"paths"}, unsupported, path)
            if "paths" not in value:
                self.error("expected `paths:` with a list of patterns", value.location, path)
                return None
            return self.strings(value, "paths", path, allow_single=False)
        return self.strings(mapping, key, path, allow_single=False)

    def when(self, mapping: YMap, path: str, choices: tuple[str, ...]) -> str | None:
        """A `when:` value."""
        if "when" not in mapping:
            return None
        if mapping["when"] == "never" and "never" not in choices:
            self.error(
                "`when: never` only works inside `rules:`; write `rules: [{when: never}]` "
                "or remove the job",
                mapping.value_at("when"),
                path,
            )
            return None
        return self.choice(mapping, "when", choices, path)

    def allow_failure(self, mapping: YMap, path: str) -> tuple[bool | None, tuple[int, ...]]:
        """`allow_failure:` as (allowed, exit codes)."""
        if "allow_failure" not in mapping:
            return None, ()
        value = mapping["allow_failure"]
        if isinstance(value, bool):
            return value, ()
        if isinstance(value, YMap):
            self.keys(value, {"exit_codes"}, {}, path)
            codes = self.exit_codes(value, f"{path}: exit_codes")
            return False, codes
        self.error(
            f"expected true, false or {{exit_codes: [...]}}, found {describe(value)}",
            mapping.value_at("allow_failure"),
            path,
        )
        return None, ()

    def exit_codes(self, mapping: YMap, path: str) -> tuple[int, ...]:
        """`exit_codes:` as a tuple of numbers 0-255."""
        if "exit_codes" not in mapping:
            self.error("expected exit_codes: a number or a list of numbers", mapping.location, path)
            return ()
        value = mapping["exit_codes"]
        items = list(value) if isinstance(value, YList) else [value]
        out: list[int] = []
        for item in items:
            if isinstance(item, int) and not isinstance(item, bool) and 0 <= item <= 255:
                out.append(item)
            else:
                self.error(
                    f"exit codes are numbers from 0 to 255, found {shown_value(item)}",
                    mapping.value_at("exit_codes"),
                    path,
                )
        return tuple(out)

    def ref_filter(self, job: YMap, key: str, path: str) -> RefFilter | None:
        """An `only:` or `except:` value."""
        if key not in job:
            return None
        value = job[key]
        where = job.value_at(key)
        if isinstance(value, str | YList):
            refs = self.refs(job, key, path)
            return RefFilter(where, refs=refs) if refs is not None else None
        if not isinstance(value, YMap):
            self.error(
                f"expected a list of refs or a mapping with refs/variables/changes, "
                f"found {describe(value)}",
                where,
                path,
            )
            return None
        self.keys(
            value,
            {"refs", "variables", "changes"},
            {"kubernetes": f"`{key}: kubernetes` is not supported by kapal yet"},
            path,
        )
        variables = self.strings(value, "variables", f"{path}: variables")
        for expr in variables or ():
            try:
                parse_expression(expr)
            except ExpressionError as exc:
                self.problems.append(ExpressionError(f"{path}: variables: {exc.message}", where))
        return RefFilter(
            where,
            refs=self.refs(value, "refs", f"{path}: refs"),
            variables=variables,
            changes=self.paths_condition(value, "changes", f"{path}: changes"),
        )

    def refs(self, mapping: YMap, key: str, path: str) -> tuple[str, ...] | None:
        """The refs of `only`/`except`, regex literals checked."""
        refs = self.strings(mapping, key, path)
        for ref in refs or ():
            # GitLab splits `ref@group/project` at the first '@', patterns included.
            literal = split_ref_pattern(ref.partition("@")[0])
            if literal is None:
                continue
            try:
                compile_regex(*literal)
            except ExpressionError as exc:
                self.error(exc.message, mapping.value_at(key), path)
        return refs

    # jobs ----------------------------------------------------------------------------------
    def job(self, name: str, job: YMap, stages: tuple[str, ...]) -> JobConfig:
        """One job as a `JobConfig`."""
        job = _normalized(job)
        self.keys(job, JOB_KEYWORDS, UNSUPPORTED_JOB_KEYWORDS, name)
        if "trigger" in job:
            self.triggers.check_job_keys(job, name)
        stage = self.string(job, "stage", f"{name}: stage") or "test"
        if stage not in stages:
            shown = ", ".join(s for s in stages if s not in (".pre", ".post"))
            if "stage" in job:
                self.error(
                    f"stage {stage!r} is not in stages ({shown}){name_hint(stage, stages)}; "
                    "add it to `stages:`",
                    job.value_at("stage"),
                    f"{name}: stage",
                )
            else:
                self.error(
                    f"the job has no `stage:` so it is in 'test', which is not in stages "
                    f"({shown}); give the job a stage or add 'test' to `stages:`",
                    job.location,
                    name,
                )
        values = self.job_values(job, name, is_default=False)
        has_build = "build" in job
        has_deploy = "deploy" in job
        if has_build and has_deploy:
            self.error(
                "a job has either `build:` or `deploy:`, not both; split it into two jobs",
                job.key_at("deploy"),
                name,
            )
        if (has_build or has_deploy) and "script" in job:
            kind = "build" if has_build else "deploy"
            self.error(
                f"a `{kind}:` job runs kapal's {kind}er, not a script; "
                "move the commands into another job",
                job.key_at("script"),
                name,
            )
        if not (has_build or has_deploy) and not values.get("script"):
            if job.get("script") in ("", []):
                self.error("must not be empty", job.value_at("script"), f"{name}: script")
            elif "script" not in job and not self._explained_missing_script(job):
                self.error(
                    "job has no `script:`: add the commands to run (a job runs a `script:`, "
                    "starts a downstream pipeline with `trigger:`, or uses kapal's "
                    "`build:`/`deploy:`)",
                    job.location,
                    name,
                )
        rules = self.rules(job, f"{name}: rules")
        only = self.ref_filter(job, "only", f"{name}: only")
        except_ = self.ref_filter(job, "except", f"{name}: except")
        if rules is not None and (only is not None or except_ is not None):
            self.error(
                "`rules:` cannot be used with `only:`/`except:`; express the condition in rules",
                job.key_at("rules"),
                name,
            )
        when = self.when(job, f"{name}: when", JOB_WHEN) or "on_success"
        start_in = self.start_in(job, when, name)
        if "manual_confirmation" in job and not (
            when == "manual" or any(r.when == "manual" for r in rules or ())
        ):
            self.error(
                "`manual_confirmation` only works with `when: manual`",
                job.key_at("manual_confirmation"),
                f"{name}: manual_confirmation",
            )
        for key in sorted(k for k in job if isinstance(k, str) and k in SERVER_KEYWORDS):
            self.warn(
                f"`{key}:` is ignored: {SERVER_KEYWORDS[key]}; `--strict` refuses it",
                job.key_at(key),
                f"{name}: {key}",
            )
        allow, codes = self.allow_failure(job, f"{name}: allow_failure")
        parallel, matrix = self.parallel(job, f"{name}: parallel")
        needs = self.needs(job, f"{name}: needs")
        dependencies = None
        if "dependencies" in job:
            deps = self.strings(job, "dependencies", f"{name}: dependencies", allow_single=False)
            value = job["dependencies"]
            if deps is not None and isinstance(value, YList):
                dependencies = tuple((d, value.item_at(i)) for i, d in enumerate(deps))
        inherit_variables = self.inherit(job, f"{name}: inherit")
        variables = self.variables(job, "variables", f"{name}: variables")
        if "trigger" in job:
            values["trigger"] = self.triggers.read(job, name, variables)
        template = Job(name=name, stage=stage, base_name=name, **values)
        return JobConfig(
            name=name,
            location=job.location,
            template=template,
            variables=variables,
            inherit_variables=inherit_variables,
            rules=rules,
            only=only,
            except_=except_,
            when=when,
            allow_failure=allow,
            allow_failure_exit_codes=codes,
            parallel=parallel,
            matrix=matrix,
            needs=needs,
            dependencies=dependencies,
            start_in_seconds=start_in,
        )

    def _explained_missing_script(self, job: YMap) -> bool:
        """True when another problem of this job already explains its missing `script:`."""
        if _INCOMPLETE_MARKERS & set(job):
            return True
        typos = [k for k in job if isinstance(k, str) and k not in JOB_KEYWORDS]
        if not typos:
            return False
        import difflib  # only for a job with a misspelt keyword

        return any(
            difflib.get_close_matches(k, ("script", "build", "deploy"), n=1, cutoff=0.6)
            for k in typos
        )

    def job_values(self, job: YMap, name: str, *, is_default: bool) -> dict[str, Any]:
        """The plan fields a job (or `default:`) sets directly, checked."""
        out: dict[str, Any] = {}
        p = f"{name}: " if name else ""
        for key in ("script", "before_script", "after_script"):
            lines = self.script(job, key, p + key)
            if lines is not None:
                out[key] = lines
        if (image := self.image(job, p + "image")) is not None:
            out["image"] = image
        if (services := self.services(job, p + "services")) is not None:
            out["services"] = services
        if (retry := self.retry(job, p + "retry")) is not None:
            out["retry"] = retry
        if "timeout" in job:
            out["timeout_seconds"] = self.duration(job, "timeout", p + "timeout", MAX_TIMEOUT)
        if (artifacts := self.artifacts(job, p + "artifacts")) is not None:
            out["artifacts"] = artifacts
        if (caches := self.caches(job, p + "cache")) is not None:
            out["caches"] = caches
        if (interruptible := self.boolean(job, "interruptible", p + "interruptible")) is not None:
            out["interruptible"] = interruptible
        if (tags := self.strings(job, "tags", p + "tags")) is not None:
            out["tags"] = tags
        if is_default:
            return out
        ignored = tuple(
            (key, SERVER_KEYWORDS[key])
            for key in sorted(k for k in job if isinstance(k, str) and k in SERVER_KEYWORDS)
        )
        if ignored:
            out["ignored_keywords"] = ignored
        confirmation = self.string(job, "manual_confirmation", p + "manual_confirmation")
        if confirmation is not None:
            out["manual_confirmation"] = confirmation
        if (env := self.environment(job, p + "environment")) is not None:
            out["environment"] = env
        if (group := self.string(job, "resource_group", p + "resource_group")) is not None:
            out["resource_group"] = group
        if (coverage := self.typed(job, "coverage", str, p + "coverage", "a /regex/")) is not None:
            if not (len(coverage) >= 2 and coverage.startswith("/") and coverage.endswith("/")):
                self.error(
                    "must be a regular expression between slashes, like /TOTAL.*\\s(\\d+%)/",
                    job.value_at("coverage"),
                    p + "coverage",
                )
            out["coverage"] = coverage
        if (network := self.choice(job, "network", ("none", "host"), p + "network")) is not None:
            out["network"] = network
        if (build := self.build(job, p + "build")) is not None:
            out["build"] = build
        if (deploy := self.deploy(job, p + "deploy")) is not None:
            out["deploy"] = deploy
        return out

    def image(self, job: YMap, path: str) -> ImageSpec | None:
        """`image:` as an ImageSpec."""
        if "image" not in job:
            return None
        value = job["image"]
        if isinstance(value, str) and value.strip():
            return ImageSpec(name=value, has_variables="$" in value)
        if isinstance(value, YMap):
            self.keys(value, _IMAGE_KEYS, _UNSUPPORTED_IMAGE_KEYS, path)
            name = self.string(value, "name", f"{path}: name")
            if not name:
                self.error("an image needs a non-empty `name:`", value.location, path)
                return None
            entrypoint = self.strings(value, "entrypoint", f"{path}: entrypoint")
            return ImageSpec(
                name=name,
                entrypoint=entrypoint,
                has_variables="$" in name,
                pull_policy=self.pull_policy(value, f"{path}: pull_policy"),
            )
        self.error(
            f"expected an image name or {{name:, entrypoint:}}, found {describe(value)}",
            job.value_at("image"),
            path,
        )
        return None

    def pull_policy(self, image: YMap, path: str) -> tuple[str, ...]:
        """`pull_policy:` of an image or service: one policy or a list, tried in order."""
        policies = self.strings(image, "pull_policy", path) or ()
        for policy in policies:
            if policy not in PULL_POLICIES:
                self.error(
                    f"{policy!r} is not one of {', '.join(PULL_POLICIES)}"
                    + keyword_hint(policy, PULL_POLICIES),
                    image.value_at("pull_policy"),
                    path,
                )
        return tuple(p for p in policies if p in PULL_POLICIES)

    def services(self, job: YMap, path: str) -> tuple[ServiceSpec, ...] | None:
        """`services:` as ServiceSpecs with GitLab's default aliases."""
        if "services" not in job:
            return None
        value = job["services"]
        if not isinstance(value, YList):
            self.error(
                f"expected a list of services, found {describe(value)}",
                job.value_at("services"),
                path,
            )
            return None
        out: list[ServiceSpec] = []
        for i, item in enumerate(value):
            where = value.item_at(i)
            if isinstance(item, str) and item.strip():
                out.append(ServiceSpec(item, _default_aliases(item), has_variables="$" in item))
                continue
            if not isinstance(item, YMap):
                self.error(
                    f"each service is an image name or {{name:, alias:}}, found {describe(item)}",
                    where,
                    path,
                )
                continue
            self.keys(item, _SERVICE_KEYS, _UNSUPPORTED_IMAGE_KEYS, path)
            name = self.string(item, "name", f"{path}: name")
            if not name:
                self.error("a service needs a non-empty `name:`", item.location, path)
                continue
            alias_text = self.string(item, "alias", f"{path}: alias")
            aliases = (
                tuple(a.strip() for a in alias_text.split(",") if a.strip())
                if alias_text
                else _default_aliases(name)
            )
            variables = tuple(
                Variable(v.name, v.value, "service", v.expand)
                for v in self.variables(item, "variables", f"{path}: variables")
            )
            out.append(
                ServiceSpec(
                    name=name,
                    aliases=aliases,
                    variables=variables,
                    command=self.strings(item, "command", f"{path}: command"),
                    entrypoint=self.strings(item, "entrypoint", f"{path}: entrypoint"),
                    has_variables="$" in name,
                    pull_policy=self.pull_policy(item, f"{path}: pull_policy"),
                )
            )
        return tuple(out)

    def retry(self, job: YMap, path: str) -> RetrySpec | None:
        """`retry:` as a RetrySpec."""
        if "retry" not in job:
            return None
        value = job["retry"]
        where = job.value_at("retry")
        if isinstance(value, YMap):
            self.keys(value, {"max", "when", "exit_codes"}, {}, path)
            maximum = self.retry_max(value.get("max", 0), value.value_at("max"), f"{path}: max")
            when = self.strings(value, "when", f"{path}: when") or ("always",)
            for item in when:
                if item not in RETRY_WHEN:
                    # GitLab keeps adding failure reasons: an unknown one is kept, not refused.
                    self.warn(
                        f"{item!r} is not a retry reason kapal knows"
                        f"{keyword_hint(item, RETRY_WHEN)}; "
                        f"kapal never sees that failure, so it never retries for it "
                        f"(it knows {', '.join(RETRY_WHEN)})",
                        value.value_at("when"),
                        f"{path}: when",
                    )
            codes = self.exit_codes(value, f"{path}: exit_codes") if "exit_codes" in value else ()
            return RetrySpec(max=maximum, when=when, exit_codes=codes)
        return RetrySpec(max=self.retry_max(value, where, path))

    def retry_max(self, value: Any, where: Location, path: str) -> int:
        """A retry count, 0 to 2 like GitLab."""
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 2:
            return value
        self.error(f"must be 0, 1 or 2 (as in GitLab), found {shown_value(value)}", where, path)
        return 0

    def duration(self, mapping: YMap, key: str, path: str, maximum: int) -> int | None:
        """A duration value in seconds, at most `maximum`."""
        value = mapping[key]
        seconds: int | None = None
        if isinstance(value, int) and not isinstance(value, bool):
            seconds = value
        elif isinstance(value, str):
            seconds = parse_duration(value)
        if seconds is None or seconds <= 0:
            self.error(
                f"{shown_value(value)} is not a duration; "
                'write it like "1h 30m", "10 minutes" or 3600',
                mapping.value_at(key),
                path,
            )
            return None
        if seconds > maximum:
            self.error(
                f"{shown_value(value)} is longer than the maximum of {maximum // 86400} days",
                mapping.value_at(key),
                path,
            )
            return None
        return seconds

    def artifacts(self, job: YMap, path: str) -> ArtifactsSpec | None:
        """`artifacts:` as an ArtifactsSpec."""
        if "artifacts" not in job:
            return None
        value = job["artifacts"]
        if not isinstance(value, YMap):
            self.error(
                f"expected a mapping (paths:, when:, expire_in: ...), found {describe(value)}",
                job.value_at("artifacts"),
                path,
            )
            return None
        self.keys(value, _ARTIFACT_KEYS, _UNSUPPORTED_ARTIFACT_KEYS, path)
        expire_in = self.string(value, "expire_in", f"{path}: expire_in")
        expire_seconds = None
        if expire_in is not None and expire_in.strip().lower() != "never":
            expire_seconds = self.duration(value, "expire_in", f"{path}: expire_in", 10**10)
        reports = self.reports(value, f"{path}: reports")
        junit = next((r.paths for r in reports if r.kind == "junit"), ())
        expose_as = self.string(value, "expose_as", f"{path}: expose_as")
        if expose_as is not None and not 0 < len(expose_as) <= 100:
            self.error(
                "must be 1 to 100 characters (as in GitLab)",
                value.value_at("expose_as"),
                f"{path}: expose_as",
            )
        access = self.choice(value, "access", ARTIFACT_ACCESS, f"{path}: access")
        public = self.boolean(value, "public", f"{path}: public")
        if access is not None and public is not None:
            self.error(
                "use `access:` or `public:`, not both (`public: false` is `access: developer`)",
                value.key_at("public"),
                f"{path}: public",
            )
        if access is None and public is False:
            access = "developer"
        return ArtifactsSpec(
            reports=reports,
            expose_as=expose_as,
            access=access or "all",  # type: ignore[arg-type]
            paths=self.strings(value, "paths", f"{path}: paths", allow_single=False) or (),
            exclude=self.strings(value, "exclude", f"{path}: exclude", allow_single=False) or (),
            when=self.choice(value, "when", _ARTIFACT_WHEN, f"{path}: when") or "on_success",  # type: ignore[arg-type]
            expire_in=expire_in,
            expire_in_seconds=expire_seconds,
            untracked=self.boolean(value, "untracked", f"{path}: untracked") or False,
            name=self.string(value, "name", f"{path}: name"),
            junit=junit,
        )

    def reports(self, artifacts: YMap, path: str) -> tuple[ReportSpec, ...]:
        """`artifacts: reports:` of every GitLab type, each as a ReportSpec."""
        if "reports" not in artifacts:
            return ()
        value = artifacts["reports"]
        if not isinstance(value, YMap):
            self.error(
                f"expected a mapping like {{junit: report.xml}}, found {describe(value)}",
                artifacts.value_at("reports"),
                path,
            )
            return ()
        for key in value:
            if isinstance(key, str) and key in REMOVED_REPORT_KINDS:
                self.error(REMOVED_REPORT_KINDS[key], value.key_at(key), f"{path}: {key}")
        self.keys(value, REPORT_KINDS, {}, path, ignore=frozenset(REMOVED_REPORT_KINDS))
        out: list[ReportSpec] = []
        for kind in sorted(k for k in value if isinstance(k, str) and k in REPORT_KINDS):
            sub = f"{path}: {kind}"
            if kind != "coverage_report":
                files = self.strings(value, kind, sub)
                if files is not None:
                    out.append(ReportSpec(kind, files))
                continue
            coverage = value[kind]
            if not isinstance(coverage, YMap):
                self.error(
                    "expected {coverage_format: cobertura, path: coverage.xml}, found "
                    + describe(coverage),
                    value.value_at(kind),
                    sub,
                )
                continue
            self.keys(coverage, {"coverage_format", "path"}, {}, sub)
            form = self.choice(
                coverage, "coverage_format", COVERAGE_FORMATS, f"{sub}: coverage_format"
            )
            where = self.string(coverage, "path", f"{sub}: path")
            if form is None or not where:
                if "coverage_format" not in coverage or "path" not in coverage:
                    self.error("needs both `coverage_format:` and `path:`", coverage.location, sub)
                continue
            out.append(ReportSpec(kind, (where,), form))
        return tuple(out)

    def caches(self, job: YMap, path: str) -> tuple[CacheSpec, ...] | None:
        """`cache:` (one or a list) as CacheSpecs."""
        if "cache" not in job:
            return None
        value = job["cache"]
        where = job.value_at("cache")
        if isinstance(value, YMap):
            items: list[tuple[Any, Location]] = [(value, where)]
        elif isinstance(value, YList):
            items = [(item, value.item_at(i)) for i, item in enumerate(value)]
            if len(items) > MAX_CACHES:
                self.error(f"at most {MAX_CACHES} caches per job (as in GitLab)", where, path)
        else:
            self.error(
                f"expected a mapping (key:, paths:) or a list of them, found {describe(value)}",
                where,
                path,
            )
            return None
        out: list[CacheSpec] = []
        for item, loc in items:
            if not isinstance(item, YMap):
                self.error(
                    f"each cache is a mapping (key:, paths:), found {describe(item)}", loc, path
                )
                continue
            self.keys(item, _CACHE_KEYS, _UNSUPPORTED_CACHE_KEYS, path)
            key = "default"
            key_files: tuple[str, ...] = ()
            prefix = None
            if "key" in item and isinstance(item["key"], YMap):
                kmap = item["key"]
                self.keys(kmap, {"files", "prefix"}, {}, f"{path}: key")
                key_files = (
                    self.strings(kmap, "files", f"{path}: key: files", allow_single=False) or ()
                )
                if not 1 <= len(key_files) <= 2:
                    self.error("takes one or two files", kmap.location, f"{path}: key: files")
                prefix = self.string(kmap, "prefix", f"{path}: key: prefix")
            elif "key" in item:
                key = self.string(item, "key", f"{path}: key") or "default"
                if "/" in key or key.strip(".") == "":
                    self.error(
                        "a cache key may not contain '/' or be only dots",
                        item.value_at("key"),
                        f"{path}: key",
                    )
            policy_text = None
            written = item.get("policy")
            if isinstance(written, str) and "$" in written:
                # GitLab 16.1+: `policy: $CACHE_POLICY`, expanded when the job runs.
                policy_text = written
                item = item.shallow_copy()
                del item["policy"]
            out.append(
                CacheSpec(
                    key=key,
                    key_files=key_files,
                    key_prefix=prefix,
                    paths=self.strings(item, "paths", f"{path}: paths", allow_single=False) or (),
                    policy=self.choice(item, "policy", _CACHE_POLICIES, f"{path}: policy")
                    or "pull-push",  # type: ignore[arg-type]
                    when=self.choice(item, "when", _ARTIFACT_WHEN, f"{path}: when") or "on_success",  # type: ignore[arg-type]
                    untracked=self.boolean(item, "untracked", f"{path}: untracked") or False,
                    policy_text=policy_text,
                    fallback_keys=self.fallback_keys(item, f"{path}: fallback_keys"),
                    unprotect=self.boolean(item, "unprotect", f"{path}: unprotect") or False,
                )
            )
        return tuple(out)

    def fallback_keys(self, cache: YMap, path: str) -> tuple[str, ...]:
        """`cache: fallback_keys`: up to 5 keys tried in order when the key has no cache."""
        keys = self.strings(cache, "fallback_keys", path, allow_single=False) or ()
        if len(keys) > MAX_FALLBACK_KEYS:
            self.error(
                f"at most {MAX_FALLBACK_KEYS} fallback keys (as in GitLab)",
                cache.value_at("fallback_keys"),
                path,
            )
            return keys[:MAX_FALLBACK_KEYS]
        return keys

    def environment(self, job: YMap, path: str) -> EnvironmentSpec | None:
        """`environment:` as an EnvironmentSpec."""
        if "environment" not in job:
            return None
        value = job["environment"]
        if isinstance(value, str) and value.strip():
            return EnvironmentSpec(name=value)
        if not isinstance(value, YMap):
            self.error(
                f"expected an environment name or {{name:, url:}}, found {describe(value)}",
                job.value_at("environment"),
                path,
            )
            return None
        self.keys(value, _ENVIRONMENT_KEYS, _UNSUPPORTED_ENVIRONMENT_KEYS, path)
        name = self.string(value, "name", f"{path}: name")
        if not name:
            self.error("an environment needs a `name:`", value.location, path)
            return None
        action = self.choice(value, "action", _ENVIRONMENT_ACTIONS, f"{path}: action")
        auto_stop_in = self.string(value, "auto_stop_in", f"{path}: auto_stop_in")
        auto_stop_seconds = None
        if auto_stop_in is not None and auto_stop_in.strip().lower() != "never":
            auto_stop_seconds = self.duration(
                value, "auto_stop_in", f"{path}: auto_stop_in", 10**10
            )
        on_stop = self.string(value, "on_stop", f"{path}: on_stop")
        if on_stop is not None:
            self.on_stops.append((on_stop, value.value_at("on_stop"), f"{path}: on_stop"))
        return EnvironmentSpec(
            name=name,
            url=self.string(value, "url", f"{path}: url"),
            action=action or "start",  # type: ignore[arg-type]
            on_stop=on_stop,
            auto_stop_in=auto_stop_in,
            auto_stop_in_seconds=auto_stop_seconds,
            deployment_tier=self.choice(
                value, "deployment_tier", ENVIRONMENT_TIERS, f"{path}: deployment_tier"
            ),
        )

    def build(self, job: YMap, path: str) -> BuildSpec | None:
        """kapal's `build:` as a BuildSpec."""
        if "build" not in job:
            return None
        value = job["build"]
        if value is None:
            return BuildSpec()
        if not isinstance(value, YMap):
            self.error(
                f"expected a mapping (context:, dockerfile:, tags:), found {describe(value)}",
                job.value_at("build"),
                path,
            )
            return None
        self.keys(value, _BUILD_KEYS, {}, path)
        args = self.variables(value, "build_args", f"{path}: build_args")
        tags = self.strings(value, "tags", f"{path}: tags") or ()
        push = self.boolean(value, "push", f"{path}: push") or False
        if push and not tags:
            self.error("push: true needs at least one tag to push", value.value_at("push"), path)
        return BuildSpec(
            context=self.string(value, "context", f"{path}: context") or ".",
            dockerfile=self.string(value, "dockerfile", f"{path}: dockerfile") or "Dockerfile",
            tags=tags,
            build_args=tuple((a.name, a.value) for a in args),
            target=self.string(value, "target", f"{path}: target"),
            push=push,
        )

    def deploy(self, job: YMap, path: str) -> DeploySpec | None:
        """kapal's `deploy:` as a DeploySpec."""
        if "deploy" not in job:
            return None
        value = job["deploy"]
        if not isinstance(value, YMap):
            self.error(
                f"expected a mapping (image:, to:, service:), found {describe(value)}",
                job.value_at("deploy"),
                path,
            )
            return None
        self.keys(value, _DEPLOY_KEYS, {}, path)
        image = self.string(value, "image", f"{path}: image")
        if not image:
            self.error("needs `image:`, the image to ship", value.location, path)
            return None
        to = self.string(value, "to", f"{path}: to")
        service = None
        if "service" in value:
            svc = value["service"]
            sub = f"{path}: service"
            if isinstance(svc, YMap):
                self.keys(svc, _DEPLOY_SERVICE_KEYS, {}, sub)
                sname = self.string(svc, "name", f"{sub}: name")
                port = self.typed(svc, "port", int, f"{sub}: port", "a port number")
                host_port: int | str | None = None
                if isinstance(svc.get("host_port"), str) and "$" in svc["host_port"]:
                    host_port = svc["host_port"]  # a variable: checked once expanded
                else:
                    host_port = self.typed(
                        svc, "host_port", int, f"{sub}: host_port", "a port number or a $VARIABLE"
                    )
                for key, number in (("port", port), ("host_port", host_port)):
                    if isinstance(number, int) and not 1 <= number <= 65535:
                        self.error("a port is between 1 and 65535", svc.value_at(key), sub)
                if host_port is not None and port is None:
                    self.error(
                        "`host_port:` needs `port:`, the port it forwards to", svc.location, sub
                    )
                env = self.variables(svc, "env", f"{sub}: env")
                command = self.strings(svc, "command", f"{sub}: command", allow_single=False)
                if not sname:
                    self.error("a deploy service needs a `name:`", svc.location, sub)
                else:
                    service = DeployServiceSpec(
                        name=sname,
                        port=port,
                        health=self.string(svc, "health", f"{sub}: health"),
                        host_port=host_port,
                        env=tuple((v.name, v.value) for v in env),
                        command=command,
                    )
            else:
                self.error(
                    f"expected a mapping (name:, port:, health:), found {describe(svc)}",
                    value.value_at("service"),
                    sub,
                )
        if to is None and service is None:
            self.error("needs `to:` (a registry reference) or `service:`", value.location, path)
        return DeploySpec(image=image, to=to, service=service)

    def inherit(self, job: YMap, path: str) -> bool | tuple[str, ...]:
        """`inherit:`; returns what `inherit: variables` allows."""
        if "inherit" not in job:
            return True
        value = job["inherit"]
        if not isinstance(value, YMap):
            self.error(
                f"expected a mapping (default:, variables:), found {describe(value)}",
                job.value_at("inherit"),
                path,
            )
            return True
        self.keys(value, {"default", "variables"}, {}, path)
        result: bool | tuple[str, ...] = True
        for key in ("default", "variables"):
            if key not in value:
                continue
            item = value[key]
            if isinstance(item, bool):
                chosen: bool | tuple[str, ...] = item
            elif isinstance(item, YList):
                chosen = self.strings(value, key, f"{path}: {key}") or ()
                if key == "default":
                    for name in chosen:
                        if name not in DEFAULT_KEYWORDS:
                            self.error(
                                f"{name!r} is not a default keyword"
                                + keyword_hint(name, DEFAULT_KEYWORDS),
                                value.value_at(key),
                                f"{path}: {key}",
                            )
            else:
                self.error(
                    f"expected true, false or a list, found {describe(item)}",
                    value.value_at(key),
                    f"{path}: {key}",
                )
                continue
            if key == "variables":
                result = chosen
        return result

    def parallel(self, job: YMap, path: str) -> tuple[int | None, tuple[MatrixEntry, ...] | None]:
        """`parallel:` as (N, None) or (None, matrix entries)."""
        if "parallel" not in job:
            return None, None
        value = job["parallel"]
        where = job.value_at("parallel")
        if isinstance(value, int) and not isinstance(value, bool):
            if not 1 <= value <= MAX_PARALLEL:
                self.error(f"must be between 1 and {MAX_PARALLEL}, found {value}", where, path)
                return None, None
            return value, None
        if not isinstance(value, YMap):
            self.error(
                f"expected a number or {{matrix: [...]}}, found {describe(value)}", where, path
            )
            return None, None
        self.keys(value, {"matrix"}, {}, path)
        matrix = value.get("matrix")
        sub = f"{path}: matrix"
        if not isinstance(matrix, YList) or not matrix:
            self.error(
                "must be a non-empty list of mappings like - PYTHON: ['3.11', '3.12']",
                value.value_at("matrix") if "matrix" in value else where,
                sub,
            )
            return None, None
        entries = self.matrix_entries(matrix, sub)
        if entries is None:
            return None, None
        total = 0
        for entry in entries:
            count = 1
            for _, values in entry:
                count *= len(values)
            total += count
        if total > MAX_PARALLEL:
            self.error(f"the matrix makes {total} jobs; the maximum is {MAX_PARALLEL}", where, sub)
            return None, None
        return None, entries

    def matrix_entries(self, matrix: YList, path: str) -> tuple[MatrixEntry, ...] | None:
        """The items of a `matrix:` list, values as strings."""
        entries: list[MatrixEntry] = []
        ok = True
        for i, item in enumerate(matrix):
            where = matrix.item_at(i)
            if not isinstance(item, YMap) or not item:
                self.error(
                    f"matrix item {i + 1} must be a mapping of VARIABLE: values, found "
                    f"{describe(item)}",
                    where,
                    path,
                )
                ok = False
                continue
            entry: list[tuple[str, tuple[str, ...]]] = []
            for name in item:
                if not isinstance(name, str) or not _MATRIX_NAME.fullmatch(name):
                    self.error(
                        f"matrix variable name {shown_value(name)} is not valid: "
                        "it must be a non-empty name without '='",
                        item.key_at(name),
                        path,
                    )
                    ok = False
                    continue
                raw = item[name]
                values = list(raw) if isinstance(raw, YList) else [raw]
                texts: list[str] = []
                for v in values:
                    if isinstance(v, str):
                        texts.append(v)
                    elif isinstance(v, int | float) and not isinstance(v, bool):
                        texts.append(_number_text(v))
                    else:
                        self.error(
                            f"matrix values must be strings or numbers, found {describe(v)}",
                            item.value_at(name),
                            f"{path}: {name}",
                        )
                        ok = False
                if not values:
                    self.error(
                        "a matrix variable needs at least one value", item.value_at(name), path
                    )
                    ok = False
                entry.append((name, tuple(texts)))
            entries.append(tuple(entry))
        return tuple(entries) if ok else None

    def needs(self, job: YMap, path: str) -> tuple[NeedConfig, ...] | None:
        """`needs:` as NeedConfigs by base job name."""
        if "needs" not in job:
            return None
        value = job["needs"]
        where = job.value_at("needs")
        if value is None:
            return ()
        if not isinstance(value, YList):
            self.error(f"expected a list of job names, found {describe(value)}", where, path)
            return None
        if len(value) > MAX_NEEDS:
            self.error(f"at most {MAX_NEEDS} needs per job (as in GitLab)", where, path)
        out: list[NeedConfig] = []
        for i, item in enumerate(value):
            loc = value.item_at(i)
            if isinstance(item, str):
                out.append(NeedConfig(item, loc))
                continue
            if not isinstance(item, YMap):
                self.error(
                    f"each need is a job name or {{job:, artifacts:, optional:}}, found "
                    f"{describe(item)}",
                    loc,
                    path,
                )
                continue
            unsupported = {
                "pipeline": "`needs: pipeline` (artifacts of another pipeline) is not supported "
                "by kapal yet",
                "project": "`needs: project` (another project's artifacts) is not supported by "
                "kapal yet",
            }
            self.keys(item, {"job", "artifacts", "optional", "parallel", "ref"}, unsupported, path)
            if "ref" in item:
                self.unsupported(
                    "`needs: ref` is not supported by kapal yet", item.key_at("ref"), path
                )
            if any(k in item for k in unsupported) or "ref" in item:
                continue
            name = self.string(item, "job", f"{path}: job")
            if not name:
                self.error("a need needs `job:`, the name of the job", item.location, path)
                continue
            matrix = None
            if "parallel" in item:
                par = item["parallel"]
                if isinstance(par, YMap) and isinstance(par.get("matrix"), YList):
                    self.keys(par, {"matrix"}, {}, f"{path}: parallel")
                    matrix = self.matrix_entries(par["matrix"], f"{path}: parallel: matrix")
                else:
                    self.error(
                        "expected parallel: {matrix: [...]}",
                        item.value_at("parallel"),
                        f"{path}: parallel",
                    )
            out.append(
                NeedConfig(
                    job=name,
                    location=item.value_at("job"),
                    artifacts=_bool_or(self.boolean(item, "artifacts", f"{path}: artifacts"), True),
                    optional=_bool_or(self.boolean(item, "optional", f"{path}: optional"), False),
                    matrix=matrix,
                )
            )
        return tuple(out)

    def with_instance_needs(self, jobs: list[JobConfig]) -> list[JobConfig]:
        """Needs that name one matrix instance (`build: [a]`) as needs of its base job."""
        by_name = {job.name for job in jobs}
        instances: dict[str, tuple[str, tuple[tuple[str, str], ...]]] = {}
        for job in jobs:
            for entry in job.matrix or ():
                names = [name for name, _ in entry]
                for values in itertools.product(*(values for _, values in entry)):
                    combo = tuple(zip(names, values, strict=True))
                    instances.setdefault(f"{job.name}: [{', '.join(values)}]", (job.name, combo))
        if not instances:
            return jobs

        def rewritten(needs: tuple[NeedConfig, ...] | None) -> tuple[NeedConfig, ...] | None:
            if needs is None:
                return None
            return tuple(
                dataclasses.replace(
                    n,
                    job=instances[n.job][0],
                    matrix=(tuple((k, (v,)) for k, v in instances[n.job][1]),),
                    instance=n.job,
                )
                if n.job in instances and n.job not in by_name and n.matrix is None
                else n
                for n in needs
            )

        return [
            dataclasses.replace(
                job,
                needs=rewritten(job.needs),
                rules=None
                if job.rules is None
                else tuple(dataclasses.replace(r, needs=rewritten(r.needs)) for r in job.rules),
            )
            for job in jobs
        ]

    def check_matrix_expressions(self, job: JobConfig, need: NeedConfig) -> None:
        """`$[[ matrix.NAME ]]` in a need names a variable of the job's own matrix."""
        own = {name for entry in job.matrix or () for name, _ in entry}
        for entry in need.matrix or ():
            for _, values in entry:
                for value in values:
                    for match in _MATRIX_EXPRESSION.finditer(value):
                        if match[1] in own:
                            continue
                        has = (
                            f"its matrix has {', '.join(sorted(own))}"
                            if own
                            else "it has no `parallel: matrix`"
                        )
                        self.error(
                            f"{match[0]!r} names matrix variable {match[1]!r} of {job.name!r}, "
                            f"but {has}",
                            need.location,
                            f"{job.name}: needs: parallel: matrix",
                        )
                    rest = _MATRIX_EXPRESSION.sub("", value)
                    if "$[[" in rest:
                        self.error(
                            f"{value!r}: a matrix expression is written $[[ matrix.NAME ]]",
                            need.location,
                            f"{job.name}: needs: parallel: matrix",
                        )

    @staticmethod
    def need_hint(name: str, jobs: list[JobConfig]) -> str:
        """A "did you mean" for an unknown need that keeps its meaning.

        A name shaped like one matrix instance (`build: [c]`) is only matched against instances:
        proposing the base job would need every instance instead of one.
        """
        base, sep, _ = name.partition(": [")
        matrix_job = next((j for j in jobs if j.name == base and j.matrix), None)
        if sep and matrix_job is not None:
            names = [
                f"{base}: [{', '.join(values)}]"
                for entry in matrix_job.matrix or ()
                for values in itertools.product(*(v for _, v in entry))
            ]
            shown = ", ".join(names[:4]) + (", ..." if len(names) > 4 else "")
            return f"; the instances of {base!r} are {shown}"
        return name_hint(name, [j.name for j in jobs])

    def check_needs(self, jobs: list[JobConfig], stages: tuple[str, ...]) -> None:
        """Needs and dependencies name existing jobs of earlier-or-same stages."""
        by_name = {job.name: job for job in jobs}
        order = {stage: i for i, stage in enumerate(stages)}
        for job in jobs:
            rule_needs = [n for rule in job.rules or () for n in rule.needs or ()]
            for need in (*(job.needs or ()), *rule_needs):
                self.check_matrix_expressions(job, need)
                target = by_name.get(need.job)
                where = need.location
                path = f"{job.name}: needs"
                if target is None:
                    if need.optional:
                        continue
                    hidden = (
                        " (names starting with '.' are templates, not jobs)"
                        if need.job.startswith(".")
                        else ""
                    )
                    self.error(
                        f"{need.job!r} is not a job in this pipeline"
                        f"{self.need_hint(need.job, jobs)}{hidden}",
                        where,
                        path,
                    )
                    continue
                if target.name == job.name:
                    self.problems.append(
                        PlanError(
                            f"{path}: needs cycle: {job.name} → {job.name}",
                            Location(where.file, where.line, where.column, path),
                        )
                    )
                    continue
                if order.get(target.template.stage, 0) > order.get(job.template.stage, 0):
                    self.error(
                        f"{need.job!r} is in the later stage {target.template.stage!r}; "
                        f"a job can only need jobs of earlier stages or its own stage "
                        f"({job.template.stage!r})",
                        where,
                        path,
                    )
            for dep, where in job.dependencies or ():
                target = by_name.get(dep)
                path = f"{job.name}: dependencies"
                if target is None:
                    self.error(
                        f"{dep!r} is not a job in this pipeline{name_hint(dep, by_name)}",
                        where,
                        path,
                    )
                    continue
                if job.needs is not None and dep not in {n.job for n in job.needs}:
                    self.error(
                        f"{dep!r} is not one of this job's `needs:`; with `needs:`, a job's "
                        "dependencies must be among its needs (as in GitLab): add it to "
                        "`needs:` or remove it here",
                        where,
                        path,
                    )
                    continue
                if job.needs is None and order.get(target.template.stage, 0) >= order.get(
                    job.template.stage, 0
                ):
                    self.error(
                        f"{dep!r} is not in an earlier stage, so its artifacts cannot be ready",
                        where,
                        path,
                    )
        self.check_cycles(jobs)

    def check_cycles(self, jobs: list[JobConfig]) -> None:
        """Report a needs cycle, named."""
        graph = {job.name: [n.job for n in job.needs or () if n.job != job.name] for job in jobs}
        cycle = find_cycle(graph)
        if cycle:
            first = next(job for job in jobs if job.name == cycle[0])
            need = next(n for n in first.needs or () if n.job == cycle[1])
            loc = need.location
            self.problems.append(
                PlanError(
                    f"{cycle[0]}: needs: needs cycle: {' → '.join(cycle)}",
                    Location(loc.file, loc.line, loc.column, f"{cycle[0]}: needs"),
                )
            )


def find_cycle(graph: dict[str, list[str]]) -> list[str] | None:
    """A cycle in a graph of name -> names it points to, as [a, b, ..., a]; None when acyclic."""
    state: dict[str, int] = {}
    edges_of = {node: [e for e in targets if e in graph] for node, targets in graph.items()}
    for start in graph:
        if state.get(start):
            continue
        stack: list[tuple[str, int]] = [(start, 0)]
        path: list[str] = []
        while stack:
            node, index = stack.pop()
            if index == 0:
                state[node] = 1
                path.append(node)
            edges = edges_of[node]
            if index < len(edges):
                stack.append((node, index + 1))
                nxt = edges[index]
                if state.get(nxt) == 1:
                    return [*path[path.index(nxt) :], nxt]
                if not state.get(nxt):
                    stack.append((nxt, 0))
            else:
                state[node] = 2
                path.pop()
    return None


def _bool_or(value: bool | None, default: bool) -> bool:
    return default if value is None else value


def _default_aliases(image: str) -> tuple[str, ...]:
    """GitLab's default service aliases: image without tag/digest, '/' as '__' and as '-'."""
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)
    if ":" in last[-1]:
        name = name[: len(name) - len(last[-1])] + last[-1].split(":", 1)[0]
    first = name.replace("/", "__")
    second = name.replace("/", "-")
    return (first,) if first == second else (first, second)


def validate_collecting(
    document: Document,
    context: TriggerContext | None = None,
    remote: RemoteFetcher | None = None,
    *,
    depth: int = 0,
) -> tuple[PipelineConfig | None, list[PipelineError]]:
    """Resolve (if needed) and validate; the config (None when invalid) and all problems.

    `context` is the trigger `include:` variables and rules are read for, `remote` what fetches
    `include: remote` files (see `resolve`). The child pipelines of trigger jobs are checked
    too (`pipeline.trigger`); `depth` is how many levels below its parent this pipeline is.

    The problems include warnings (`severity == "warning"`), which do not make the config None;
    the config keeps them in `warnings`.
    """
    try:
        resolved, problems = resolve_collecting(document, context, remote)
        validator = _Validator(resolved)
        config = validator.run()
        problems += check_downstream(
            validator.triggers.sites,
            config,
            document=resolved,
            context=context,
            remote=remote,
            depth=depth,
            validate_child=validate_collecting,
        )
    except RecursionError:
        loc = Location(document.path)
        return None, [ValidationError("the pipeline is nested too deeply to read", loc)]
    # One problem per position: a broken value (a !reference to nothing, say) is reported once,
    # not again by every check that then finds it missing.
    seen: set[tuple[str, int, int]] = set()
    unique: list[PipelineError] = []
    for problem in problems + validator.problems:
        key = _sort_key(problem.location)
        if key[1] and key in seen:
            continue
        seen.add(key)
        unique.append(problem)
    problems = _summarised(sorted(unique, key=lambda p: _sort_key(p.location)), document.path)
    if any(p.severity == "error" for p in problems):
        return None, problems
    return dataclasses.replace(config, warnings=tuple(problems)), problems


# Problems a missing include causes by the dozen, as (message fragment, how a summary names them).
_CAUSED_BY_INCLUDE = (
    ("extends: unknown job or template", "`extends` of an unknown template"),
    ("points to nothing", "`!reference` to nothing"),
    ("job has no `script:`", "jobs without `script:`"),
    ("is not a job in this pipeline", "needs or dependencies on an unknown job"),
    ("is not in stages", "undeclared stages"),
    ("so it is in 'test', which is not in stages", "undeclared stages"),
)
_SUMMARY_NAMES = 3


def _summarised(problems: list[PipelineError], main_file: str) -> list[PipelineError]:
    """An include that failed, reported once, with the errors it most likely causes under it."""
    failed = [
        p
        for p in problems
        if isinstance(p, IncludeError)
        or (isinstance(p, LoadError) and p.location is not None and p.location.file != main_file)
    ]
    if not failed:
        return problems
    caused: dict[str, list[str]] = {}
    kept: list[PipelineError] = []
    repeats: dict[str, list[PipelineError]] = {}
    for problem in problems:
        if problem in failed:
            same = repeats.setdefault(problem.message, [])
            same.append(problem)
            if len(same) == 1:
                kept.append(problem)
            continue
        kind = next((k for fragment, k in _CAUSED_BY_INCLUDE if fragment in problem.message), None)
        if kind is None or problem.severity != "error":
            kept.append(problem)
            continue
        # Named by what is missing: the template, the job, the reference, the stage.
        named = re.search(r"'[^']*'|\[[^\]]*\]", problem.message)
        caused.setdefault(kind, []).append(named[0] if named else "?")
    first = next(p for p in kept if p in failed)
    out: list[PipelineError] = []
    for problem in kept:
        if problem not in failed:
            out.append(problem)
            continue
        message = problem.message
        others = repeats[problem.message][1:]
        if others:
            message += " (also included at " + ", ".join(str(p.location) for p in others) + ")"
        if caused and problem is first:
            parts = []
            for kind, names in caused.items():
                unique = list(dict.fromkeys(names))
                shown = ", ".join(unique[:_SUMMARY_NAMES]) + (
                    ", …" if len(unique) > _SUMMARY_NAMES else ""
                )
                parts.append(f"{len(names)} × {kind} {shown}")
            total = sum(len(names) for names in caused.values())
            message += (
                f"; most likely because of it, {total} more problem{'s' if total != 1 else ''} "
                f"not listed: {'; '.join(parts)}"
            )
        if message == problem.message:
            out.append(problem)
        else:
            out.append(type(problem)(message, problem.location))
    return out


def _sort_key(location: Location | None) -> tuple[str, int, int]:
    if location is None:
        return ("", 0, 0)
    return (location.file, location.line, location.column)


def validate(
    document: Document,
    context: TriggerContext | None = None,
    remote: RemoteFetcher | None = None,
) -> PipelineConfig:
    """Check a document (resolving it first if needed); ValidationError lists every error.

    Warnings do not stop it: they are in the returned config's `warnings`.
    """
    config, found = validate_collecting(document, context, remote)
    problems = [p for p in found if p.severity == "error"]
    if len(problems) == 1:
        raise problems[0]
    if problems or config is None:
        raise ValidationError(
            f"{len(problems)} problems:\n" + "\n".join(str(p) for p in problems),
            Location(document.path),
            problems=problems,
        )
    return config
