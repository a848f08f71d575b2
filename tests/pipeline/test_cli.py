"""`kapal lint` and `kapal plan` (through typer's runner, and from argv): output, exit codes."""

from __future__ import annotations

import gc
import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from pipeline import cli
from pipeline.lint_command import INPUT_HELP
from web.cli import build_app

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    return build_app()  # the `kapal` application: lint and plan pass argv through


def _run(app: typer.Typer, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_lint_valid_file_exits_0(app: typer.Typer) -> None:
    code, out, _ = _run(app, "lint", str(FIXTURES / "valid" / "python_library.yml"))
    assert code == 0
    assert "valid (4 jobs)" in out


def test_lint_prints_every_problem_with_position_and_exits_1(
    app: typer.Typer, tmp_path: Path
) -> None:
    path = tmp_path / ".kapal.yml"
    path.write_text("build:\n  scirpt: make\n  retry: 7\ntest:\n  script: t\n  when: sometimes\n")
    code, out, err = _run(app, "lint", str(path))
    assert code == 1
    lines = out.splitlines()
    assert lines[0].startswith(f"{path}:2:3: build: unknown keyword 'scirpt'")
    assert any(line.startswith(f"{path}:3:10: build: retry:") for line in lines)
    assert any(line.startswith(f"{path}:6:9: test: when:") for line in lines)
    assert "problems" in err


def test_lint_directory_finds_the_pipeline_file(app: typer.Typer, tmp_path: Path) -> None:
    (tmp_path / ".gitlab-ci.yml").write_text("job:\n  script: echo\n")
    code, out, _ = _run(app, "lint", str(tmp_path))
    assert code == 0 and ".gitlab-ci.yml" in out


def test_lint_usage_errors_exit_2(app: typer.Typer, tmp_path: Path) -> None:
    code, _, err = _run(app, "lint", str(tmp_path / "missing.yml"))
    assert code == 2 and "no such file" in err
    code, _, err = _run(app, "lint", str(tmp_path))
    assert code == 2 and "no pipeline file" in err
    code, _, _ = _run(app, "lint", "--bogus")
    assert code == 2


def test_plan_json_lists_jobs_as_gitlab_names_them(app: typer.Typer) -> None:
    code, out, _ = _run(
        app, "plan", str(FIXTURES / "valid" / "parallel_needs.yml"), "--branch", "main", "--json"
    )
    assert code == 0
    data = json.loads(out)
    names = [job["name"] for job in data["jobs"]]
    assert names[:3] == ["compile 1/3", "compile 2/3", "compile 3/3"]
    assert "grid: [aws, monitoring]" in names
    report = next(job for job in data["jobs"] if job["name"] == "aws-report")
    assert [n["job"] for n in report["needs"]] == ["grid: [aws, app]", "shard 1/2", "shard 2/2"]
    assert report["when"] == "on_success" and report["allow_failure"] is False


def test_plan_table_shows_skipped_jobs_and_why(app: typer.Typer) -> None:
    code, out, _ = _run(app, "plan", str(FIXTURES / "valid" / "only_except.yml"), "--tag", "v1.0")
    assert code == 0
    assert "skipped" in out
    assert "only: refs ['schedules'] do not match a push pipeline for tag" in out  # folds
    assert "2 job(s) run, 2 skipped" in out
    assert "only: variables" in out


def test_plan_table_says_which_rule_runs_each_job_and_draws_needs_edges(
    app: typer.Typer, tmp_path: Path
) -> None:
    (tmp_path / ".kapal.yml").write_text(
        "workflow:\n  rules:\n    - if: $CI_COMMIT_TAG\n      when: never\n    - when: always\n"
        "stages: [build, test, deploy]\n"
        "build:\n  stage: build\n  script: make\n"
        "unit:\n  stage: test\n  script: t\n  needs: [build]\n"
        "lint:\n  stage: test\n  script: l\n  needs: []\n"
        "deploy:\n  stage: deploy\n  script: d\n  rules:\n"
        "    - if: $CI_COMMIT_BRANCH == 'dev'\n    - if: $CI_COMMIT_BRANCH == 'main'\n"
        "      when: manual\n"
        "docs:\n  stage: deploy\n  script: d\n  only: [main]\n  except: ['/^wip/']\n"
    )
    code, out, _ = _run(app, "plan", str(tmp_path), "--branch", "main")
    assert code == 0, out
    assert "pipeline created: workflow: rules: rule 2 (no condition) matched" in out
    rows = {line.split("│")[2].strip(): line for line in out.splitlines() if line.count("│") > 5}
    assert "no rules/only: the job runs in every pipeline workflow: rules" in rows["build"]
    assert "needs: build" in rows["unit"] and "needs: nothing" in rows["lint"]
    assert "manual" in rows["deploy"]
    assert "rules: rule 2 (if: $CI_COMMIT_BRANCH == 'main') matched" in rows["deploy"]
    assert "only: refs ['main'] match branch 'main'; except: nothing in it" in rows["docs"]
    assert "needs edges:\n  build → unit\n" in out
    code, out, _ = _run(app, "plan", str(tmp_path), "--branch", "dev", "--json")
    jobs = {job["name"]: job for job in json.loads(out)["jobs"]}
    assert jobs["deploy"]["run_reason"] == "rules: rule 1 (if: $CI_COMMIT_BRANCH == 'dev') matched"
    assert jobs["docs"]["run_reason"] is None
    assert jobs["docs"]["skip_reason"] == "only: refs ['main'] do not match branch 'dev'"
    code, out, _ = _run(app, "plan", str(tmp_path), "--tag", "v1")
    assert "no pipeline: workflow: rules: rule 1 (if: $CI_COMMIT_TAG) says when: never" in out


def test_plan_source_and_vars(app: typer.Typer) -> None:
    path = str(FIXTURES / "valid" / "only_except.yml")
    code, out, _ = _run(app, "plan", path, "--source", "schedule", "--branch", "main", "--json")
    assert code == 0
    jobs = {j["name"]: j for j in json.loads(out)["jobs"]}
    assert jobs["nightly"]["skip_reason"] is None
    code, out, _ = _run(app, "plan", path, "--tag", "v1", "--var", "RELEASE=no", "--json")
    jobs = {j["name"]: j for j in json.loads(out)["jobs"]}
    assert jobs["release"]["skip_reason"].startswith("only: variables")


def test_plan_merge_request_source_carries_gitlabs_merge_request_variables(
    app: typer.Typer,
) -> None:
    path = str(Path(__file__).parent / "realworld" / "workflow-merge-requests.gitlab-ci.yml")
    args = ["plan", path, "--source", "merge_request_event", "--branch", "feature/x", "--json"]
    code, out, _ = _run(app, *args)
    assert code == 0
    data = json.loads(out)
    variables = {v["name"]: v["value"] for v in data["variables"]}
    assert variables["CI_MERGE_REQUEST_SOURCE_BRANCH_NAME"] == "feature/x"
    assert variables["CI_MERGE_REQUEST_TARGET_BRANCH_NAME"] == "main"
    assert "CI_COMMIT_BRANCH" not in variables
    jobs = {job["name"]: job for job in data["jobs"]}
    assert jobs["danger-review"]["skip_reason"] is None  # rules: if: $CI_MERGE_REQUEST_IID && ...
    code, out, _ = _run(app, *args, "--var", "CI_MERGE_REQUEST_TARGET_BRANCH_NAME=release")
    jobs = {job["name"]: job for job in json.loads(out)["jobs"]}
    assert jobs["danger-review"]["skip_reason"] == (
        "rules: no rule matched (rule 1: if $CI_MERGE_REQUEST_IID && "
        "$CI_MERGE_REQUEST_TARGET_BRANCH_NAME == $CI_DEFAULT_BRANCH is false)"
    )
    code, _, err = _run(app, "plan", path, "--source", "merge_request_event", "--tag", "v1")
    assert code == 2 and "give --branch, not --tag" in err


def test_plan_usage_errors_exit_2(app: typer.Typer) -> None:
    path = str(FIXTURES / "valid" / "only_except.yml")
    assert _run(app, "plan", path, "--branch", "a", "--tag", "b")[0] == 2
    code, _, err = _run(app, "plan", path, "--branch", "")
    assert code == 2 and "need a name" in err
    code, _, err = _run(app, "plan", path, "--source", "pigeon")
    assert code == 2 and "unknown --source" in err
    code, _, err = _run(app, "plan", path, "--var", "no-equals")
    assert code == 2 and "NAME=VALUE" in err


def test_plan_of_invalid_file_exits_1(app: typer.Typer) -> None:
    path = FIXTURES / "invalid" / "needs_cycle.yml"
    code, out, _ = _run(app, "plan", str(path))
    assert code == 1
    assert f"{path}:4:11: a: needs: needs cycle: a → b → a" in out


def test_plan_without_pipeline_says_why(app: typer.Typer, tmp_path: Path) -> None:
    (tmp_path / ".kapal.yml").write_text(
        "workflow:\n  rules:\n    - if: $CI_COMMIT_TAG\njob:\n  script: s\n"
    )
    code, out, _ = _run(app, "plan", str(tmp_path), "--branch", "main")
    assert code == 0
    assert (
        "no pipeline: workflow: rules: no rule matched (rule 1: if $CI_COMMIT_TAG is false)" in out
    )


def test_lint_names_included_files_beside_the_main_file(app: typer.Typer, tmp_path: Path) -> None:
    (tmp_path / "ci").mkdir()
    (tmp_path / ".kapal.yml").write_text("include: ci/jobs.yml\n")
    (tmp_path / "ci" / "jobs.yml").write_text("job:\n  script: s\n  retry: 9\n")
    code, out, _ = _run(app, "lint", str(tmp_path))
    assert code == 1
    assert out.startswith(f"{tmp_path / 'ci' / 'jobs.yml'}:3:10: job: retry: must be 0, 1 or 2")


def test_lint_reports_every_duplicate_key_at_once(app: typer.Typer, tmp_path: Path) -> None:
    path = tmp_path / ".kapal.yml"
    path.write_text(
        "image: a\ntest:\n  script: s\n  image: b\n  image: c\n"
        "build:\n  script: s\ntest:\n  script: t\nimage: d\n"
    )
    code, out, err = _run(app, "lint", "--strict", str(path))
    assert code == 1
    lines = [line.split(";")[0] for line in out.splitlines()]
    assert lines == [
        f"{path}:5:3: warning: duplicate key 'image': it is also written at line 4, column 3",
        f"{path}:8:1: warning: duplicate key 'test': it is also written at line 2, column 1",
        f"{path}:10:1: warning: duplicate key 'image': it is also written at line 1, column 1",
    ]
    assert "3 problems" in err


def test_plan_table_says_what_each_rule_tried_when_none_matched(
    app: typer.Typer, tmp_path: Path
) -> None:
    (tmp_path / ".kapal.yml").write_text(
        "docs:\n  script: s\n  rules:\n    - if: $CI_COMMIT_TAG\n    - exists: ['mkdocs.yml']\n"
    )
    code, out, _ = _run(app, "plan", str(tmp_path), "--branch", "main")
    assert code == 0
    # the table folds the reason over two lines at its width of 120 columns
    assert "rules: no rule matched (rule 1: if $CI_COMMIT_TAG is false; rule 2:" in out
    assert "exists ['mkdocs.yml'] match no file)" in out


def test_lint_of_an_included_template_file_says_to_lint_the_main_file(app: typer.Typer) -> None:
    path = Path(__file__).parent / "realworld" / "templates-project" / "ci" / "templates.yml"
    code, out, _ = _run(app, "lint", str(path))
    assert code == 1
    assert out.strip() == (
        f"{path}:2:1: the pipeline has no jobs, only templates (.python-base, .pytest, .package); "
        "add a job with a `script:`, or, if another file includes this one, lint that file"
    )


DUPLICATE = "stages: [build]\nbuild:\n  stage: build\n  script: a\n  script: b\n"


def test_lint_shows_warnings_and_exits_0_unless_strict(app: typer.Typer, tmp_path: Path) -> None:
    path = tmp_path / ".gitlab-ci.yml"
    path.write_text(DUPLICATE)
    code, out, _ = _run(app, "lint", str(path))
    assert code == 0, out
    assert f"{path}:5:3: warning: duplicate key 'script'" in out
    assert f"{path}: valid (1 job, 1 warning)" in out
    code, out, err = _run(app, "lint", "--strict", str(path))
    assert code == 1
    assert f"{path}:5:3: warning: duplicate key 'script'" in out and "1 problem" in err


def test_lint_json_lists_errors_and_warnings_with_their_fields(
    app: typer.Typer, tmp_path: Path
) -> None:
    path = tmp_path / ".gitlab-ci.yml"
    path.write_text(DUPLICATE + "test:\n  stage: build\n  script: t\n  retry: {max: 5}\n")
    code, out, _ = _run(app, "lint", "--json", str(path))
    assert code == 1
    report = json.loads(out)
    assert report["valid"] is False
    assert report["errors"] == [
        {
            "file": str(path),
            "line": 9,
            "column": 16,
            "job": "test",
            "keyword": "retry: max",
            "message": "must be 0, 1 or 2 (as in GitLab), found 5",
            "severity": "error",
        }
    ]
    [warning] = report["warnings"]
    assert (warning["line"], warning["column"], warning["severity"]) == (5, 3, "warning")
    assert warning["message"].startswith("duplicate key 'script'")


def test_lint_json_of_a_valid_file(app: typer.Typer, tmp_path: Path) -> None:
    path = tmp_path / ".gitlab-ci.yml"
    path.write_text(DUPLICATE)
    code, out, _ = _run(app, "lint", "--json", str(path))
    assert code == 0
    report = json.loads(out)
    assert (report["valid"], report["jobs"], report["errors"]) == (True, 1, [])
    assert len(report["warnings"]) == 1
    code, out, _ = _run(app, "lint", "--json", "--strict", str(path))
    assert code == 1 and json.loads(out)["valid"] is False


def test_lint_json_of_a_file_that_is_not_yaml(app: typer.Typer, tmp_path: Path) -> None:
    path = tmp_path / ".gitlab-ci.yml"
    path.write_text("job: [\n")
    code, out, _ = _run(app, "lint", "--json", str(path))
    assert code == 1
    [error] = json.loads(out)["errors"]
    assert error["message"].startswith("invalid YAML") and error["line"] == 2


def test_plan_json_prints_errors_as_json(app: typer.Typer, tmp_path: Path) -> None:
    (tmp_path / ".gitlab-ci.yml").write_text("job:\n  script: s\n  when: sometimes\n")
    code, out, _ = _run(app, "plan", "--json", str(tmp_path), "--branch", "main")
    assert code == 1
    report = json.loads(out)
    assert report["planned"] is False
    [error] = report["errors"]
    assert (error["job"], error["keyword"], error["line"]) == ("job", "when", 3)


def test_plan_json_carries_warnings_and_strict_refuses_them(
    app: typer.Typer, tmp_path: Path
) -> None:
    (tmp_path / ".gitlab-ci.yml").write_text(DUPLICATE)
    code, out, _ = _run(app, "plan", "--json", str(tmp_path), "--branch", "main")
    assert code == 0
    [warning] = json.loads(out)["warnings"]
    assert (warning["line"], warning["severity"]) == (5, "warning")
    code, out, err = _run(app, "plan", str(tmp_path), "--branch", "main")
    assert code == 0 and "5:3: warning: duplicate key 'script'" in err
    code, out, _ = _run(app, "plan", "--json", "--strict", str(tmp_path), "--branch", "main")
    assert code == 1 and json.loads(out)["warnings"][0]["line"] == 5


def test_plan_table_shows_delayed_jobs_with_their_wait(app: typer.Typer, tmp_path: Path) -> None:
    (tmp_path / ".gitlab-ci.yml").write_text(
        "smoke:\n  script: s\n  when: delayed\n  start_in: 90 minutes\n"
    )
    code, out, _ = _run(app, "plan", str(tmp_path), "--branch", "main")
    assert code == 0 and "delayed 1h30m" in out


def test_plan_help_starts_with_its_summary_and_lists_every_option(app: typer.Typer) -> None:
    code, out, _ = _run(app, "plan", "--help")
    assert code == 0
    usage, summary = out.split("\n\n")[:2]
    assert usage == "usage: kapal plan [OPTIONS] [PATH]"
    assert " ".join(summary.split()) == cli.PLAN_HELP
    for option in ("--branch", "--tag", "--source", "--var", "--changed", "--default-branch"):
        assert f"{option} " in out
    assert "--json" in out and "--strict" in out and "--input NAME=VALUE" in out
    assert INPUT_HELP in " ".join(out.split())  # the same words as `kapal lint --help`


def test_plan_usage_errors_show_the_usage_and_name_the_command(app: typer.Typer) -> None:
    path = str(FIXTURES / "valid" / "only_except.yml")
    for args, message in (
        (["--bogus"], "unrecognized arguments: --bogus"),
        (["--branch"], "argument --branch: expected one argument"),
        (["--branch", "a", "--tag", "b"], "give --branch or --tag, not both"),
    ):
        code, out, err = _run(app, "plan", path, *args)
        assert (code, out) == (2, ""), args
        assert err == f"usage: kapal plan [OPTIONS] [PATH]\nkapal plan: error: {message}\n"


def test_plan_changed_files_and_default_branch(app: typer.Typer, tmp_path: Path) -> None:
    (tmp_path / ".gitlab-ci.yml").write_text(
        "docs:\n  script: s\n  rules:\n    - changes: [docs/**/*]\n"
        "release:\n  script: r\n  rules:\n    - if: $CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH\n"
    )
    args = ["plan", str(tmp_path), "--branch", "trunk", "--json"]
    code, out, _ = _run(app, *args, "--default-branch", "trunk", "--changed=src/a.py")
    assert code == 0
    jobs = {job["name"]: job for job in json.loads(out)["jobs"]}
    assert jobs["release"]["skip_reason"] is None
    assert jobs["docs"]["skip_reason"] == (
        "rules: no rule matched (rule 1: changes ['docs/**/*'] match no changed file)"
    )
    code, out, _ = _run(app, *args, "--changed", "src/a.py", "--changed", "docs/x/y.md")
    jobs = {job["name"]: job for job in json.loads(out)["jobs"]}
    assert jobs["docs"]["run_reason"] == "rules: rule 1 (changes: ['docs/**/*']) matched"
    assert jobs["release"]["skip_reason"] is not None  # the default branch is main


def test_kapal_runs_plan_from_argv_as_typer_does(
    app: typer.Typer, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from web.cli import main

    monkeypatch.setenv("PYDANTIC_DISABLE_PLUGINS", "__all__")  # main sets it for the process
    args = ["plan", str(FIXTURES / "valid" / "parallel_needs.yml"), "--branch", "main", "--json"]
    try:
        with pytest.raises(SystemExit) as exited:
            main(args)
    finally:
        gc.unfreeze()  # main freezes what importing the verb made; the tests go on
    assert exited.value.code == 0
    assert json.loads(capsys.readouterr().out) == json.loads(_run(app, *args)[1])
