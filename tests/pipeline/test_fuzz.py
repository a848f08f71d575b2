"""Property tests: whatever the pipeline file, load → validate → plan raises only PipelineError.

Inputs: random YAML documents (nested dicts/lists/scalars, with GitLab keywords as keys often
enough to get past the top-level checks), random text built from YAML syntax, and random
mutations of the valid files (tests/pipeline/fixtures/valid and tests/pipeline/realworld):
a key deleted, a value's type changed, a job duplicated, a garbage keyword inserted, the
indentation of a line broken. Each input is planned under several triggers and linted.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline import (
    PIPELINE_SOURCES,
    IncludeError,
    LoadError,
    PipelineError,
    Plan,
    TriggerContext,
    lint,
    load,
    loads,
    plan,
    validate,
)

HERE = Path(__file__).parent
VALID_FILES = sorted(
    {
        *(HERE / "fixtures" / "valid").rglob("*.yml"),
        *(HERE / "fixtures" / "valid").rglob("*.yaml"),
        *(HERE / "realworld").glob("*.yml"),
        HERE / "realworld" / "templates-project" / ".gitlab-ci.yml",
    }
)

CONTEXTS = (
    TriggerContext(source="push", branch="main"),
    TriggerContext(source="push", tag="v1.0.0", changed_files=None),
    TriggerContext(
        source="merge_request_event",
        branch="feature/x",
        changed_files=("src/app.py", "docs/index.md", "web/a.ts"),
        project_files=("Dockerfile", "src/app.py", "README.md"),
        variables=(("CI_MERGE_REQUEST_IID", "7"), ("CI_MERGE_REQUEST_LABELS", "a,b")),
    ),
    TriggerContext(source="schedule", branch="dev", variables=(("DEPLOY", "true"),)),
)

KEYWORDS = [
    "stages", "variables", "default", "include", "workflow", "image", "services", "script",
    "before_script", "after_script", "stage", "needs", "dependencies", "rules", "if", "changes",
    "exists", "when", "only", "except", "refs", "allow_failure", "exit_codes", "retry", "max",
    "timeout", "artifacts", "paths", "reports", "junit", "expire_in", "cache", "key", "files",
    "policy", "parallel", "matrix", "environment", "name", "url", "action", "extends", "local",
    "interruptible", "resource_group", "tags", "build", "deploy", "context", "dockerfile",
    "build_args", "push", "to", "service", "port", "health", "job", "optional", "value",
    "description", "alias", "entrypoint", "command", "compare_to", "trigger", "inherit",
    ".template", "job1", "job2", "test", "build-job", "<<", "expose_as", "start_in",
    "auto_cancel", "on_new_commit", "on_job_failure", "fallback_keys", "on_stop", "auto_stop_in",
    "id_tokens", "secrets", "pages", "release", "dast_configuration", "coverage_report",
    "coverage_format", "dotenv", "cobertura", "spec", "inputs",
]  # fmt: skip
SCALAR_WORDS = [
    "main", "build", "test", "deploy", ".pre", ".post", "manual", "never", "always",
    "on_success", "on_failure", "delayed", "1h 30m", "10m", "forever", "3", "-1",
    "$CI_COMMIT_BRANCH", '$CI_COMMIT_BRANCH == "main"', "$X =~ /^v[0-9]+/", "$A ==", "(",
    "/^feature-.*/", "/[a/", "**/*.py", "{a,b}/*", "[", "job1", "job2", "test", ".template",
    "python:3.12", "postgres:15", "echo hi", "tags", "branches", "schedules", "merge_requests",
    "pull", "push", "pull-push", "start", "stop", "x" * 70, "", " ", "null", "~", "ÿ",
    "$CACHE_POLICY", "$[[ matrix.PY ]]", "$[[ matrix.NOPE ]]", "${CI}", "job1: [3.11]",
    "interruptible", "none", "30 minutes", "1 day",
]  # fmt: skip

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-5, max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(SCALAR_WORDS),
    st.text(max_size=12),
)
_keys = st.one_of(st.sampled_from(KEYWORDS), st.text(max_size=8), st.integers(-2, 3))
_documents = st.recursive(
    _scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(_keys, children, max_size=5),
    ),
    max_leaves=25,
)
_top_level = st.dictionaries(st.sampled_from(KEYWORDS), _documents, min_size=1, max_size=6)

_YAML_PIECES = [
    "stages:", "job:", "  script:", "    - echo", "- ", "  ", "\n", ":", " ", "[", "]", "{", "}",
    ",", "&a ", "*a", "<<: *a", "!reference [job, script]", "!!str ", "!!python/name:os.system",
    "'", '"', "#", "---", "...", "%YAML 1.1", "? ", "|", ">", "\t", "rules:", "  - if: ",
    "needs: [", "extends: ", "include: ", "local: x.yml", "$A == 'b'", "when: manual",
    "parallel: 3", "matrix:", "0x1F", "1e400", ".inf", "~", "null", "yes", "\x00", "\ufeff",
]  # fmt: skip
_raw_text = st.one_of(
    st.text(max_size=200),
    st.lists(st.sampled_from(_YAML_PIECES), max_size=40).map("".join),
)


def _check(text: str, root_dir: Path = HERE) -> None:
    """Load, validate, lint and plan under every context; only PipelineError may escape."""
    for_lint = _lint(text, root_dir)
    assert all(isinstance(problem, PipelineError) for problem in for_lint)
    for problem in for_lint:
        # Every problem has a JSON form, and speaks YAML (null), not Python (None).
        json.dumps(problem.as_dict())
        if "None" not in text:
            assert not re.search(r"\bNone\b", str(problem)), str(problem)
    try:
        document = loads(text, filename=".gitlab-ci.yml", root_dir=root_dir)
        config = validate(document)
    except PipelineError:
        return
    for context in CONTEXTS:
        try:
            the_plan = plan(config, context)
        except PipelineError:
            continue
        assert Plan.from_json(the_plan.to_json()) == the_plan


def _lint(text: str, root_dir: Path) -> list[PipelineError]:
    try:
        document = loads(text, filename=".gitlab-ci.yml", root_dir=root_dir)
    except PipelineError as exc:
        return exc.problems
    return lint(document)


class _Reference(list[Any]):
    """A `!reference [job, key]` kept through a plain-data round trip."""


class _Loader(yaml.SafeLoader):
    """SafeLoader that keeps `!reference` tags (the valid fixtures use them)."""


class _Dumper(yaml.SafeDumper):
    """SafeDumper that writes `!reference` tags back."""


_Loader.add_constructor(
    "!reference",
    lambda loader, node: _Reference(loader.construct_sequence(node, deep=True)),  # type: ignore[arg-type]
)
_Dumper.add_representer(
    _Reference, lambda dumper, data: dumper.represent_sequence("!reference", list(data))
)


def _dump(data: Any) -> str:
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True)


# Bounded so the whole file stays around a minute on a busy 2-core machine.
FUZZ = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
FUZZ_LIGHT = settings(FUZZ, max_examples=150)


@FUZZ_LIGHT
@given(_documents)
def test_random_yaml_documents(data: Any) -> None:
    """Any YAML value at all as the whole file."""
    _check(_dump(data))


@FUZZ_LIGHT
@given(_top_level)
def test_random_keyword_documents(data: dict[str, Any]) -> None:
    """Mappings keyed by GitLab keywords and job names, with random values below."""
    _check(_dump(data))


@FUZZ
@given(_raw_text)
def test_random_text(text: str) -> None:
    """Arbitrary text, much of it made of YAML syntax."""
    _check(text)


# -- escapes found by fuzzing, kept as regressions ------------------------------------------


def test_include_with_a_name_longer_than_the_file_system_allows() -> None:
    """Found by fuzzing: `include: local:` with a 300-character name raised OSError
    (ENAMETOOLONG) from Path.is_file() in resolve; now it is "file not found"."""
    text = "include:\n  - local: " + "a" * 300 + ".yml\njob:\n  script: [x]\n"
    problems = _lint(text, HERE)
    assert [type(problem) for problem in problems] == [IncludeError]
    assert "not found" in problems[0].message
    _check(text)


@pytest.mark.parametrize(
    ("path", "fragment"),
    [
        ("a" * 5000 + ".yml", "File name too long"),  # OSError from Path.is_dir()
        ("x\0y.yml", "NUL byte"),  # ValueError from open()
        ("/dev/zero", "larger than"),  # read_bytes() never returned: memory filled up
    ],
)
def test_load_paths_the_system_refuses(path: str, fragment: str) -> None:
    """Found while fuzzing `load()`'s path argument: each is now a LoadError."""
    with pytest.raises(LoadError, match=fragment):
        load(path)
    assert isinstance(lint(path)[0], LoadError)


# -- plausible pipelines: mostly valid, so the planner is reached ----------------------------

JOB_NAMES = ["lint", "unit", "e2e", "pack", "ship", ".base", "missing"]
STAGES = ["build", "test", "deploy", ".pre", ".post", "nope"]
EXPRESSIONS = [
    "$CI_COMMIT_BRANCH",
    "$CI_COMMIT_TAG",
    '$CI_COMMIT_BRANCH == "main"',
    "$CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH",
    '$CI_PIPELINE_SOURCE == "merge_request_event"',
    '$CI_PIPELINE_SOURCE == "schedule" || $DEPLOY == "true"',
    "$CI_MERGE_REQUEST_LABELS =~ /(^|,)b(,|$)/",
    "$CI_COMMIT_REF_NAME !~ /^release-/i && ($X || $Y == null)",
    "$PATTERN_VAR =~ $CI_COMMIT_BRANCH",
    "$A ==",
    "(",
]


def _sometimes(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Usually a plausible value, now and then anything at all."""
    # one_of() would pick the garbage branch far more often than one time in N.
    return st.integers(0, 19).flatmap(lambda pick: _documents if pick == 7 else strategy)


_when = st.sampled_from(["on_success", "on_failure", "always", "manual", "never", "delayed"])
_auto_cancel = st.fixed_dictionaries(
    {},
    optional={
        "on_new_commit": st.sampled_from(["conservative", "interruptible", "none", "x"]),
        "on_job_failure": st.sampled_from(["none", "all", "some"]),
    },
)
_rule = st.fixed_dictionaries(
    {},
    optional={
        "if": st.sampled_from(EXPRESSIONS),
        "changes": st.lists(st.sampled_from(["src/**/*", "*.md", "{web,api}/**", "[", "docs/"])),
        "exists": st.lists(st.sampled_from(["Dockerfile", "**/*.py", "nothing"]), max_size=2),
        "when": _when,
        "start_in": st.sampled_from(["5m", "2 weeks"]),
        "auto_cancel": _auto_cancel,
        "needs": st.lists(st.sampled_from(["lint", "unit", "missing", "unit: [3.11]"]), max_size=2),
        "interruptible": st.booleans(),
        "allow_failure": st.booleans(),
        "variables": st.dictionaries(st.sampled_from(["X", "Y", "DEPLOY"]), st.text(max_size=3)),
    },
)


def _without_allow_failure(rule: dict[str, Any]) -> dict[str, Any]:
    """`workflow: rules` take no `allow_failure`, `needs`, `interruptible`, `start_in`."""
    job_only = ("allow_failure", "needs", "interruptible", "start_in")
    return {key: value for key, value in rule.items() if key not in job_only}


def _job_rule(rule: dict[str, Any]) -> dict[str, Any]:
    """Job `rules` take no `auto_cancel` (a workflow rule's)."""
    return {key: value for key, value in rule.items() if key != "auto_cancel"}


_need = st.one_of(
    st.sampled_from(JOB_NAMES),
    st.sampled_from(["unit: [3.11]", "unit: [3.12, pg]", "lint: [pg]", "e2e 1/2"]),
    st.fixed_dictionaries(
        {"job": st.sampled_from(JOB_NAMES)},
        optional={
            "optional": st.booleans(),
            "artifacts": st.booleans(),
            "parallel": st.fixed_dictionaries(
                {
                    "matrix": st.lists(
                        st.dictionaries(
                            st.sampled_from(["PY", "DB"]),
                            st.sampled_from(["3.11", "pg", "$[[ matrix.PY ]]", "$[[ matrix.DB ]]"]),
                            min_size=1,
                        ),
                        min_size=1,
                        max_size=2,
                    )
                }
            ),
        },
    ),
)
_parallel = st.one_of(
    st.integers(0, 4),
    st.fixed_dictionaries(
        {
            "matrix": st.lists(
                st.dictionaries(
                    st.sampled_from(["PY", "DB"]),
                    st.one_of(
                        st.sampled_from(["3.11", "pg"]),
                        st.lists(st.sampled_from(["3.11", "3.12", "pg", "my"]), max_size=3),
                    ),
                    min_size=1,
                ),
                min_size=1,
                max_size=3,
            )
        }
    ),
)
_job = st.fixed_dictionaries(
    {"script": _sometimes(st.lists(st.sampled_from(["echo hi", "make test"]), min_size=1))},
    optional={
        "stage": _sometimes(st.sampled_from(STAGES)),
        "rules": _sometimes(st.lists(_rule.map(_job_rule), max_size=3)),
        "needs": _sometimes(st.lists(_need, max_size=3)),
        "dependencies": _sometimes(st.lists(st.sampled_from(JOB_NAMES), max_size=2)),
        "when": _sometimes(_when),
        "allow_failure": _sometimes(st.booleans()),
        "parallel": _sometimes(_parallel),
        "extends": _sometimes(st.sampled_from(JOB_NAMES)),
        "only": _sometimes(
            st.lists(st.sampled_from(["main", "tags", "branches", "/^feat/", "schedules"]))
        ),
        "except": _sometimes(st.lists(st.sampled_from(["main", "tags", "merge_requests"]))),
        "timeout": _sometimes(st.sampled_from(["10m", "1h 30m", "2 days", "soon"])),
        "environment": _sometimes(st.sampled_from(["production", "review/$CI_COMMIT_REF_SLUG"])),
        "variables": _sometimes(
            st.dictionaries(
                st.sampled_from(["X", "PY"]),
                st.one_of(st.text(max_size=3), st.booleans(), st.floats(0, 2), st.none()),
            )
        ),
        "image": _sometimes(st.sampled_from(["python:3.12", "alpine", None])),
        "start_in": _sometimes(st.sampled_from(["10 minutes", "1h", "8 days", "soon"])),
        "artifacts": _sometimes(
            st.fixed_dictionaries(
                {},
                optional={
                    "paths": st.lists(st.sampled_from(["out", "dist/**"]), max_size=2),
                    "expose_as": st.sampled_from(["Report", "", "x" * 120]),
                    "reports": st.dictionaries(
                        st.sampled_from(
                            ["junit", "sast", "dotenv", "cobertura", "coverage_report", "metrics"]
                        ),
                        st.one_of(
                            st.sampled_from(["r.xml", "b.env"]),
                            st.fixed_dictionaries(
                                {},
                                optional={
                                    "coverage_format": st.sampled_from(["cobertura", "lcov"]),
                                    "path": st.just("c.xml"),
                                },
                            ),
                        ),
                        max_size=3,
                    ),
                },
            )
        ),
        "environment_settings": _sometimes(
            st.fixed_dictionaries(
                {"name": st.sampled_from(["review/$CI_COMMIT_REF_SLUG", "PROD"])},
                optional={
                    "on_stop": st.sampled_from(JOB_NAMES),
                    "auto_stop_in": st.sampled_from(["1 day", "never", "later"]),
                    "action": st.sampled_from(["start", "stop"]),
                    "deployment_tier": st.sampled_from(["production", "moon"]),
                },
            )
        ),
        "secrets": _sometimes(st.just({"TOKEN": {"vault": "ci/token@kv"}})),
        "id_tokens": _sometimes(st.just({"ID_TOKEN": {"aud": "https://x.test"}})),
        "release": _sometimes(st.just({"tag_name": "$CI_COMMIT_TAG", "description": "d"})),
        "tags": _sometimes(st.lists(st.one_of(st.just("docker"), st.lists(st.just("gpu"))))),
        "cache": _sometimes(
            st.fixed_dictionaries(
                {"key": st.just("k")},
                optional={
                    "policy": st.sampled_from(["pull", "$CACHE_POLICY", None]),
                    "paths": st.lists(st.one_of(st.just("a"), st.lists(st.just("b")))),
                },
            )
        ),
        "retry": _sometimes(
            st.one_of(
                st.integers(0, 3),
                st.fixed_dictionaries(
                    {"max": st.integers(0, 2)},
                    optional={"when": st.sampled_from(["script_failure", "brand_new_reason"])},
                ),
            )
        ),
    },
)


def _flatten_jobs(doc: dict[str, Any]) -> dict[str, Any]:
    """Put the generated jobs at the top level beside the global keywords."""
    jobs: dict[str, Any] = {
        name: {
            ("environment" if key == "environment_settings" else key): value
            for key, value in job.items()
        }
        for name, job in doc["jobs"].items()
    }
    return {**{key: value for key, value in doc.items() if key != "jobs"}, **jobs}


_pipelines = st.fixed_dictionaries(
    {
        "stages": _sometimes(st.just(["build", "test", "deploy"])),
        "jobs": st.dictionaries(st.sampled_from(JOB_NAMES), _job, min_size=1, max_size=5),
    },
    optional={
        "workflow": st.fixed_dictionaries(
            {"rules": st.lists(_rule.map(_without_allow_failure), max_size=3)},
            optional={"auto_cancel": _auto_cancel},
        ),
        "variables": st.dictionaries(st.sampled_from(["X", "DEPLOY"]), st.text(max_size=3)),
    },
).map(lambda doc: _flatten_jobs(doc))


@FUZZ
@given(_pipelines)
def test_plausible_pipelines(data: dict[str, Any]) -> None:
    """Pipelines shaped like real ones with random choices: rules, needs, matrices, extends."""
    _check(_dump(data))


# -- random triggers against the valid files ------------------------------------------------

_refs = st.one_of(st.none(), st.sampled_from(["main", "v1.0.0", "feature/x"]), st.text(max_size=12))
_contexts = st.builds(
    TriggerContext,
    source=st.one_of(st.sampled_from(PIPELINE_SOURCES), st.text(max_size=8)),
    branch=_refs,
    tag=_refs,
    commit_sha=st.text("0123456789abcdef", max_size=40),
    commit_message=st.text(max_size=40),
    default_branch=st.one_of(st.just("main"), st.text(max_size=8)),
    changed_files=st.one_of(st.none(), st.lists(st.text("ab/.*{}[]", max_size=10), max_size=4)),
    project_files=st.one_of(st.none(), st.lists(st.text("ab/.", max_size=8), max_size=4)),
    variables=st.lists(
        st.tuples(
            st.one_of(st.sampled_from(["CI_MERGE_REQUEST_IID", "DEPLOY_ENABLED"]), st.text()),
            st.text(max_size=12),
        ),
        max_size=4,
    ),
).map(
    lambda context: dataclasses.replace(
        context,
        changed_files=_as_tuple(context.changed_files),
        project_files=_as_tuple(context.project_files),
        variables=tuple(context.variables),
    )
)


def _as_tuple(paths: Any) -> tuple[str, ...] | None:
    return None if paths is None else tuple(paths)


@settings(FUZZ, max_examples=200)
@given(st.sampled_from(VALID_FILES), _contexts)
def test_random_triggers(source: Path, context: TriggerContext) -> None:
    """Odd branch names, sources, commit data and variables never break planning."""
    try:
        config = validate(loads(source.read_text(), filename=source.name, root_dir=source.parent))
        the_plan = plan(config, context)
    except PipelineError:
        return
    assert Plan.from_json(the_plan.to_json()) == the_plan


# -- mutations of valid files ----------------------------------------------------------------


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside a loaded document."""
    found = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            found.extend(_paths(value, (*prefix, key)))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found.extend(_paths(value, (*prefix, index)))
    return found


def _parent(root: Any, path: tuple[Any, ...]) -> Any:
    node = root
    for step in path[:-1]:
        node = node[step]
    return node


@st.composite
def _structural_mutation(draw: st.DrawFn) -> tuple[str, Path]:
    """A valid file, loaded as plain data, mutated one to three times, dumped again."""
    source = draw(st.sampled_from(VALID_FILES))
    # The last document is the configuration; a `spec: inputs` header before it is kept.
    *header, data = yaml.load_all(source.read_text(), Loader=_Loader)  # a SafeLoader subclass
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(data)
        if not isinstance(data, dict) or not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = _parent(data, path)
        kind = draw(st.sampled_from(["delete", "retype", "duplicate", "garbage", "rename"]))
        if kind == "delete":
            del parent[path[-1]]
        elif kind == "retype":
            parent[path[-1]] = draw(_documents)
        elif kind == "duplicate" and isinstance(parent, dict):
            new_key = draw(st.sampled_from([*KEYWORDS, f"{path[-1]}-copy"]))
            parent[new_key] = copy.deepcopy(parent[path[-1]])
        elif kind == "duplicate" and isinstance(parent, list):
            parent.append(copy.deepcopy(parent[path[-1]]))
        elif kind == "garbage" and isinstance(parent, dict):
            parent[draw(st.sampled_from([*KEYWORDS, "scriptt", "need", "rule"]))] = draw(_scalars)
        elif kind == "rename" and isinstance(parent, dict):
            value = parent.pop(path[-1])
            parent[draw(_keys)] = value
    return "".join(_dump(doc) + "---\n" for doc in header) + _dump(data), source.parent


@st.composite
def _text_mutation(draw: st.DrawFn) -> tuple[str, Path]:
    """A valid file with lines re-indented, deleted, duplicated or with garbage spliced in."""
    source = draw(st.sampled_from(VALID_FILES))
    lines = source.read_text().splitlines()
    for _ in range(draw(st.integers(1, 3))):
        if not lines:
            break
        index = draw(st.integers(0, len(lines) - 1))
        kind = draw(st.sampled_from(["indent", "dedent", "delete", "duplicate", "splice"]))
        if kind == "indent":
            lines[index] = " " * draw(st.integers(1, 5)) + lines[index]
        elif kind == "dedent":
            lines[index] = lines[index].lstrip()
        elif kind == "delete":
            del lines[index]
        elif kind == "duplicate":
            lines.insert(index, lines[index])
        else:
            column = draw(st.integers(0, len(lines[index])))
            piece = draw(st.sampled_from(_YAML_PIECES))
            lines[index] = lines[index][:column] + piece + lines[index][column:]
    return "\n".join(lines) + "\n", source.parent


def test_valid_files_are_found() -> None:
    """The mutation tests start from real files (the real-world set at least)."""
    assert len(VALID_FILES) >= 6
    for source in VALID_FILES:
        _check(source.read_text(), source.parent)


@settings(FUZZ, max_examples=250)
@given(_structural_mutation())
def test_structural_mutations_of_valid_files(case: tuple[str, Path]) -> None:
    """Valid files with keys deleted, values retyped, jobs duplicated, garbage keywords."""
    text, root = case
    _check(text, root)


@settings(FUZZ, max_examples=250)
@given(_text_mutation())
def test_text_mutations_of_valid_files(case: tuple[str, Path]) -> None:
    """Valid files with broken indentation, lost or doubled lines, syntax spliced in."""
    text, root = case
    _check(text, root)


# -- spec: inputs headers and interpolation ---------------------------------------------------

_input_names = st.sampled_from(["stage", "env", "n", "flag", "list", "nope"])
_input = st.one_of(
    st.none(),
    st.fixed_dictionaries(
        {},
        optional={
            "type": st.sampled_from(["string", "number", "boolean", "array", "text"]),
            "default": _scalars | st.lists(st.sampled_from(["a", "b"]), max_size=2),
            "options": st.lists(st.sampled_from(["test", "build", 1, True]), max_size=3),
            "regex": st.sampled_from(["^t", "[", "x+", 3]),
            "description": st.text(max_size=5),
        },
    ),
)
_block = st.builds(
    lambda name, functions: "$[[ inputs." + name + "".join(" | " + f for f in functions) + " ]]",
    _input_names,
    st.lists(
        st.sampled_from(["truncate(0,2)", "posix_escape", "expand_vars", "upcase", "truncate(a)"]),
        max_size=4,
    ),
)


@FUZZ_LIGHT
@given(
    st.dictionaries(_input_names, _input, max_size=4),
    st.lists(_block, min_size=1, max_size=4),
    st.dictionaries(_input_names, st.text(max_size=6), max_size=2),
)
def test_random_inputs_headers_and_blocks(
    inputs: dict[str, Any], blocks: list[str], given: dict[str, str]
) -> None:
    """Headers with any input declarations, blocks with any functions, any given values."""
    body = {
        "job-" + blocks[0]: {
            "stage": blocks[-1],
            "script": [f"echo {b}" for b in blocks],
            "variables": {"V": blocks[0]},
            "tags": blocks[-1],
        }
    }
    text = _dump({"spec": {"inputs": inputs}}) + "---\n" + _dump(body)
    _check(text)
    try:
        document = loads(text, filename=".gitlab-ci.yml", root_dir=HERE, inputs=dict(given))
    except PipelineError:
        return
    for problem in lint(document):
        assert isinstance(problem, PipelineError)


# -- include: local with variables, wildcards, inputs and rules --------------------------------

INCLUDE_PROJECT = HERE / "fixtures" / "include-project"
_include_paths = st.sampled_from(
    [
        "/ci/$CI_COMMIT_REF_NAME.yml",
        "ci/${CI_COMMIT_REF_SLUG}.yml",
        "ci/$NOPE.yml",
        "configs/**.yml",
        "configs/**/*.yml",
        "configs/*.yml",
        "**/*.yml",
        "configs/[a].yml",
        "templates/deploy.yml",
        "ci/%CI_COMMIT_REF_NAME%.yml",
        "/../ci/main.yml",
        "*",
    ]
)
_include_rule = st.fixed_dictionaries(
    {},
    optional={
        "if": st.sampled_from([*EXPRESSIONS, "$A ==", "${CI}", 3]),
        "exists": st.sampled_from([["Dockerfile"], "ci/*.yml", [3], {"paths": ["x"]}]),
        "changes": st.sampled_from([["src/**/*"], "docs/*", None]),
        "when": st.sampled_from(["never", "always", "manual", None]),
        "iff": st.just("x"),
    },
)
_include_entry = st.one_of(
    _include_paths,
    st.fixed_dictionaries(
        {"remote": st.sampled_from(["https://example.invalid/ci.yml", "ftp://x/y.yml", 3])},
        optional={"integrity": st.sampled_from(["sha256-AAAA", "md5-x", None])},
    ),
    st.fixed_dictionaries(
        {"project": st.sampled_from(["group/ci", "group/ci/../x", "g%2Fp", "/group/ci/", 3])},
        optional={
            "file": st.sampled_from(
                ["ci/a.yml", ["ci/a.yml", "ci/b.yml"], "../x.yml", [], "a*.yml"]
            ),
            "ref": st.sampled_from(["main", "$CI_COMMIT_REF_NAME", None, 1.0]),
        },
    ),
    st.fixed_dictionaries(
        {
            "component": st.sampled_from(
                [
                    "$CI_SERVER_FQDN/group/ci/lint@1.0.0",
                    "${CI_SERVER_FQDN}/group/ci/lint@~latest",
                    "gitlab.example.com/group/ci/lint@1",
                    "$CI_SERVER_FQDN/group/ci/lint",
                    "lint@1",
                    "@",
                ]
            )
        },
        optional={"inputs": st.sampled_from([{"stage": "build"}, {"nope": 1}])},
    ),
    st.fixed_dictionaries(
        {"template": st.sampled_from(["Bash.gitlab-ci.yml", "../x.gitlab-ci.yml", "Bash", ""])}
    ),
    st.fixed_dictionaries(
        {"local": _include_paths},
        optional={
            "rules": st.one_of(st.lists(_include_rule, max_size=3), st.just("x")),
            "inputs": st.one_of(
                st.dictionaries(
                    st.sampled_from(["environment", "stage", "nope"]),
                    st.sampled_from(["staging", "production", "qa", 3, True, None]),
                    max_size=3,
                ),
                st.just(["environment"]),
            ),
        },
    ),
)


@FUZZ_LIGHT
@given(st.lists(_include_entry, min_size=1, max_size=4))
def test_random_include_entries(entries: list[Any]) -> None:
    """Include entries of every form against a project written for them."""
    text = _dump({"include": entries, "unit": {"script": ["s"]}})
    _check(text, INCLUDE_PROJECT)
    for context in CONTEXTS:  # include: rules and paths read for each trigger
        for fetcher in (None, _GitLabFiles()):
            try:
                document = loads(text, filename=".gitlab-ci.yml", root_dir=INCLUDE_PROJECT)
                plan(document, context, fetcher)
            except PipelineError:
                continue


_PROJECT_FILES = {
    "ci/a.yml": b"include: [ci/b.yml]\nfrom-a:\n  script: [s]\n",
    "ci/b.yml": b"include: [{project: group/ci, file: ci/a.yml}]\nfrom-b:\n  script: [s]\n",
    "templates/lint.yml": b"spec:\n  inputs:\n    stage: {default: test}\n---\n"
    b"lint:\n  stage: $[[ inputs.stage ]]\n  script: [s]\n",
}


class _GitLabFiles:
    """A GitLab instance in memory (what the resolver reads, not the HTTP client's job):
    a nested local include, spec inputs, a missing file and a refusal."""

    def fetch(self, url: str) -> bytes:
        raise IncludeError("offline")

    def project_file(self, project: str, path: str, ref: str | None) -> bytes | None:
        return _PROJECT_FILES.get(path)

    def component_ref(self, host: str, project: str, version: str) -> str:
        if host:
            raise IncludeError("another host")
        return version

    def template(self, name: str) -> bytes | None:
        return b"bash:\n  script: [s]\n" if name == "Bash" else None
