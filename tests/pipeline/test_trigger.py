"""`trigger:` jobs: every GitLab form planned, child pipelines checked in their own files,
variables forwarded as GitLab forwards them, the nesting limit, and what needs a server."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pipeline import Plan, TriggerContext, lint, load, loads, plan
from pipeline.errors import PipelineError
from pipeline.plan import Job, TriggerInclude
from pipeline.trigger import MAX_CHILDREN_CHECKED, plan_child, trigger_job_variables
from pipeline.validate import validate_collecting

FIXTURES = Path(__file__).parent / "fixtures" / "trigger"
MAIN = TriggerContext(source="push", branch="main", variables=(("FROM_CLI", "cli"),))


def _child(job: Job, pipeline_id: int, artifacts: dict[tuple[str, str], str] | None = None) -> Plan:
    """The child pipeline `job` of parent.yml starts, planned as the engine plans it."""
    return plan_child(
        job,
        parent_context=MAIN,
        root_dir=str(FIXTURES),
        parent_file=str(FIXTURES / "parent.yml"),
        depth=1,
        pipeline_id=pipeline_id,
        artifacts=artifacts,
    )


def _problems(path: Path) -> list[str]:
    return [f"{p.location}: {p.severity}: {p.message}" for p in lint(path)]


def test_every_parent_child_form_lints_clean_and_plans() -> None:
    parent = FIXTURES / "parent.yml"
    assert _problems(parent) == []
    result = plan(load(parent), MAIN)
    assert Plan.from_json(result.to_json()) == result
    shorthand = result.job("shorthand")
    assert shorthand.trigger is not None
    assert shorthand.trigger.includes == (TriggerInclude("local", "ci/child.yml"),)
    assert not shorthand.trigger.depends
    # a trigger job takes none of `default:` but `interruptible` (GitLab's Bridge)
    assert shorthand.image is None and shorthand.interruptible
    listed = result.job("listed").trigger
    assert listed is not None and listed.strategy == "depend"
    assert [i.path for i in listed.includes] == ["ci/child.yml", "ci/extra.yml"]
    assert listed.forward_pipeline_variables
    dynamic = result.job("dynamic").trigger
    assert dynamic is not None and dynamic.strategy == "mirror" and dynamic.depends
    assert dynamic.includes == (TriggerInclude("artifact", "generated.yml", job="generate"),)
    assert [j.name for j in result.jobs if j.base_name == "per-target"] == [
        "per-target: [arm]",
        "per-target: [amd]",
    ]
    assert "artifact of job generate" in dynamic.describe()


def test_multi_project_trigger_plans_with_a_warning_that_strict_refuses() -> None:
    path = FIXTURES / "project.yml"
    problems = lint(path)
    assert [(p.severity, p.location.line if p.location else 0) for p in problems] == [
        ("warning", 3),
        ("warning", 5),
    ]
    assert all("needs a GitLab server" in p.message for p in problems)
    result = plan(load(path), MAIN)
    assert result.job("downstream").trigger.project == "group/other-project"  # type: ignore[union-attr]
    assert result.job("with-branch").trigger.branch == "stable"  # type: ignore[union-attr]
    assert len(result.warnings) == 2


def test_a_child_pipelines_errors_are_positioned_in_the_child_file() -> None:
    problems = lint(FIXTURES / "broken_parent.yml")
    errors = [p for p in problems if p.severity == "error"]
    assert len(errors) == 1, problems
    assert errors[0].location is not None
    assert errors[0].location.file.endswith("ci/broken.yml")
    assert (errors[0].location.line, errors[0].location.column) == (7, 9)
    assert "sometimes" in errors[0].message
    with pytest.raises(PipelineError):
        plan(load(FIXTURES / "broken_parent.yml"), MAIN)


def test_child_pipelines_nest_at_most_two_levels() -> None:
    problems = lint(FIXTURES / "nested_parent.yml")
    errors = [p for p in problems if p.severity == "error"]
    assert len(errors) == 1, problems
    location = errors[0].location
    assert location is not None and location.file.endswith("ci/level2.yml")
    assert location.line == 5
    assert "at most 2 levels deep" in errors[0].message


def test_child_variables_source_and_forwarding() -> None:
    result = plan(load(FIXTURES / "parent.yml"), MAIN)
    listed = result.job("listed")
    forwarded = dict(trigger_job_variables(listed))
    assert forwarded["GLOBAL"] == "from-parent"
    assert forwarded["TARGET"] == "from-parent-listed"  # expanded in the parent
    assert forwarded["RAW"] == "$GLOBAL"  # expand: false is passed as written
    assert forwarded["FROM_CLI"] == "cli"  # forward: pipeline_variables: true
    quiet = dict(trigger_job_variables(result.job("quiet")))
    assert quiet == {}  # yaml_variables: false, pipeline_variables defaults to false
    shorthand = dict(trigger_job_variables(result.job("shorthand")))
    assert "FROM_CLI" not in shorthand and shorthand["GLOBAL"] == "from-parent"

    child = _child(listed, 7)
    assert [j.name for j in child.runnable_jobs()] == ["child-test", "child-mr-only", "child-extra"]
    test = child.job("child-test")
    assert test.variable("CI_PIPELINE_SOURCE") == "parent_pipeline"
    assert test.variable("TARGET") == "from-parent-listed"
    assert test.variable("FROM_CLI") == "cli"
    assert test.variable("CI_PIPELINE_ID") == "7"
    assert [v.source for v in test.variables if v.name == "TARGET"] == ["trigger"]


def test_a_dynamic_child_is_planned_from_the_artifact_text() -> None:
    result = plan(load(FIXTURES / "parent.yml"), MAIN)
    generated = "include: [ci/extra.yml]\ngen-job:\n  image: x\n  script: [echo $GLOBAL]\n"
    child = _child(result.job("dynamic"), 8, {("generate", "generated.yml"): generated})
    assert [j.name for j in child.runnable_jobs()] == ["child-extra", "gen-job"]
    with pytest.raises(PipelineError, match=r"generated\.yml"):
        _child(result.job("dynamic"), 8, {("generate", "generated.yml"): "gen:\n  scrip: [x]\n"})


def test_plan_child_refuses_another_projects_pipeline() -> None:
    result = plan(load(FIXTURES / "project.yml"), MAIN)
    with pytest.raises(PipelineError, match="needs a GitLab server"):
        _child(result.job("downstream"), 2)


def test_a_child_file_linked_out_of_the_repository_is_not_read(tmp_path: Path) -> None:
    secret = tmp_path / "outside.yml"
    secret.write_text("stolen:\n  image: x\n  script: [cat /etc/shadow]\n")
    repo = tmp_path / "repo"
    repo.mkdir()
    os.symlink(secret, repo / "child.yml")
    (repo / ".gitlab-ci.yml").write_text("t:\n  trigger: {include: child.yml}\n")
    problems = lint(repo / ".gitlab-ci.yml")
    assert any(p.severity == "error" and "child.yml" in p.message for p in problems), problems
    assert not any("stolen" in p.message for p in problems)


@pytest.mark.parametrize(
    ("text", "line", "column", "fragment"),
    [
        ("j:\n  script: [x]\n  trigger: a/b\n", 2, 3, "`script:` and `trigger:` cannot"),
        ("j:\n  image: x\n  trigger: a/b\n", 2, 3, "`image:` cannot be used in a trigger job"),
        ("j:\n  services: [x]\n  trigger: a/b\n", 2, 3, "`services:` cannot be used"),
        ("j:\n  trigger: ''\n", 2, 12, "must name what to trigger"),
        ("j:\n  trigger: [a]\n", 2, 12, "found a list"),
        ("j:\n  trigger: {include: a.yml, project: a/b}\n", 2, 29, "cannot be used together"),
        ("j:\n  trigger: {strategy: depend}\n", 2, 12, "either `project:`"),
        ("j:\n  trigger: {project: a/b, strategy: wait}\n", 2, 37, "'wait' is not one of"),
        ("j:\n  trigger: {project: a/b, forward: {yaml_variables: 1}}\n", 2, 53, "true or false"),
        ("j:\n  trigger: {project: a/b, include_it: x}\n", 2, 27, "unknown keyword"),
        ("j:\n  trigger: {include: [a, b, c, d]}\n", 2, 22, "at most 3 files"),
        ("j:\n  trigger: {include: [{artifact: a.yml}]}\n", 2, 23, "needs `job:`"),
        (
            "j:\n  trigger: {include: [{artifact: a.yml, job: nope}]}\n",
            2,
            22,
            "'nope' is not a job",
        ),
        ("j:\n  trigger: {include: [{local: a, artifact: b}]}\n", 2, 23, "names one file"),
        ("j:\n  trigger: {include: [{local: a, rules: []}]}\n", 2, 34, "not supported"),
        ("j:\n  trigger: {include: [{local: a, inputs: 3}]}\n", 2, 42, "a mapping of input"),
        (
            "j:\n  trigger: {include: [{artifact: a, job: j, inputs: {}}]}\n",
            2,
            45,
            "unknown keyword",
        ),
        (
            "j:\n  when: delayed\n  start_in: 1m\n  trigger: a/b\n",
            2,
            9,
            "not allowed for a trigger",
        ),
        ("j:\n  parallel: 2\n  trigger: a/b\n", 2, 13, "only `parallel: matrix:`"),
        ("j:\n  trigger: {include: missing.yml}\n", 2, 22, "'missing.yml' not found"),
    ],
)
def test_invalid_trigger_forms_are_reported_where_written(
    tmp_path: Path, text: str, line: int, column: int, fragment: str
) -> None:
    path = tmp_path / ".gitlab-ci.yml"
    path.write_text(text)
    _, problems = validate_collecting(load(path))
    hits = [
        p
        for p in problems
        if fragment in p.message
        and p.severity == "error"
        and p.location is not None
        and (p.location.line, p.location.column) == (line, column)
    ]
    assert hits, "\n".join(str(p) for p in problems)


def test_a_job_without_script_names_trigger() -> None:
    _, problems = validate_collecting(loads("j:\n  stage: test\n"))
    assert any("`trigger:`" in p.message for p in problems)


def test_lint_checks_each_child_once_and_a_bounded_number_of_children(tmp_path: Path) -> None:
    (tmp_path / "broken.yml").write_text("x:\n  script: [a]\n  when: sometimes\n")
    jobs = [f"t{i}:\n  trigger: {{include: broken.yml}}\n" for i in range(3)]
    for i in range(MAX_CHILDREN_CHECKED + 1):
        (tmp_path / f"c{i}.yml").write_text(f"c{i}:\n  script: [a]\n")
        jobs.append(f"u{i}:\n  trigger: {{include: c{i}.yml}}\n")
    (tmp_path / ".gitlab-ci.yml").write_text("".join(jobs))
    problems = lint(tmp_path / ".gitlab-ci.yml")
    assert [p.message for p in problems if p.severity == "error"] == [
        "x: when: 'sometimes' is not one of on_success, on_failure, always, manual, delayed"
    ]
    warnings = [p for p in problems if p.severity == "warning"]
    assert len(warnings) == 1 and "checked when they run" in warnings[0].message
    # broken.yml and c0..c23 were checked: the 26th different child is not
    assert warnings[0].location is not None and warnings[0].location.keyword == "u24: trigger"


def test_dotenv_variables_win_over_the_files_but_not_over_trigger_variables() -> None:
    result = plan(load(FIXTURES / "parent.yml"), MAIN)
    listed = result.job("listed")
    dotenv = {"GLOBAL": "from-dotenv", "FROM_CLI": "dotenv", "NEW": "n"}
    forwarded = trigger_job_variables(listed, dotenv)
    values = dict(forwarded)
    assert values["NEW"] == "n"
    assert values["GLOBAL"] == "from-dotenv"
    assert values["TARGET"] == "from-dotenv-listed"  # $GLOBAL expanded with the dotenv value
    assert values["FROM_CLI"] == "cli"  # forward: pipeline_variables wins
    quiet = dict(trigger_job_variables(result.job("quiet"), dotenv))
    assert quiet == {}  # yaml_variables: false forwards no job variables, dotenv ones neither


def test_inputs_given_by_the_trigger_reach_the_childs_spec() -> None:
    result = plan(load(FIXTURES / "inputs_parent.yml"), MAIN)
    child = plan_child(
        result.job("deploy"),
        parent_context=MAIN,
        root_dir=str(FIXTURES),
        parent_file=str(FIXTURES / "inputs_parent.yml"),
        depth=1,
        pipeline_id=3,
    )
    assert [(j.name, j.script) for j in child.jobs] == [("deploy-staging", ("echo scaling to 2",))]
    problems = lint(FIXTURES / "bad_inputs_parent.yml")
    assert len(problems) == 1 and "`moon` cannot be used" in problems[0].message
    assert problems[0].location is not None
    assert problems[0].location.file.endswith("ci/inputs-child.yml")
