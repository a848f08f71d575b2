"""`spec: inputs` headers and `$[[ inputs.NAME ]]` interpolation, compared with GitLab's docs."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipeline import LoadError, TriggerContext, lint, load, loads, plan
from pipeline.document import given_inputs, parse_yaml
from web.cli import build_app

MAIN = TriggerContext(source="push", branch="main")

DEPLOY = textwrap.dedent(
    """\
    spec:
      inputs:
        environment:
          options: [staging, production]
        replicas:
          type: number
          default: 2
        dry_run:
          type: boolean
          default: false
        version:
          regex: ^v\\d+\\.\\d+$
          default: v1.0
        tags:
          type: array
          default: [docker]
    ---
    deploy-$[[ inputs.environment ]]:
      stage: deploy
      tags: $[[ inputs.tags ]]
      variables:
        REPLICAS: $[[ inputs.replicas ]]
        DRY_RUN: $[[ inputs.dry_run ]]
        SHORT: $[[ inputs.environment | truncate(0, 4) ]]
        QUOTED: $[[ inputs.environment | posix_escape ]]
      script:
        - ./deploy --version $[[ inputs.version ]] --replicas $[[ inputs.replicas ]]
    """
)


def test_given_inputs_and_defaults_are_interpolated_with_their_types() -> None:
    doc = loads(DEPLOY, "ci.yml", inputs={"environment": "production", "replicas": "5"})
    job = doc.data["deploy-production"]
    # a whole-value block keeps the input's type, as GitLab does
    assert job["variables"]["REPLICAS"] == 5 and job["variables"]["DRY_RUN"] is False
    assert list(job["tags"]) == ["docker"]
    planned = plan(doc, MAIN).job("deploy-production")
    assert planned.script == ("./deploy --version v1.0 --replicas 5",)
    assert planned.variable("REPLICAS") == "5" and planned.variable("DRY_RUN") == "false"
    assert (planned.variable("SHORT"), planned.variable("QUOTED")) == ("prod", "production")


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({}, "ci.yml:3:5: input 'environment' is required (it has no default) and was not given"),
        (
            {"environment": "dev"},
            "`environment` input: `dev` cannot be used because it is not in the list of "
            "allowed options (staging, production)",
        ),
        (
            {"environment": "staging", "replicas": "many"},
            "`replicas` input: provided value is not a number",
        ),
        (
            {"environment": "staging", "version": "1.0"},
            "`version` input: provided value does not match required RegEx pattern",
        ),
        ({"environment": "staging", "colour": "red"}, "unknown input 'colour'"),
    ],
)
def test_inputs_that_do_not_fit_are_refused(given: dict[str, object], message: str) -> None:
    with pytest.raises(LoadError) as caught:
        loads(DEPLOY, "ci.yml", inputs=given)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("job:\n  script: $[[ inputs.nope ]]\n", "ci.yml:6:11: unknown interpolation key: `nope`"),
        ("job:\n  script: echo $[[ inputs.a | upcase ]]\n", "no function matching `upcase`"),
        (
            "job:\n  script: echo $[[ inputs.a | " + " | ".join(["truncate(0,1)"] * 4) + " ]]\n",
            "too many functions",
        ),
    ],
)
def test_bad_interpolation_blocks_are_positioned_errors(body: str, message: str) -> None:
    with pytest.raises(LoadError) as caught:
        loads("spec:\n  inputs:\n    a: {default: x}\n---\n" + body, "ci.yml")
    assert message in str(caught.value)


def test_header_mistakes_are_reported() -> None:
    with pytest.raises(LoadError, match="spec: unknown keyword 'input'"):
        loads("spec:\n  input:\n    a: {default: x}\n---\njob:\n  script: s\n", "ci.yml")
    with pytest.raises(LoadError, match="type 'text' is not one of string, number"):
        loads("spec:\n  inputs:\n    a: {type: text}\n---\njob:\n  script: s\n", "ci.yml")
    with pytest.raises(LoadError, match="`a` input: provided value is not a number"):
        loads("spec:\n  inputs:\n    a: {type: number, default: x}\n---\njob:\n  script: s\n")


def test_a_file_without_header_given_inputs_is_an_error_and_blocks_stay_text() -> None:
    with pytest.raises(LoadError, match="inputs were given, but the file declares none"):
        loads("job:\n  script: s\n", inputs={"a": "b"})
    doc = loads("job:\n  script: echo $[[ inputs.a ]]\n")
    assert doc.data["job"]["script"] == "echo $[[ inputs.a ]]"


def test_an_included_file_with_a_header_uses_its_defaults(tmp_path: Path) -> None:
    (tmp_path / "ci").mkdir()
    (tmp_path / "ci" / "lint.yml").write_text(
        "spec:\n  inputs:\n    stage: {default: test}\n---\n"
        "lint:\n  stage: $[[ inputs.stage ]]\n  script: make lint\n"
    )
    (tmp_path / ".gitlab-ci.yml").write_text("include: ci/lint.yml\nbuild:\n  script: make\n")
    assert lint(tmp_path / ".gitlab-ci.yml") == []
    result = plan(load(tmp_path / ".gitlab-ci.yml"), MAIN)
    assert result.job("lint").stage == "test"


def test_plan_takes_inputs_on_the_command_line(tmp_path: Path) -> None:
    app = build_app()  # the `kapal` application: lint and plan pass argv through
    (tmp_path / ".gitlab-ci.yml").write_text(DEPLOY)
    runner = CliRunner()
    missing = runner.invoke(app, ["lint", str(tmp_path)])
    assert missing.exit_code == 1 and "input 'environment' is required" in missing.stdout
    given = runner.invoke(
        app, ["plan", str(tmp_path), "--branch", "main", "--input", "environment=staging"]
    )
    assert given.exit_code == 0, given.stdout
    assert "deploy-staging" in given.stdout
    bad = runner.invoke(app, ["plan", str(tmp_path), "--input", "environment"])
    assert bad.exit_code == 2 and "must look like NAME=VALUE" in bad.stderr


def test_given_inputs_apply_to_files_parsed_inside_the_block_only() -> None:
    """The hook `include: inputs` needs: values for one included file, none for the next."""
    header = "spec:\n  inputs:\n    stage: {default: test}\n---\nj:\n  stage: $[[ inputs.stage ]]\n"
    with given_inputs({"stage": "build"}):
        assert parse_yaml(header, "a.yml")["j"]["stage"] == "build"
    assert parse_yaml(header, "b.yml")["j"]["stage"] == "test"
