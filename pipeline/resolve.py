"""`resolve()`: turn a loaded file into one self-contained configuration.

In GitLab's order: `include: local` files are deep-merged under the main file, then `extends`
(multi-level, last parent wins, hashes deep-merged, arrays and scalars replaced), then
`!reference` tags, then `default:` (and the deprecated top-level `image`, `services`,
`before_script`, `after_script`, `cache`) copied into jobs that lack the keyword, as `inherit:
default:` allows. Problems are collected so `kapal lint` can show them all at once.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from pipeline.context import TriggerContext
from pipeline.document import (
    MAX_FILE_BYTES,
    Document,
    Reference,
    YList,
    YMap,
    collect_warnings,
    describe,
    given_inputs,
    parse_yaml,
    read_text,
)
from pipeline.errors import (
    ExpressionError,
    ExtendsError,
    IncludeError,
    LoadError,
    Location,
    PipelineError,
    ValidationError,
)
from pipeline.expressions import evaluate
from pipeline.globs import expand_variables, include_wildcard, matches_changes, matches_exists
from pipeline.keywords import DEFAULT_KEYWORDS, GLOBAL_KEYWORDS, LEGACY_GLOBAL_DEFAULTS
from pipeline.remote import RemoteFetcher, integrity_problem
from pipeline.repofiles import (
    files_in_repository,
    open_in_repository,
    regular_file_in_repository,
)
from pipeline.suggest import name_hint

MAX_INCLUDES = 150
MAX_EXTENDS_DEPTH = 11
MAX_REFERENCE_DEPTH = 10
MAX_LISTED_FILES = 100_000
_INCLUDE_RULE_KEYS = ("if", "exists", "changes", "when")

_UNSUPPORTED_INCLUDES = {
    "template": "copy GitLab's template into the repository and use `include: local`",
    "project": "copy the file into this repository and use `include: local`",
    "component": "copy the component's configuration into the repository",
    "file": "`include: file` belongs to `include: project`; use `include: local`",
    "ref": "`include: ref` belongs to `include: project`; use `include: local`",
}


def deep_merge(base: YMap, override: YMap) -> YMap:
    """GitLab's deep merge: mappings merged key by key, anything else replaced by `override`."""
    out = base.shallow_copy()
    out.location = override.location
    for key in override:
        old = out.get(key)
        new = override[key]
        if isinstance(old, YMap) and isinstance(new, YMap):
            out.set(key, deep_merge(old, new), override.key_at(key), override.value_at(key))
        else:
            out.copy_entry(override, key)
    return out


def is_job_key(key: Any, value: Any = None) -> bool:
    """True when a top-level entry is a job or a hidden template rather than a global keyword."""
    return not (isinstance(key, str) and key in GLOBAL_KEYWORDS)


@dataclass(frozen=True)
class _Include:
    """One `include:` entry: the path (variables expanded), where it is written, its extras."""

    path: str
    location: Location
    inputs: YMap | None = None
    rules: YList | None = None
    written: str = ""
    remote: bool = False
    integrity: str | None = None

    @property
    def shown(self) -> str:
        """The path for messages: as expanded, and as written when variables changed it."""
        if self.written and self.written != self.path:
            return f"{self.path!r} (from {self.written!r})"
        return repr(self.path)


# `_include_rules` answers this for rules it has reported as wrong
_BAD_RULES = YList(Location("<bad rules>"))


@dataclass
class _Resolver:
    root_dir: Path
    shown_dir: str = ""
    problems: list[PipelineError] = field(default_factory=list)
    include_count: int = 0
    # what `include:` paths and `include: rules` see: GitLab's variables for includes
    context: TriggerContext = field(default_factory=TriggerContext)
    config_path: str = ""
    found_variables: dict[str, str] | None = None
    changed_files: tuple[str, ...] | None = None
    project_files: tuple[str, ...] | None = None
    listed: tuple[str, ...] | None = None
    fetcher: RemoteFetcher | None = None

    # include -------------------------------------------------------------------------------
    def with_includes(
        self, data: YMap, path: str, stack: tuple[str, ...]
    ) -> tuple[YMap, list[str]]:
        """The file's mapping with its `include: local` files merged under it."""
        if "include" not in data:
            return data, []
        entries = self._include_entries(data)
        merged: YMap | None = None
        files: list[str] = []
        for entry in entries:
            if not self._rules_admit(entry):
                continue
            if entry.remote:
                if entry.path in stack:
                    cycle = " → ".join([*stack[stack.index(entry.path) :], entry.path])
                    self.problems.append(IncludeError(f"include cycle: {cycle}", entry.location))
                    continue
                self.include_count += 1
                sub = self._load_remote(entry)
                if sub is None:
                    continue
                sub, nested = self.with_includes(sub, entry.path, (*stack, entry.path))
                files.extend([entry.path, *nested])
                merged = sub if merged is None else deep_merge(merged, sub)
                continue
            for target in self._expand_local(entry):
                rel = str(target.relative_to(self.root_dir))
                if rel in stack:
                    cycle = " → ".join([*stack[stack.index(rel) :], rel])
                    self.problems.append(IncludeError(f"include cycle: {cycle}", entry.location))
                    continue
                self.include_count += 1
                if self.include_count > MAX_INCLUDES:
                    self.problems.append(
                        IncludeError(f"more than {MAX_INCLUDES} included files", entry.location)
                    )
                    return data, files
                sub = self._load_included(target, rel, entry)
                if sub is None:
                    continue
                sub, nested = self.with_includes(sub, rel, (*stack, rel))
                files.extend([rel, *nested])
                merged = sub if merged is None else deep_merge(merged, sub)
        own = YMap(data.location)
        for key in data:
            if key != "include":
                own.copy_entry(data, key)
        return (own if merged is None else deep_merge(merged, own)), files

    def _include_entries(self, data: YMap) -> list[_Include]:
        value = data["include"]
        loc = data.value_at("include")
        items: list[tuple[Any, Location]]
        if isinstance(value, YList):
            items = [(item, value.item_at(i)) for i, item in enumerate(value)]
        else:
            items = [(value, loc)]
        out: list[_Include] = []
        for item, where in items:
            if isinstance(item, str):
                if item.startswith(("http://", "https://")):
                    url = self._expanded(item, where)
                    out.append(_Include(url, where, written=item, remote=True))
                    continue
                out.append(_Include(self._expanded(item, where), where, written=item))
            elif isinstance(item, YMap):
                entry = self._include_mapping(item)
                if entry is not None:
                    out.append(entry)
            else:
                self.problems.append(
                    IncludeError(
                        f"include: expected a file path or a mapping like {{local: path}}, "
                        f"found {describe(item)}",
                        where,
                    )
                )
        return out

    @property
    def variables(self) -> dict[str, str]:
        """GitLab's variables for includes, computed when an include first needs them."""
        if self.found_variables is None:
            self.found_variables = include_variables(self.context, self.config_path)
        return self.found_variables

    def _expanded(self, path: str, where: Location) -> str:
        """GitLab expands project, trigger and pipeline predefined variables in include paths."""
        if "$" not in path and "%" not in path:
            return path
        return expand_variables(path, self.variables)

    def _include_mapping(self, item: YMap) -> _Include | None:
        for key in item:
            if key in _UNSUPPORTED_INCLUDES:
                self.problems.append(
                    IncludeError(
                        f"`include: {key}` is not supported by kapal yet; "
                        + _UNSUPPORTED_INCLUDES[key],
                        item.key_at(key),
                    )
                )
                return None
        kind = "remote" if "remote" in item else "local"
        allowed = [kind, "rules", "inputs", *(["integrity"] if kind == "remote" else [])]
        for key in item:
            if key not in allowed:
                hint = _suggest(key, allowed)
                self.problems.append(
                    IncludeError(f"unknown include keyword {key!r}{hint}", item.key_at(key))
                )
                return None
        if kind not in item:
            self.problems.append(
                IncludeError("include: a mapping needs `local: path/to/file.yml`", item.location)
            )
            return None
        local = item[kind]
        if not isinstance(local, str) or not local:
            what = "an http(s) URL" if kind == "remote" else "a file path"
            self.problems.append(
                IncludeError(
                    f"include: {kind} expects {what}, found {describe(local)}",
                    item.value_at(kind),
                )
            )
            return None
        integrity = item.get("integrity")
        if "integrity" in item and not isinstance(integrity, str):
            self.problems.append(
                IncludeError(
                    "include: integrity expects a hash like sha256-BASE64, found "
                    + describe(integrity),
                    item.value_at("integrity"),
                )
            )
            return None
        inputs = item.get("inputs")
        if "inputs" in item and not isinstance(inputs, YMap):
            self.problems.append(
                IncludeError(
                    "include: inputs expects a mapping of input names to values, found "
                    + describe(inputs),
                    item.value_at("inputs"),
                )
            )
            return None
        rules = self._include_rules(item) if "rules" in item else None
        if rules is _BAD_RULES:
            return None
        where = item.value_at(kind)
        path = self._expanded(local, where)
        if kind == "remote" and not path.startswith(("http://", "https://")):
            self.problems.append(
                IncludeError(f"include: remote expects an http(s) URL, found {local!r}", where)
            )
            return None
        return _Include(path, where, inputs, rules, local, kind == "remote", integrity)

    def _include_rules(self, item: YMap) -> YList | None:
        rules = item["rules"]
        where = item.value_at("rules")
        if rules is None:
            return None
        if not isinstance(rules, YList) or not rules:
            shown = "an empty list" if isinstance(rules, YList) else describe(rules)
            self.problems.append(
                IncludeError(f"include: rules expects a list of rules, found {shown}", where)
            )
            return _BAD_RULES
        for i, rule in enumerate(rules):
            problem = _include_rule_problem(rule)
            if problem is not None:
                at = rule.key_at(problem[1]) if isinstance(rule, YMap) and problem[1] else None
                self.problems.append(IncludeError(problem[0], at or rules.item_at(i)))
                return _BAD_RULES
        return rules

    def _rules_admit(self, entry: _Include) -> bool:
        """GitLab's `include: rules`: the first rule that matches decides; none matching skips."""
        if entry.rules is None:
            return True
        for rule in entry.rules:
            if "if" in rule:
                try:
                    matched = evaluate(rule["if"], self.variables)
                except ExpressionError as exc:
                    self.problems.append(
                        IncludeError(f"include: rules: if: {exc.message}", rule.value_at("if"))
                    )
                    return False
                if not matched:
                    continue
            if "exists" in rule and not matches_exists(
                _strings(rule["exists"]) or [], self._project_files(), variables=self.variables
            ):
                continue
            if "changes" in rule and not matches_changes(
                _strings(rule["changes"]) or [], self.changed_files, variables=self.variables
            ):
                continue
            return bool(rule.get("when") != "never")
        return False

    def _project_files(self) -> tuple[str, ...]:
        """What `exists:` looks at: the trigger's list of files, else the repository's."""
        if self.project_files is None:
            self.project_files = self._repository_files()
        return self.project_files

    def _repository_files(self) -> tuple[str, ...]:
        """The files of the repository on disk (what a wildcard include can read)."""
        if self.listed is None:
            self.listed = tuple(_listed_files(self.root_dir))
        return self.listed

    def _expand_local(self, entry: _Include) -> list[Path]:
        shown, loc = entry.shown, entry.location
        rel = PurePosixPath(entry.path.lstrip("/"))
        if ".." in rel.parts:
            self.problems.append(
                IncludeError(
                    f"include: {shown} points outside the project; local includes are "
                    "relative to the project root",
                    loc,
                )
            )
            return []
        if rel.suffix not in (".yml", ".yaml"):
            self.problems.append(
                IncludeError(f"include: {shown} must be a .yml or .yaml file", loc)
            )
            return []
        if "*" in str(rel):
            # GitLab matches the repository's file list; links are listed, never followed out
            pattern = include_wildcard(str(rel))
            found = [
                self.root_dir / path
                for path in self._repository_files()
                if pattern.fullmatch(path) and regular_file_in_repository(self.root_dir, path)
            ]
            if not found:
                self.problems.append(IncludeError(f"include: no file matches {shown}", loc))
            return found
        target = self.root_dir / rel
        # resolved inside the repository: a symlink to a host file names the repository's own
        if not regular_file_in_repository(self.root_dir, str(rel)):
            self.problems.append(
                IncludeError(
                    f"include: file {shown} not found (local includes are relative to "
                    f"the project root {self.root_dir})",
                    loc,
                )
            )
            return []
        return [target]

    def _load_included(self, target: Path, rel: str, entry: _Include) -> YMap | None:
        try:
            # Shown beside the main file as the user named it, so positions can be opened.
            shown = str(PurePosixPath(self.shown_dir) / rel) if self.shown_dir else rel
            text = _read_in_repository(self.root_dir, rel, shown)
        except PipelineError as exc:
            self.problems.extend(exc.problems)
            return None
        return self._parse_included(text, shown, rel, entry)

    def _parse_included(self, text: str, shown: str, named: str, entry: _Include) -> YMap | None:
        """The included file's mapping (with the include's inputs), or None with the problem
        recorded; `named` is how the message names the file."""
        try:
            with given_inputs(None if entry.inputs is None else dict(entry.inputs)):
                data = parse_yaml(text, shown)
        except PipelineError as exc:
            self.problems.extend(exc.problems)
            return None
        if data is None:
            return YMap(Location(shown, 1, 1))
        if not isinstance(data, YMap):
            self.problems.append(
                IncludeError(
                    f"included file {named} must contain a mapping, found {describe(data)}",
                    entry.location,
                )
            )
            return None
        return data

    def _load_remote(self, entry: _Include) -> YMap | None:
        """An `include: remote` file, fetched through the caller's fetcher and checked."""
        if self.fetcher is None:
            self.problems.append(
                IncludeError(
                    f"include: remote {entry.shown} was not fetched: no fetcher was given "
                    "(`kapal lint`, `plan` and `run` pass one; a library caller passes "
                    "`remote=`); or copy the file into the repository and use `include: local`",
                    entry.location,
                )
            )
            return None
        try:
            content = self.fetcher.fetch(entry.path)
        except IncludeError as exc:
            self.problems.append(
                IncludeError(f"include: remote {entry.shown}: {exc.message}", entry.location)
            )
            return None
        if entry.integrity is not None:
            problem = integrity_problem(content, entry.integrity)
            if problem is not None:
                self.problems.append(
                    IncludeError(f"include: remote {entry.shown}: {problem}", entry.location)
                )
                return None
        return self._parsed(content, entry.path, entry)

    def _parsed(self, content: bytes, shown: str, entry: _Include) -> YMap | None:
        """A fetched file as a mapping, parsed with the entry's inputs."""
        if len(content) > MAX_FILE_BYTES:
            self.problems.append(
                IncludeError(f"include: remote {entry.shown}: larger than 4 MiB", entry.location)
            )
            return None
        try:
            text = content.decode("utf-8")
        except UnicodeDecodeError:
            self.problems.append(
                IncludeError(f"include: remote {entry.shown}: not UTF-8 text", entry.location)
            )
            return None
        return self._parse_included(text, shown, shown, entry)

    # extends -------------------------------------------------------------------------------
    def with_extends(self, data: YMap) -> YMap:
        """Every job and template with its `extends` chain merged in."""
        out = YMap(data.location)
        done: dict[Any, YMap] = {}
        for key in data:
            value = data[key]
            if is_job_key(key, value) and isinstance(value, YMap) and "extends" in value:
                out.set(
                    key, self._extended(data, key, (), done), data.key_at(key), data.value_at(key)
                )
            else:
                out.copy_entry(data, key)
        return out

    def _extended(
        self, data: YMap, key: Any, chain: tuple[Any, ...], done: dict[Any, YMap]
    ) -> YMap:
        if key in done:
            return done[key]
        job: YMap = data[key]
        if "extends" not in job:
            return job
        problems_before = len(self.problems)
        parents_value = job["extends"]
        where = job.value_at("extends")
        if isinstance(parents_value, str):
            parents: list[tuple[str, Location]] = [(parents_value, where)]
        elif isinstance(parents_value, YList) and all(isinstance(p, str) for p in parents_value):
            parents = [(p, parents_value.item_at(i)) for i, p in enumerate(parents_value)]
        else:
            self.problems.append(
                ExtendsError(
                    f"{key!s}: extends: expected a job name or a list of job names, found "
                    + describe(parents_value),
                    where,
                )
            )
            parents = []
        if len(chain) >= MAX_EXTENDS_DEPTH:
            self.problems.append(
                ExtendsError(
                    f"{key!s}: extends: more than {MAX_EXTENDS_DEPTH} levels of inheritance "
                    f"({' → '.join(map(str, (*chain, key)))}); flatten some templates",
                    where,
                )
            )
            parents = []
        merged: YMap | None = None
        for parent, ploc in parents:
            if parent in (*chain, key):
                if parent == key:
                    cycle = f"{key} → {key}"
                else:
                    cycle = " → ".join(map(str, (*chain[chain.index(parent) :], key, parent)))
                self.problems.append(ExtendsError(f"{key!s}: extends: cycle {cycle}", ploc))
                continue
            target = data.get(parent)
            if parent not in data or not is_job_key(parent, target):
                candidates = [str(k) for k, v in data.items() if is_job_key(k, v)]
                self.problems.append(
                    ExtendsError(
                        f"{key!s}: extends: unknown job or template {parent!r}"
                        + name_hint(parent, candidates),
                        ploc,
                    )
                )
                continue
            if not isinstance(target, YMap):
                self.problems.append(
                    ExtendsError(
                        f"{key!s}: extends: {parent!r} is {describe(target)}, not a mapping",
                        ploc,
                    )
                )
                continue
            resolved = self._extended(data, parent, (*chain, key), done)
            merged = resolved if merged is None else deep_merge(merged, resolved)
        own = YMap(job.location)
        # A job whose `extends` failed keeps the keyword, so validation knows the job is
        # incomplete and does not add "no script" to the real problem.
        failed = len(self.problems) > problems_before
        for k in job:
            if k != "extends" or failed:
                own.copy_entry(job, k)
        result = own if merged is None else deep_merge(merged, own)
        result.location = job.location
        done[key] = result
        return result

    # !reference ----------------------------------------------------------------------------
    def with_references(self, data: YMap) -> YMap:
        """The mapping with every `!reference` replaced by what it points to."""
        return self._replace_refs(data, data, 0)  # type: ignore[no-any-return]

    def _replace_refs(self, value: Any, root: YMap, depth: int) -> Any:
        if isinstance(value, Reference):
            return self._follow(value, root, depth)
        if isinstance(value, YMap):
            if not any(isinstance(v, YMap | YList | Reference) for v in value.values()):
                return value
            out = YMap(value.location)
            for key in value:
                new = self._replace_refs(value[key], root, depth)
                out.set(key, new, value.key_at(key), value.value_at(key))
            return out
        if isinstance(value, YList):
            if not any(isinstance(v, YMap | YList | Reference) for v in value):
                return value
            lst = YList(value.location)
            for i, item in enumerate(value):
                new = self._replace_refs(item, root, depth)
                if isinstance(item, Reference) and isinstance(new, YList):
                    # GitLab splices a referenced list into the list that holds the reference.
                    for j, sub in enumerate(new):
                        lst.add(sub, new.item_at(j))
                else:
                    lst.add(new, value.item_at(i))
            return lst
        return value

    def _follow(self, ref: Reference, root: YMap, depth: int) -> Any:
        if depth >= MAX_REFERENCE_DEPTH:
            self.problems.append(
                ValidationError(
                    f"!reference nested more than {MAX_REFERENCE_DEPTH} levels deep (a cycle?)",
                    ref.location,
                )
            )
            return None
        node: Any = root
        for i, part in enumerate(ref.path):
            if not isinstance(node, YMap) or part not in node:
                shown = ", ".join(ref.path[: i + 1])
                self.problems.append(
                    ValidationError(f"!reference [{shown}] points to nothing", ref.location)
                )
                return None
            node = node[part]
        return self._replace_refs(node, root, depth + 1)

    # default -------------------------------------------------------------------------------
    def with_defaults(self, data: YMap) -> YMap:
        """Every job with the `default:` keywords it lacks and may inherit."""
        defaults = YMap(data.location)
        for key in LEGACY_GLOBAL_DEFAULTS:
            if key in data:
                defaults.copy_entry(data, key)
        block = data.get("default")
        if isinstance(block, YMap):
            for key in block:
                if key in DEFAULT_KEYWORDS:
                    defaults.copy_entry(block, key)
        if not defaults:
            return data
        out = YMap(data.location)
        for key in data:
            value = data[key]
            if (
                isinstance(key, str)
                and not key.startswith(".")
                and key not in GLOBAL_KEYWORDS
                and isinstance(value, YMap)
            ):
                out.set(key, _apply_defaults(value, defaults), data.key_at(key), data.value_at(key))
            else:
                out.copy_entry(data, key)
        return out


def _include_rule_problem(rule: Any) -> tuple[str, str] | None:
    """What is wrong with one `include: rules` entry (message, key), or None."""
    if not isinstance(rule, YMap) or not rule:
        return (
            f"include: rules: each rule is a mapping like {{if: ...}}, found {describe(rule)}",
            "",
        )
    for key in rule:
        if key not in _INCLUDE_RULE_KEYS:
            hint = _suggest(key, list(_INCLUDE_RULE_KEYS))
            return (
                f"include: rules: unknown rule keyword {key!r}{hint}; include rules take "
                "if, exists, changes and when",
                str(key),
            )
    if "if" in rule and not isinstance(rule["if"], str):
        return (f"include: rules: if expects an expression, found {describe(rule['if'])}", "if")
    for key in ("exists", "changes"):
        if key in rule and _strings(rule[key]) is None:
            return (f"include: rules: {key} expects a list of paths", key)
    if "when" in rule and rule["when"] not in ("never", "always"):
        return (
            "include: rules: when can only be `never` or `always` (GitLab's rule for includes)",
            "when",
        )
    return None


def _strings(value: Any) -> list[str] | None:
    """A path or list of paths as a list (`exists: {paths: [...]}` too); None when it is not."""
    if isinstance(value, YMap) and set(value) <= {"paths", "project", "ref", "compare_to"}:
        value = value.get("paths")
    if isinstance(value, str):
        return [value]
    if isinstance(value, YList) and all(isinstance(v, str) for v in value):
        return list(value)
    return None


def _listed_files(root: Path) -> list[str]:
    try:
        return files_in_repository(root, MAX_LISTED_FILES)
    except OSError:
        return []


def include_variables(context: TriggerContext, config_path: str) -> dict[str, str]:
    """The variables GitLab expands in `include:` (pipeline predefined and trigger/project ones).

    Not the file's own `variables:` (GitLab reads includes before them), nor job variables.
    """
    from pipeline.predefined import pipeline_variables  # only when an include needs them

    found = {
        v.name: v.value
        for v in pipeline_variables(context, config_path=config_path, workflow_name=None)
        # GitLab reads the configuration before the pipeline exists: it has no id yet
        if v.name not in ("CI_PIPELINE_ID", "CI_PIPELINE_IID")
    }
    found.update(context.variables)
    return found


def _read_in_repository(root: Path, rel: str, shown: str) -> str:
    try:
        fd = open_in_repository(root, rel)
    except (OSError, ValueError):
        raise LoadError(f"file not found in the repository: {shown}", Location(shown)) from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise LoadError(f"{shown} is not a regular file", Location(shown))
        # the fd's own /proc name reopens the file resolved above, not the path again
        return read_text(Path(f"/proc/self/fd/{fd}"), shown)
    finally:
        os.close(fd)


def _apply_defaults(job: YMap, defaults: YMap) -> YMap:
    allowed = _inherited_defaults(job)
    # GitLab: a keyword set to null is not set, so the default still applies to it.
    missing = [k for k in defaults if job.get(k) is None and (allowed is None or k in allowed)]
    if not missing:
        return job
    out = job.shallow_copy()
    for key in missing:
        out.copy_entry(defaults, key)
    return out


def _inherited_defaults(job: YMap) -> set[str] | None:
    """Which default keywords a job takes: None for all (GitLab's `inherit: default:`)."""
    inherit = job.get("inherit")
    if not isinstance(inherit, YMap) or "default" not in inherit:
        return None
    value = inherit["default"]
    if value is False:
        return set()
    if isinstance(value, YList):
        return {v for v in value if isinstance(v, str)}
    return None


def _suggest(word: Any, candidates: list[str]) -> str:
    close = difflib.get_close_matches(str(word), candidates, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def resolve_collecting(
    document: Document,
    context: TriggerContext | None = None,
    remote: RemoteFetcher | None = None,
) -> tuple[Document, list[PipelineError]]:
    """Resolve a document and return it with every problem found (for `kapal lint`).

    `context` is the trigger `include:` paths and `include: rules` are evaluated for; without
    one, a push to the default branch (what GitLab's CI Lint simulates). `remote` fetches
    `include: remote` files (pipeline/ itself does no network I/O).
    """
    if document.resolved:
        return document, list(document.warnings)
    if context is None:
        context = TriggerContext(branch=TriggerContext().default_branch)
    resolver = _Resolver(
        Path(document.root_dir),
        _shown_dir(document),
        context=context,
        config_path=document.path,
        changed_files=context.changed_files,
        project_files=context.project_files,
        fetcher=remote,
    )
    with collect_warnings() as warnings:
        data, files = resolver.with_includes(document.data, document.path, (_self_rel(document),))
    data = resolver.with_extends(data)
    data = resolver.with_references(data)
    data = resolver.with_defaults(data)
    resolved = Document(
        path=document.path,
        root_dir=document.root_dir,
        data=data,
        resolved=True,
        included_files=tuple(files),
        warnings=(*document.warnings, *warnings),
    )
    for problem in resolver.problems:
        loc = problem.location
        if loc is not None and not loc.keyword:
            keyword = {IncludeError: "include", ExtendsError: "extends"}.get(
                type(problem), "!reference"
            )
            problem.location = dataclasses.replace(loc, keyword=keyword)
    return resolved, [*resolved.warnings, *resolver.problems]


def _shown_dir(document: Document) -> str:
    """The directory of the main file as the user named it, when it is the project root."""
    shown = Path(document.path).parent
    try:
        if shown.resolve() != Path(document.root_dir).resolve():
            return ""
    except (OSError, ValueError):
        return ""
    return "" if str(shown) == "." else shown.as_posix()


def _self_rel(document: Document) -> str:
    try:
        return str(Path(document.path).resolve().relative_to(Path(document.root_dir).resolve()))
    except (ValueError, OSError):
        return document.path


def resolve(
    document: Document,
    context: TriggerContext | None = None,
    remote: RemoteFetcher | None = None,
) -> Document:
    """Apply include, extends, !reference and default; raise the errors found, grouped.

    Warnings do not stop it; they stay in the returned document's `warnings`. `context` as for
    `resolve_collecting`.
    """
    resolved, found = resolve_collecting(document, context, remote)
    problems = [p for p in found if p.severity == "error"]
    if len(problems) == 1:
        raise problems[0]
    if problems:
        raise ValidationError(f"{len(problems)} problems in the pipeline", problems=problems)
    return resolved
