"""`include: local` with variables, GitLab's wildcards, `inputs` and `rules` (issue 10).

The fixture project tests/pipeline/fixtures/include-project is written after GitLab's docs;
each expected job list is what those docs say GitLab creates for the trigger.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pipeline import IncludeError, LoadError, PipelineError, TriggerContext, lint, load, plan

PROJECT = Path(__file__).parent / "fixtures" / "include-project"
ALWAYS = {"unit", "config-top", "config-middle", "config-bottom", "deploy-staging"}


def _jobs(main: Path, context: TriggerContext) -> set[str]:
    return {job.name for job in plan(load(main), context).jobs}


def _project(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path / ".kapal.yml"


def _messages(main: Path, context: TriggerContext | None = None) -> str:
    with pytest.raises(PipelineError) as info:
        plan(load(main), context or TriggerContext(branch="main"))
    return "\n".join(str(p) for p in info.value.problems)


@pytest.mark.parametrize(
    ("context", "expected"),
    [
        (TriggerContext(branch="main"), {"branch-main"}),
        (TriggerContext(branch="dev"), {"branch-dev"}),
        (TriggerContext(tag="v1.0"), {"tag-v1", "deploy-production"}),
        (TriggerContext(source="schedule", branch="main"), {"branch-main", "nightly"}),
        (
            TriggerContext(source="schedule", branch="main", variables=(("SKIP_NIGHTLY", "true"),)),
            {"branch-main"},
        ),
        (
            TriggerContext(branch="main", project_files=("Dockerfile", "README.md")),
            {"branch-main", "docker-build"},
        ),
    ],
    ids=["main", "dev", "tag", "schedule", "schedule-skip-nightly", "dockerfile"],
)
def test_fixture_project_plans_what_gitlab_documents(
    context: TriggerContext, expected: set[str]
) -> None:
    assert _jobs(PROJECT / ".gitlab-ci.yml", context) == ALWAYS | expected


def test_lint_reads_includes_as_a_default_branch_pipeline() -> None:
    """GitLab's CI Lint simulates a push to the default branch: ci/main.yml is the one read."""
    assert lint(PROJECT / ".gitlab-ci.yml") == []


def test_include_path_expands_trigger_variables_but_not_file_variables(tmp_path: Path) -> None:
    """GitLab reads includes before `variables:`; project/trigger variables are expanded."""
    main = _project(
        tmp_path,
        {
            ".kapal.yml": "variables: {TEAM: web}\ninclude: ci/$TEAM.yml\nx:\n  script: s\n",
            "ci/web.yml": "web:\n  script: s\n",
            "ci/api.yml": "api:\n  script: s\n",
        },
    )
    assert _jobs(main, TriggerContext(branch="main", variables=(("TEAM", "api"),))) == {
        "x",
        "api",
    }
    shown = _messages(main)
    assert "include: 'ci/.yml' (from 'ci/$TEAM.yml') must be a .yml or .yaml file" in shown


def test_include_path_expands_project_predefined_variables(tmp_path: Path) -> None:
    main = _project(
        tmp_path,
        {
            ".kapal.yml": "include: 'ci/${CI_PROJECT_NAME}-$CI_COMMIT_REF_SLUG.yml'\n",
            "ci/shop-feature-x.yml": "feature:\n  script: s\n",
        },
    )
    context = TriggerContext(branch="feature/x", project_name="shop")
    assert _jobs(main, context) == {"feature"}


def test_include_path_has_no_pipeline_id(tmp_path: Path) -> None:
    """GitLab's docs: the configuration is read before the pipeline exists, so no CI_PIPELINE_ID."""
    main = _project(
        tmp_path,
        {".kapal.yml": "include: 'ci/p$CI_PIPELINE_ID.yml'\n", "ci/p7.yml": "p:\n  script: s\n"},
    )
    assert "include: file 'ci/p.yml' (from 'ci/p$CI_PIPELINE_ID.yml') not found" in _messages(
        main, TriggerContext(branch="main", pipeline_id=7)
    )


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("configs/*.yml", {"config-top"}),
        ("configs/**.yml", {"config-top", "config-middle", "config-bottom"}),
        ("/configs/**/*.yml", {"config-middle", "config-bottom"}),
        ("configs/sub/*.yml", {"config-middle"}),
    ],
)
def test_wildcards_follow_gitlabs_grammar(tmp_path: Path, pattern: str, expected: set[str]) -> None:
    """GitLab's docs: `*.yml` in the folder only, `**.yml` under it, `**/*.yml` its subfolders."""
    repo = tmp_path / "repo"
    shutil.copytree(PROJECT / "configs", repo / "configs")
    (repo / ".kapal.yml").write_text(f"include: '{pattern}'\nunit:\n  script: s\n")
    assert _jobs(repo / ".kapal.yml", _MAIN) == {"unit", *expected}


_MAIN = TriggerContext(branch="main")


def test_wildcard_characters_other_than_star_are_literal(tmp_path: Path) -> None:
    """GitLab escapes the pattern and un-escapes only `*`: `ci/[ab].yml` names one file."""
    main = _project(
        tmp_path,
        {
            ".kapal.yml": "include: 'ci/[ab].yml'\n",
            "ci/[ab].yml": "literal:\n  script: s\n",
            "ci/a.yml": "a:\n  script: s\n",
        },
    )
    assert _jobs(main, _MAIN) == {"literal"}


def test_wildcards_do_not_enter_linked_directories(tmp_path: Path) -> None:
    """A link is one entry of the repository's file list, never a folder to search."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "theirs.yml").write_text("theirs:\n  script: s\n")
    main = _project(
        tmp_path / "repo", {".kapal.yml": "include: 'ci/**.yml'\n", "ci/a.yml": "a:\n  script: s\n"}
    )
    (main.parent / "ci" / "linked").symlink_to(outside)
    assert _jobs(main, _MAIN) == {"a"}


def test_include_inputs_reach_the_included_file_only(tmp_path: Path) -> None:
    main = _project(
        tmp_path,
        {
            ".kapal.yml": "include:\n"
            "  - local: t.yml\n    inputs: {name: one}\n"
            "  - local: t.yml\n    inputs: {name: two, count: 3}\n"
            "  - local: plain.yml\n",
            "t.yml": "spec:\n  inputs:\n    name:\n    count: {type: number, default: 1}\n---\n"
            "job-$[[ inputs.name ]]:\n  script:\n    - echo $[[ inputs.count ]]\n",
            "plain.yml": "plain:\n  script:\n    - echo $[[ inputs.name ]]\n",
        },
    )
    the_plan = plan(load(main), _MAIN)
    assert {job.name for job in the_plan.jobs} == {"job-one", "job-two", "plain"}
    assert the_plan.job("job-two").script == ("echo 3",)
    assert the_plan.job("job-one").script == ("echo 1",)
    # a file without `spec:` is not interpolated (GitLab leaves the text as it is)
    assert the_plan.job("plain").script == ("echo $[[ inputs.name ]]",)


@pytest.mark.parametrize(
    ("inputs", "fragment"),
    [
        ("{env: qa}", "`env` input: `qa` cannot be used because it is not in the list"),
        ("{envv: staging}", "unknown input 'envv'"),
        (
            "[env, staging]",
            "include: inputs expects a mapping of input names to values, found a list",
        ),
        ("{}", "input 'env' is required"),
    ],
)
def test_include_inputs_that_do_not_fit_are_positioned_errors(
    tmp_path: Path, inputs: str, fragment: str
) -> None:
    main = _project(
        tmp_path,
        {
            ".kapal.yml": f"include:\n  - local: t.yml\n    inputs: {inputs}\n",
            "t.yml": "spec:\n  inputs:\n    env:\n      options: [staging]\n---\n"
            "deploy:\n  script:\n    - echo $[[ inputs.env ]]\n",
        },
    )
    assert fragment in _messages(main)


def test_include_inputs_for_a_file_without_spec_is_an_error(tmp_path: Path) -> None:
    main = _project(
        tmp_path,
        {
            ".kapal.yml": "include:\n  - local: t.yml\n    inputs: {env: x}\n",
            "t.yml": "deploy:\n  script: [echo]\n",
        },
    )
    assert "inputs were given, but the file declares none" in _messages(main)


@pytest.mark.parametrize(
    ("rules", "context", "included"),
    [
        ("[{if: '$CI_COMMIT_BRANCH == \"main\"'}]", _MAIN, True),
        ("[{if: '$CI_COMMIT_BRANCH == \"main\"'}]", TriggerContext(branch="dev"), False),
        ("[{if: $CI_COMMIT_TAG, when: never}, {when: always}]", _MAIN, True),
        ("[{if: $CI_COMMIT_BRANCH, when: never}, {when: always}]", _MAIN, False),
        ("[{exists: [Makefile]}]", _MAIN, True),
        ("[{exists: [Dockerfile]}]", _MAIN, False),
        ("[{exists: ['**/*.mk']}]", _MAIN, True),
        ("[{changes: [src/**/*]}]", TriggerContext(branch="dev", changed_files=("src/a.c",)), True),
        ("[{changes: [docs/*]}]", TriggerContext(branch="dev", changed_files=("src/a.c",)), False),
        # a tag has no list of changes: GitLab takes `changes` as true
        ("[{changes: [docs/*]}]", TriggerContext(tag="v1"), True),
        # the file's own variables are not seen by include rules
        ("[{if: '$FROM_FILE == \"yes\"'}]", _MAIN, False),
        (
            "[{if: '$FROM_TRIGGER == \"yes\"'}]",
            TriggerContext(branch="x", variables=(("FROM_TRIGGER", "yes"),)),
            True,
        ),
    ],
)
def test_include_rules_decide_like_gitlab(
    tmp_path: Path, rules: str, context: TriggerContext, included: bool
) -> None:
    main = _project(
        tmp_path,
        {
            ".kapal.yml": "variables: {FROM_FILE: 'yes'}\n"
            f"include:\n  - local: extra.yml\n    rules: {rules}\nunit:\n  script: s\n",
            "extra.yml": "extra:\n  script: s\n",
            "Makefile": "all:\n",
            "mk/rules.mk": "x:\n",
        },
    )
    assert ("extra" in _jobs(main, context)) is included


@pytest.mark.parametrize(
    ("rules", "fragment"),
    [
        ("[{if: '$A == '}]", "include: rules: if:"),
        ("[{when: manual}]", "when can only be `never` or `always`"),
        ("[{iff: $A}]", "unknown rule keyword 'iff' (did you mean 'if'?)"),
        ("[]", "include: rules expects a list of rules, found an empty list"),
        ("[{if: 3}]", "if expects an expression, found an integer"),
        ("[{exists: 3}]", "exists expects a list of paths"),
    ],
)
def test_include_rules_mistakes_are_positioned_errors(
    tmp_path: Path, rules: str, fragment: str
) -> None:
    main = _project(
        tmp_path,
        {
            ".kapal.yml": f"include:\n  - local: extra.yml\n    rules: {rules}\n"
            "unit:\n  script: s\n",
            "extra.yml": "extra:\n  script: s\n",
        },
    )
    with pytest.raises(PipelineError) as info:
        plan(load(main), _MAIN)
    problems = info.value.problems
    assert any(fragment in p.message for p in problems), [str(p) for p in problems]
    assert all(isinstance(p, IncludeError | LoadError) for p in problems)
    assert all(p.location is not None and p.location.line == 3 for p in problems)
