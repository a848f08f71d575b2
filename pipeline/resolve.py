"""`resolve()`: turn a loaded file into one self-contained configuration.

In GitLab's order: included files (`local`, `remote`, and `project`, `component`, `template`
read from a GitLab instance through the caller's fetcher) are deep-merged under the main file;
an `include: local` inside a file read from a project is that project's file, at the same ref,
as in GitLab. Then `extends`
(multi-level, last parent wins, hashes deep-merged, arrays and scalars replaced), then
`!reference` tags, then `default:` (and the deprecated top-level `image`, `services`,
`before_script`, `after_script`, `cache`) copied into jobs that lack the keyword, as `inherit:
default:` allows. Problems are collected so `kapal lint` can show them all at once.
"""

from __future__ import annotations

import dataclasses
import os
import re
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
from pipeline.records import record
from pipeline.remote import GitLabFetcher, RemoteFetcher, integrity_problem
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

_INCLUDE_KINDS = ("local", "remote", "project", "component", "template")
# what each kind takes beside itself, `rules` and `inputs`
_INCLUDE_EXTRAS = {
    "local": (),
    "remote": ("integrity",),
    "project": ("file", "ref"),
    "component": (),
    "template": (),
}
_PROJECT_KEYS = {
    "file": "`include: file` belongs to `include: project`: add `project: group/name`, or use "
    "`include: local` for this repository's files",
    "ref": "`include: ref` belongs to `include: project`: add `project: group/name` and `file:`",
}
_PATH_SEGMENT = r"[A-Za-z0-9_][A-Za-z0-9_.+-]*"
_PROJECT_PATH = re.compile(rf"{_PATH_SEGMENT}(?:/{_PATH_SEGMENT})+")
_COMPONENT_NAME = re.compile(_PATH_SEGMENT)
_TEMPLATE_NAME = re.compile(r"(?:[A-Za-z0-9_+-][A-Za-z0-9_.+ -]*/)*[A-Za-z0-9_+-][A-Za-z0-9_.+ -]*")
_TEMPLATE_SUFFIX = ".gitlab-ci.yml"
_SERVER_FQDN = ("$CI_SERVER_FQDN", "${CI_SERVER_FQDN}")
# (project, ref) a file was read from: its `include: local` entries are that project's files
_Origin = tuple[str, str | None] | None


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


@record
class _Include:
    """One `include:` entry: the path (variables expanded), where it is written, its extras."""

    path: str
    location: Location
    inputs: YMap | None = None
    rules: YList | None = None
    written: str = ""
    kind: str = "local"  # or remote, project, component, template
    integrity: str | None = None
    # include: project's project and ref (None: the default branch); a component's project
    # and version (its name in `path`) and the host written before it ("": $CI_SERVER_FQDN)
    project: str = ""
    ref: str | None = None
    host: str = ""

    @property
    def shown(self) -> str:
        """The path for messages: as expanded, and as written when variables changed it."""
        if self.written and self.written != self.path:
            return f"{self.path!r} (from {self.written!r})"
        return repr(self.path)

    @property
    def named(self) -> str:
        """The include for messages: its kind and what it reads."""
        if self.kind == "project":
            at = f" (ref {self.ref!r})" if self.ref else ""
            return f"include: project {self.project!r} file {self.shown}{at}"
        if self.kind == "component":
            return f"include: component {self.written!r}"
        return f"include: {self.kind} {self.shown}"

    @property
    def key(self) -> str:
        """What the include reads, for finding cycles."""
        if self.kind == "project":
            return f"{self.project}:{self.path}" + (f"@{self.ref}" if self.ref else "")
        if self.kind == "component":
            return f"{self.host}/{self.project}/{self.path}@{self.ref}"
        if self.kind == "template":
            return f"template:{self.path}"
        return self.path


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
        self, data: YMap, path: str, stack: tuple[str, ...], origin: _Origin = None
    ) -> tuple[YMap, list[str]]:
        """The file's mapping with its included files merged under it.

        `origin` is the project (and ref) the file was read from, None for this repository.
        """
        if "include" not in data:
            return data, []
        entries = self._include_entries(data)
        merged: YMap | None = None
        files: list[str] = []
        for found in entries:
            if not self._rules_admit(found):
                continue
            entry = (
                found
                if found.kind != "local" or origin is None
                else self._in_project(origin, found)
            )
            if entry is None:
                continue
            if entry.kind != "local":
                key = entry.key
                if self._in_cycle(key, stack, entry):
                    continue
                if self._over_limit(entry):
                    return data, files
                loaded = self._load_fetched(entry, origin)
                if loaded is None:
                    continue
                fetched, shown, sub_origin = loaded
                fetched, nested = self.with_includes(fetched, key, (*stack, key), sub_origin)
                files.extend([shown, *nested])
                merged = fetched if merged is None else deep_merge(merged, fetched)
                continue
            for target in self._expand_local(entry):
                rel = str(target.relative_to(self.root_dir))
                if self._in_cycle(rel, stack, entry):
                    continue
                if self._over_limit(entry):
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
                    out.append(_Include(url, where, written=item, kind="remote"))
                    continue
                out.append(_Include(self._expanded(item, where), where, written=item))
            elif isinstance(item, YMap):
                out.extend(self._include_mapping(item))
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

    def _include_mapping(self, item: YMap) -> list[_Include]:
        kinds = [key for key in item if key in _INCLUDE_KINDS]
        if len(kinds) > 1:
            self.problems.append(
                IncludeError(
                    f"include: an entry reads one file kind, this one has both {kinds[0]!r} and "
                    f"{kinds[1]!r}: write them as two list items",
                    item.key_at(kinds[1]),
                )
            )
            return []
        if not kinds:
            for key in item:
                if key in _PROJECT_KEYS:
                    self.problems.append(IncludeError(_PROJECT_KEYS[key], item.key_at(key)))
                    return []
        kind = kinds[0] if kinds else "local"
        allowed = [kind, *_INCLUDE_EXTRAS[kind], "rules", "inputs"]
        for key in item:
            if key not in allowed:
                hint = _suggest(key, allowed)
                self.problems.append(
                    IncludeError(f"unknown include keyword {key!r}{hint}", item.key_at(key))
                )
                return []
        if kind not in item:
            self.problems.append(
                IncludeError(
                    "include: a mapping needs `local: path/to/file.yml` (or remote, project, "
                    "component, template)",
                    item.location,
                )
            )
            return []
        value = item[kind]
        if not isinstance(value, str) or not value:
            what = {
                "remote": "an http(s) URL",
                "project": "a project's full path like group/name",
                "component": "a component like $CI_SERVER_FQDN/group/project/name@1.0.0",
                "template": "a GitLab template name like Auto-DevOps.gitlab-ci.yml",
            }.get(kind, "a file path")
            self.problems.append(
                IncludeError(
                    f"include: {kind} expects {what}, found {describe(value)}",
                    item.value_at(kind),
                )
            )
            return []
        integrity = item.get("integrity")
        if "integrity" in item and not isinstance(integrity, str):
            self.problems.append(
                IncludeError(
                    "include: integrity expects a hash like sha256-BASE64, found "
                    + describe(integrity),
                    item.value_at("integrity"),
                )
            )
            return []
        inputs = item.get("inputs")
        if "inputs" in item and not isinstance(inputs, YMap):
            self.problems.append(
                IncludeError(
                    "include: inputs expects a mapping of input names to values, found "
                    + describe(inputs),
                    item.value_at("inputs"),
                )
            )
            return []
        rules = self._include_rules(item) if "rules" in item else None
        if rules is _BAD_RULES:
            return []
        where = item.value_at(kind)
        entry = _Include(value, where, inputs, rules, value, kind, integrity)
        if kind == "project":
            return self._project_includes(item, entry)
        if kind == "component":
            component = self._component_include(entry)
            return [] if component is None else [component]
        path = self._expanded(value, where)
        if kind == "remote" and not path.startswith(("http://", "https://")):
            self.problems.append(
                IncludeError(f"include: remote expects an http(s) URL, found {value!r}", where)
            )
            return []
        if kind == "template" and not (
            path.endswith(_TEMPLATE_SUFFIX) and _TEMPLATE_NAME.fullmatch(path)
        ):
            self.problems.append(
                IncludeError(
                    "include: template expects a GitLab template name like "
                    f"Auto-DevOps.gitlab-ci.yml or Jobs/SAST.gitlab-ci.yml, found {value!r}",
                    where,
                )
            )
            return []
        return [dataclasses.replace(entry, path=path)]

    def _project_includes(self, item: YMap, entry: _Include) -> list[_Include]:
        """One entry per `file:` of an `include: project` (variables expanded, paths checked)."""
        project = self._expanded(entry.written, entry.location)
        if not _PROJECT_PATH.fullmatch(project):
            self.problems.append(
                IncludeError(
                    "include: project expects a project's full path like group/name (letters, "
                    f"digits, _ . + - between slashes), found {project!r}",
                    entry.location,
                )
            )
            return []
        ref: str | None = None
        if item.get("ref") is not None:
            if not isinstance(item["ref"], str) or not item["ref"]:
                self.problems.append(
                    IncludeError(
                        "include: ref expects a branch, tag or commit SHA, found "
                        + describe(item["ref"]),
                        item.value_at("ref"),
                    )
                )
                return []
            ref = self._expanded(item["ref"], item.value_at("ref"))
        files = item.get("file")
        if isinstance(files, str) and files:
            written: list[tuple[str, Location]] = [(files, item.value_at("file"))]
        elif isinstance(files, YList) and files and all(isinstance(f, str) and f for f in files):
            written = [(f, files.item_at(i)) for i, f in enumerate(files)]
        else:
            found = "nothing" if "file" not in item else describe(files)
            self.problems.append(
                IncludeError(
                    "include: project needs `file:`, a path or a list of paths in the project, "
                    f"found {found}",
                    item.value_at("file") if "file" in item else item.location,
                )
            )
            return []
        out = []
        for path, where in written:
            expanded = self._expanded(path, where)
            one = dataclasses.replace(
                entry, path=expanded, location=where, written=path, project=project, ref=ref
            )
            checked = self._project_path(one)
            if checked is not None:
                out.append(checked)
        return out

    def _project_path(self, entry: _Include) -> _Include | None:
        """The entry with its path relative to the project root; None when it is refused."""
        rel = PurePosixPath(entry.path.lstrip("/"))
        problem = None
        if not entry.path.strip("/") or ".." in rel.parts:
            problem = "points outside the project; paths are relative to the project root"
        elif rel.suffix not in (".yml", ".yaml"):
            problem = "must be a .yml or .yaml file"
        elif "*" in str(rel):
            problem = (
                "has a wildcard: kapal reads a project's files one by one through GitLab's API "
                "and cannot list them; name each file"
            )
        if problem is not None:
            self.problems.append(IncludeError(f"{entry.named} {problem}", entry.location))
            return None
        return dataclasses.replace(entry, path=str(rel))

    def _in_project(self, origin: tuple[str, str | None], entry: _Include) -> _Include | None:
        """An `include: local` of a file read from a project: that project's file (GitLab)."""
        return self._project_path(
            dataclasses.replace(entry, kind="project", project=origin[0], ref=origin[1])
        )

    def _component_include(self, entry: _Include) -> _Include | None:
        """The entry with the component's host, project, name and version taken apart."""
        written = entry.written
        first, _, rest = written.partition("/")
        if first in _SERVER_FQDN:
            host, rest = "", self._expanded(rest, entry.location)
        else:
            host, _, rest = self._expanded(written, entry.location).partition("/")
        path, at, version = rest.rpartition("@")
        parts = path.split("/")
        if not at or not version:
            problem = (
                "needs a version after @: a release like 1.0.0, ~latest, a partial version "
                "like 1 or 1.2, a commit SHA or a branch"
            )
        elif (
            (not host and first not in _SERVER_FQDN)
            or len(parts) < 3
            or not _PROJECT_PATH.fullmatch("/".join(parts[:-1]))
            or not _COMPONENT_NAME.fullmatch(parts[-1])
        ):
            problem = "expects $CI_SERVER_FQDN/group/project/component-name@version"
        else:
            return dataclasses.replace(
                entry, path=parts[-1], project="/".join(parts[:-1]), ref=version, host=host
            )
        self.problems.append(
            IncludeError(f"include: component {problem}, found {written!r}", entry.location)
        )
        return None

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

    def _in_cycle(self, key: str, stack: tuple[str, ...], entry: _Include) -> bool:
        """Whether including `key` under `stack` closes a cycle (reported)."""
        if key not in stack:
            return False
        cycle = " → ".join([*stack[stack.index(key) :], key])
        self.problems.append(IncludeError(f"include cycle: {cycle}", entry.location))
        return True

    def _over_limit(self, entry: _Include) -> bool:
        """Count one more included file; whether that is more than MAX_INCLUDES (reported)."""
        self.include_count += 1
        if self.include_count <= MAX_INCLUDES:
            return False
        self.problems.append(
            IncludeError(f"more than {MAX_INCLUDES} included files", entry.location)
        )
        return True

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
                    f"include: file {shown} not found in the repository "
                    "(local includes are relative to its root)",
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

    def _load_fetched(self, entry: _Include, origin: _Origin) -> tuple[YMap, str, _Origin] | None:
        """A file read through the caller's fetcher: its mapping, how it is shown, and the
        project its own `include: local` entries read from (None: this repository)."""
        fetcher = self.fetcher
        gitlab = fetcher if isinstance(fetcher, GitLabFetcher) else None
        try:
            if entry.kind == "remote" and fetcher is not None:
                content, shown = self._remote(fetcher, entry), entry.path
            elif entry.kind == "template" and gitlab is not None:
                content, shown = self._template(gitlab, entry), f"template:{entry.path}"
            elif gitlab is not None:
                content, shown, origin = self._project_file(gitlab, entry)
            else:
                which = "" if entry.kind == "remote" else "GitLab "
                self.problems.append(
                    IncludeError(
                        f"{entry.named} was not fetched: no {which}fetcher was given (`kapal "
                        "lint`, `plan`, `run` and kapal's server pass one; a library caller "
                        "passes `remote=`); or copy the file into the repository and use "
                        "`include: local`",
                        entry.location,
                    )
                )
                return None
        except IncludeError as exc:
            self.problems.append(IncludeError(f"{entry.named}: {exc.message}", entry.location))
            return None
        data = self._parsed(content, shown, entry)
        return None if data is None else (data, shown, origin)

    @staticmethod
    def _remote(fetcher: RemoteFetcher, entry: _Include) -> bytes:
        content = fetcher.fetch(entry.path)
        if entry.integrity is not None:
            problem = integrity_problem(content, entry.integrity)
            if problem is not None:
                raise IncludeError(problem)
        return content

    @staticmethod
    def _template(gitlab: GitLabFetcher, entry: _Include) -> bytes:
        content = gitlab.template(entry.path.removesuffix(_TEMPLATE_SUFFIX))
        if content is None:
            raise IncludeError(
                "the GitLab instance has no such CI/CD template (GET "
                "/api/v4/templates/gitlab_ci_ymls lists them; names are case-sensitive)"
            )
        return content

    @staticmethod
    def _project_file(
        gitlab: GitLabFetcher, entry: _Include
    ) -> tuple[bytes, str, tuple[str, str | None]]:
        """A project's file, or a component's (templates/NAME.yml, else
        templates/NAME/template.yml, at the ref its version names)."""
        if entry.kind == "project":
            content = gitlab.project_file(entry.project, entry.path, entry.ref)
            at = f" at ref {entry.ref!r}" if entry.ref else " on its default branch"
            if content is None:
                raise IncludeError(f"project {entry.project!r} has no file {entry.path!r}{at}")
            shown = f"{entry.project}:{entry.path}" + (f"@{entry.ref}" if entry.ref else "")
            return content, shown, (entry.project, entry.ref)
        ref = gitlab.component_ref(entry.host, entry.project, entry.ref or "")
        candidates = (f"templates/{entry.path}.yml", f"templates/{entry.path}/template.yml")
        for path in candidates:
            content = gitlab.project_file(entry.project, path, ref)
            if content is not None:
                return content, f"{entry.project}:{path}@{ref}", (entry.project, ref)
        raise IncludeError(
            f"project {entry.project!r} has no component {entry.path!r} at {ref!r}: neither "
            f"{candidates[0]} nor {candidates[1]} exists there"
        )

    def _parsed(self, content: bytes, shown: str, entry: _Include) -> YMap | None:
        """A fetched file as a mapping, parsed with the entry's inputs."""
        if len(content) > MAX_FILE_BYTES:
            self.problems.append(
                IncludeError(
                    f"{entry.named}: larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB",
                    entry.location,
                )
            )
            return None
        try:
            text = content.decode("utf-8")
        except UnicodeDecodeError:
            self.problems.append(IncludeError(f"{entry.named}: not UTF-8 text", entry.location))
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
                given = defaults
                if "trigger" in value:  # a trigger job runs nothing: GitLab gives it only this
                    given = YMap(data.location)
                    if "interruptible" in defaults:
                        given.copy_entry(defaults, "interruptible")
                out.set(key, _apply_defaults(value, given), data.key_at(key), data.value_at(key))
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
    import difflib  # only for a name that is not found

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
