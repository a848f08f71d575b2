"""Valid GitLab that kapal once rejected or planned differently, each planned as GitLab does.

Each test writes the construct the way public `.gitlab-ci.yml` files write it and compares the
plan with the result GitLab's CI YAML reference documents.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipeline import (
    Plan,
    PlanError,
    TriggerContext,
    ValidationError,
    lint,
    load,
    loads,
    plan,
)
from web.cli import build_app

MAIN = TriggerContext(source="push", branch="main")
MR = TriggerContext(source="merge_request_event", branch="feature", changed_files=())


def _plan(text: str, context: TriggerContext = MAIN) -> Plan:
    return plan(loads(textwrap.dedent(text), "ci.yml"), context)


def _messages(text: str) -> list[str]:
    return [str(p) for p in lint(loads(textwrap.dedent(text), "ci.yml"))]


# 1. needs naming one matrix instance ---------------------------------------------------------

MATRIX = textwrap.dedent(
    """\
    build:
      stage: build
      script: make
      parallel:
        matrix:
          - T: [a, b]
    """
)


def test_needs_names_one_matrix_instance_by_its_plan_name() -> None:
    result = _plan(MATRIX + 'test:\n  script: t\n  needs: ["build: [a]"]\n')
    assert [n.job for n in result.job("test").needs or ()] == ["build: [a]"]
    assert result.job("test").waits_for == ("build: [a]",)


def test_needs_parallel_matrix_mapping_picks_the_same_instance() -> None:
    result = _plan(
        MATRIX + "test:\n  script: t\n  needs:\n    - job: build\n"
        "      parallel:\n        matrix:\n          - T: a\n"
    )
    assert [n.job for n in result.job("test").needs or ()] == ["build: [a]"]


def test_needs_of_a_matrix_instance_name_that_does_not_exist_is_an_error() -> None:
    [message] = _messages(MATRIX + 'test:\n  script: t\n  needs: ["build: [c]"]\n')
    assert message == (
        "ci.yml:9:11: test: needs: 'build: [c]' is not a job in this pipeline; "
        "the instances of 'build' are build: [a], build: [b]"
    )


# 2. null means "not set" -----------------------------------------------------------------------


def test_null_drops_an_inherited_value_for_every_keyword() -> None:
    result = _plan(
        """\
        .base:
          image: alpine
          parallel: 3
          rules:
            - if: $NEVER_SET
          cache: {key: k, paths: [c]}
          tags: [docker]
          retry: 2
          timeout: 1h
          artifacts: {paths: [out]}
          environment: production
          only: [tags]
        job:
          extends: .base
          script: s
          image: null
          parallel: null
          rules: null
          cache: null
          tags: null
          retry: null
          timeout: null
          artifacts: null
          environment:
          only:
        """
    )
    job = result.job("job")
    assert job.runs and job.parallel_total is None
    assert (job.image, job.caches, job.tags, job.artifacts, job.environment) == (
        None,
        (),
        (),
        None,
        None,
    )
    assert (job.retry.max, job.timeout_seconds) == (0, None)


def test_null_in_a_job_lets_the_default_apply_as_in_gitlab() -> None:
    """GitLab: a null entry is unspecified, and `default:` fills unspecified entries."""
    result = _plan("default:\n  image: ruby:3\njob:\n  script: s\n  image: null\n")
    image = result.job("job").image
    assert image is not None and image.name == "ruby:3"


def test_null_inside_a_keyword_and_at_the_top_level() -> None:
    result = _plan(
        """\
        stages:
        workflow:
        job:
          stage: test
          script: s
          artifacts:
            paths: [a]
            expire_in: null
          cache:
            key: k
            policy: null
        """
    )
    job = result.job("job")
    assert job.artifacts is not None and job.artifacts.expire_in is None
    assert job.caches[0].policy == "pull-push"


def test_needs_null_is_not_set_so_the_job_waits_for_earlier_stages() -> None:
    result = _plan(
        "b:\n  stage: build\n  script: s\n"
        ".t:\n  needs: []\n"
        "t:\n  extends: .t\n  needs: null\n  script: s\n"
    )
    assert result.job("t").needs is None and result.job("t").waits_for == ("b",)


# 3. boolean and number variables ---------------------------------------------------------------


def test_boolean_and_number_variables_are_their_yaml_string_forms() -> None:
    result = _plan(
        "variables:\n  DEBUG: true\n  USE_SSL: no\n  RATIO: 1.5\n"
        "  OPT: {value: false, description: d}\n"
        "job:\n  script: s\n  variables: {STRICT: yes, N: 010}\n"
    )
    job = result.job("job")
    assert [job.variable(n) for n in ("DEBUG", "USE_SSL", "RATIO", "OPT", "STRICT")] == [
        "true",
        "false",
        "1.5",
        "false",
        "true",
    ]
    assert job.variable("N") == "8"  # YAML 1.1 octal, as GitLab's parser reads it


# 4. nested lists flattened -------------------------------------------------------------------


def test_nested_lists_from_anchors_and_references_are_flattened() -> None:
    result = _plan(
        """\
        .tags: &tags [docker, linux]
        .paths: &paths [dist, build]
        .svc:
          services: [redis:7]
        .rules:
          rules:
            - if: $CI_COMMIT_TAG
              when: never
        b:
          stage: build
          script: s
        job:
          script: s
          tags: [*tags, [gpu]]
          services:
            - !reference [.svc, services]
            - postgres:16
          rules:
            - !reference [.rules, rules]
            - when: on_success
          needs: [[b]]
          cache:
            - [{key: one, paths: [*paths, [more]]}]
            - {key: two, paths: [x]}
          artifacts:
            paths: [*paths, out]
            exclude: [[dist/*.tmp]]
        """
    )
    job = result.job("job")
    assert job.runs
    assert job.tags == ("docker", "linux", "gpu")
    assert [s.name for s in job.services] == ["redis:7", "postgres:16"]
    assert [n.job for n in job.needs or ()] == ["b"]
    assert [c.key for c in job.caches] == ["one", "two"]
    assert job.caches[0].paths == ("dist", "build", "more")
    assert job.artifacts is not None
    assert job.artifacts.paths == ("dist", "build", "out")
    assert job.artifacts.exclude == ("dist/*.tmp",)
    tagged = _plan(
        "job:\n  script: s\n  rules:\n    - [{if: $CI_COMMIT_TAG, when: never}]\n"
        "    - when: on_success\n",
        TriggerContext(source="push", tag="v1"),
    )
    assert not tagged.job("job").runs


# 5. a variable in cache: policy --------------------------------------------------------------


def test_cache_policy_variable_is_kept_for_the_runner_to_expand() -> None:
    result = _plan(
        "variables: {CACHE_POLICY: pull}\n"
        "job:\n  script: s\n  cache:\n    key: k\n    paths: [c]\n    policy: $CACHE_POLICY\n"
    )
    [cache] = result.job("job").caches
    assert cache.policy_text == "$CACHE_POLICY"
    assert cache.policy == "pull-push"
    assert Plan.from_json(result.to_json()) == result


def test_cache_policy_without_variable_still_must_be_a_policy() -> None:
    [message] = _messages("job:\n  script: s\n  cache:\n    policy: pul\n")
    assert "'pul' is not one of pull-push, pull, push (did you mean 'pull'?)" in message


# 6. unknown retry reasons --------------------------------------------------------------------


def test_unknown_retry_reason_is_a_warning_and_the_job_plans() -> None:
    text = "job:\n  script: s\n  retry:\n    max: 2\n    when: [script_failure, new_reason]\n"
    doc = loads(text, "ci.yml")
    [problem] = lint(doc)
    assert problem.severity == "warning"
    assert "'new_reason' is not a retry reason kapal knows" in problem.message
    result = plan(doc, MAIN)
    assert result.job("job").retry.when == ("script_failure", "new_reason")
    assert [(w.line, w.job, w.keyword) for w in result.warnings] == [(5, "job", "retry: when")]


# 7. duplicate keys (see also test_load) ------------------------------------------------------


def test_duplicate_job_plans_the_last_definition_with_a_warning() -> None:
    result = _plan("job:\n  script: first\njob:\n  script: last\n")
    assert result.job("job").script == ("last",)
    assert "duplicate key 'job'" in result.warnings[0].message


# 8. workflow: rules drop the default only ----------------------------------------------------

WORKFLOW = """\
    workflow:
      rules:
        - if: $CI_PIPELINE_SOURCE == "merge_request_event"
        - if: $CI_COMMIT_BRANCH
    plain:
      script: s
    only_main:
      script: s
      only: [main]
    except_tags:
      script: s
      except: [tags]
    """


def test_with_workflow_rules_jobs_without_rules_run_in_merge_request_pipelines() -> None:
    result = _plan(WORKFLOW, MR)
    assert result.job("plain").runs and result.job("except_tags").runs
    assert not result.job("only_main").runs


def test_without_workflow_rules_jobs_without_rules_stay_out_of_merge_request_pipelines() -> None:
    result = _plan(WORKFLOW.replace("workflow:", ".workflow:"), MR)
    assert not result.job("plain").runs and not result.job("except_tags").runs


# 10. matrix expressions and matrix variable names --------------------------------------------

ONE_TO_ONE = """\
    linux:build:
      stage: build
      script: make
      parallel:
        matrix:
          - PROVIDER: [aws, gcp]
            STACK: [app1, app2]
    linux:test:
      stage: test
      script: test
      parallel:
        matrix:
          - PROVIDER: [aws, gcp]
            STACK: [app1, app2]
      needs:
        - job: linux:build
          parallel:
            matrix:
              - PROVIDER: ['$[[ matrix.PROVIDER ]]']
                STACK: ['$[[ matrix.STACK ]]']
    """


def test_matrix_expressions_map_each_instance_to_its_twin() -> None:
    result = _plan(ONE_TO_ONE)
    for provider in ("aws", "gcp"):
        for stack in ("app1", "app2"):
            job = result.job(f"linux:test: [{provider}, {stack}]")
            assert [n.job for n in job.needs or ()] == [f"linux:build: [{provider}, {stack}]"]


def test_matrix_expression_naming_a_variable_the_job_lacks_is_an_error() -> None:
    problems = _messages(ONE_TO_ONE.replace("matrix.STACK", "matrix.STAK"))
    assert any(
        "'$[[ matrix.STAK ]]' names matrix variable 'STAK' of 'linux:test', but its matrix "
        "has PROVIDER, STACK" in m
        for m in problems
    ), problems


def test_matrix_variable_names_with_dashes_are_accepted() -> None:
    result = _plan("job:\n  script: s\n  parallel:\n    matrix:\n      - MY-VAR: [x, y]\n")
    assert result.job("job: [x]").variable("MY-VAR") == "x"
    with pytest.raises(ValidationError, match="matrix variable name 'A=B' is not valid"):
        _plan("job:\n  script: s\n  parallel:\n    matrix:\n      - A=B: [x]\n")


# 11. environment (see also test_plan) ---------------------------------------------------------


def test_environment_url_and_name_use_variables_of_the_job() -> None:
    result = _plan(
        "deploy:\n  stage: deploy\n  script: s\n  variables: {DOMAIN: example.test}\n"
        "  environment:\n    name: Review/$CI_COMMIT_REF_NAME\n    url: https://$DOMAIN\n"
    )
    job = result.job("deploy")
    assert job.variable("CI_ENVIRONMENT_NAME") == "Review/main"
    assert job.variable("CI_ENVIRONMENT_URL") == "https://example.test"
    slug = job.variable("CI_ENVIRONMENT_SLUG")
    assert slug is not None and slug.startswith("review-main-") and len(slug) == 18


# fixtures ------------------------------------------------------------------------------------


def test_compat_fixture_plans_like_gitlab(tmp_path: Path) -> None:
    path = Path(__file__).parent / "fixtures" / "valid" / "gitlab_compat.yml"
    assert lint(path) == []
    result = plan(load(path), MR)
    runs = {job.name for job in result.runnable_jobs()}
    assert runs == {"build: [amd64]", "build: [arm64]", "test", "lint"}
    assert [n.job for n in result.job("test").needs or ()] == ["build: [amd64]"]
    with pytest.raises(PlanError):
        plan(load(path), TriggerContext(source="push", tag="v1", variables=(("NO_BUILD", "1"),)))


# invalid files GitLab refuses -----------------------------------------------------------------


def test_blank_rules_are_refused_in_jobs_and_workflow() -> None:
    problems = _messages("workflow:\n  rules: []\njob:\n  script: s\n  rules: []\n")
    assert [m.split(": must")[0] for m in problems] == [
        "ci.yml:2:10: workflow: rules",
        "ci.yml:5:10: job: rules",
    ]


def test_braced_variable_in_only_variables_is_refused_too() -> None:
    [message] = _messages("job:\n  script: s\n  only:\n    variables: ['${DEPLOY}']\n")
    assert "write $DEPLOY" in message


def test_dependencies_must_be_among_needs_but_not_without_needs() -> None:
    base = "b:\n  stage: build\n  script: s\nc:\n  stage: build\n  script: s\n"
    assert _messages(base + "t:\n  script: s\n  dependencies: [c]\n") == []
    assert _messages(base + "t:\n  script: s\n  needs: [b, c]\n  dependencies: [c]\n") == []
    [message] = _messages(base + "t:\n  script: s\n  needs: [b]\n  dependencies: [c]\n")
    assert "'c' is not one of this job's `needs:`" in message


def test_script_nested_ten_levels_is_flattened() -> None:
    result = _plan("job:\n  script:\n    - " + "[" * 10 + "echo deep" + "]" * 10 + "\n")
    assert result.job("job").script == ("echo deep",)


# messages ------------------------------------------------------------------------------------


def test_a_missing_include_is_reported_once_with_what_it_causes(tmp_path: Path) -> None:
    (tmp_path / ".gitlab-ci.yml").write_text(
        "include:\n  - local: ci/templates.yml\n  - local: ci/templates.yml\n"
        "build:\n  extends: .build\ntest:\n  extends: .test\n  needs: [setup]\n"
        "lint:\n  extends: .build\n  script: !reference [.scripts, lint]\n"
    )
    [problem] = lint(tmp_path / ".gitlab-ci.yml")
    assert str(problem).startswith(
        f"{tmp_path}/.gitlab-ci.yml:2:12: include: file 'ci/templates.yml' not found"
    )
    assert "(also included at " in problem.message
    assert problem.message.endswith(
        "most likely because of it, 5 more problems not listed: "
        "3 × `extends` of an unknown template '.build', '.test'; "
        "1 × needs or dependencies on an unknown job 'setup'; "
        "1 × `!reference` to nothing [.scripts]"
    )


def test_problems_unrelated_to_a_missing_include_stay_listed(tmp_path: Path) -> None:
    (tmp_path / ".gitlab-ci.yml").write_text(
        "include: ci/missing.yml\njob:\n  script: s\n  when: sometimes\n"
    )
    problems = lint(tmp_path / ".gitlab-ci.yml")
    assert [p.location.line for p in problems if p.location] == [1, 4]


@pytest.mark.parametrize(
    "text",
    [
        "job:\n  script: s\n  timeout: ~\n  retry: {max: ~}\n",
        "job:\n  script: s\n  allow_failure: {exit_codes: [null]}\n",
        "job:\n  script: s\n  when: ~\n  cache: {policy: ~}\n",
        "~:\n  script: s\njob:\n  script: s\n  null: 1\n",
        "job:\n  script: s\n  artifacts: {expire_in: true}\n",
    ],
)
def test_messages_say_null_never_none(text: str) -> None:
    for message in _messages(text):
        assert "None" not in message and "True" not in message, message


def test_missing_script_mentions_trigger() -> None:
    [message] = _messages("job:\n  stage: test\n")
    assert "`trigger:`" in message and "`script:`" in message


@pytest.mark.parametrize(
    ("text", "hint"),
    [
        # a slip of the keyboard: proposed
        ("deploy-prod:\n  script: s\nt:\n  script: s\n  needs: [deploy-prd]\n", "deploy-prod"),
        ("Build_Docs:\n  script: s\nt:\n  script: s\n  needs: [build-docs]\n", "Build_Docs"),
        (".base:\n  script: s\nt:\n  extends: .bsae\n", ".base"),
        ("job:\n  script: s\n  when: manul\n", "manual"),
        ("job:\n  scrip: s\n", "script"),
        # another name with its own meaning: never proposed
        ("test:amd64:\n  script: s\nt:\n  script: s\n  needs: ['test:arm64']\n", None),
        ("test1:\n  script: s\nt:\n  script: s\n  needs: [test2]\n", None),
        ("job:\n  script: s\n  before_scrpt: [a]\n  after_scrip: [b]\n", "before_script"),
        ("job:\n  script: s\n  cache: {policy: puhs}\n", "push"),
    ],
)
def test_did_you_mean_keeps_the_meaning(text: str, hint: str | None) -> None:
    messages = _messages(text)
    suggested = [m.split("did you mean ")[1].split("'")[1] for m in messages if "did you mean" in m]
    if hint is None:
        assert suggested == [], messages
    else:
        assert hint in suggested, messages


# keywords that do not block a plan -----------------------------------------------------------

KEPT = Path(__file__).parent / "fixtures" / "valid" / "keywords_kept.yml"


def test_every_report_type_is_kept_with_coverage_report_format() -> None:
    result = plan(load(KEPT), MAIN)
    artifacts = result.job("test").artifacts
    assert artifacts is not None
    assert {r.kind: r.paths for r in artifacts.reports} == {
        "codequality": ("gl-code-quality.json",),
        "coverage_report": ("coverage.xml",),
        "junit": ("junit.xml",),
        "metrics": ("metrics.txt",),
        "sast": ("gl-sast-report.json",),
    }
    [coverage] = [r for r in artifacts.reports if r.kind == "coverage_report"]
    assert coverage.coverage_format == "cobertura"
    assert artifacts.junit == ("junit.xml",) and artifacts.expose_as == "Test report"
    assert Plan.from_json(result.to_json()) == result


@pytest.mark.parametrize(
    ("reports", "fragment"),
    [
        ("cobertura: c.xml", "removed in GitLab 15.0; write `coverage_report:"),
        ("performance: p.json", "use `browser_performance`"),
        ("coverage_report: {path: c.xml}", "needs both `coverage_format:` and `path:`"),
        ("coverage_report: {coverage_format: lcov, path: c}", "is not one of cobertura, jacoco"),
        ("junt: r.xml", "did you mean 'junit'"),
    ],
)
def test_report_mistakes_are_positioned_errors(reports: str, fragment: str) -> None:
    messages = _messages(f"job:\n  script: s\n  artifacts:\n    reports:\n      {reports}\n")
    assert any(fragment in m and m.startswith("ci.yml:5:") for m in messages), messages


def test_dotenv_report_plans_without_a_warning() -> None:
    doc = loads("job:\n  script: s\n  artifacts:\n    reports:\n      dotenv: build.env\n")
    assert lint(doc) == []  # its variables reach later jobs at run time (runner.reports)
    artifacts = plan(doc, MAIN).job("job").artifacts
    assert artifacts is not None and artifacts.reports[0].paths == ("build.env",)


def test_delayed_jobs_carry_their_start_in_from_the_job_or_the_rule() -> None:
    result = plan(load(KEPT), MAIN)
    smoke, review = result.job("smoke"), result.job("deploy-review")
    assert (smoke.when, smoke.start_in_seconds) == ("on_success", 600)
    assert (review.when, review.start_in_seconds) == ("on_success", 3600)
    assert result.job("build").start_in_seconds is None


@pytest.mark.parametrize(
    ("job", "fragment"),
    [
        ("  when: delayed\n", "`when: delayed` needs `start_in:`"),
        ("  start_in: 1h\n", "`start_in` only works with `when: delayed`"),
        ("  when: delayed\n  start_in: 8 days\n", "longer than the maximum of 7 days"),
        ("  rules:\n    - when: delayed\n", "`when: delayed` needs `start_in:`"),
    ],
)
def test_delayed_mistakes(job: str, fragment: str) -> None:
    messages = _messages("job:\n  script: s\n" + job)
    assert any(fragment in m for m in messages), messages


def test_auto_cancel_from_workflow_and_a_matching_workflow_rule() -> None:
    branch = plan(load(KEPT), MAIN)
    assert (branch.auto_cancel_on_new_commit, branch.auto_cancel_on_job_failure) == (
        "interruptible",
        "all",
    )
    tag = plan(load(KEPT), TriggerContext(source="push", tag="v1"))
    assert (tag.auto_cancel_on_new_commit, tag.auto_cancel_on_job_failure) == ("none", "all")
    default = _plan("job:\n  script: s\n")
    assert (default.auto_cancel_on_new_commit, default.auto_cancel_on_job_failure) == (
        "conservative",
        "none",
    )


def test_cache_fallback_keys_are_kept_and_limited_to_five() -> None:
    [cache] = plan(load(KEPT), MAIN).job("build").caches
    assert cache.fallback_keys == ("build-$CI_DEFAULT_BRANCH", "build-main")
    [message] = _messages(
        "job:\n  script: s\n  cache:\n    key: k\n    fallback_keys: [a, b, c, d, e, f]\n"
    )
    assert "ci.yml:5:20: job: cache: fallback_keys: at most 5 fallback keys" in message


def test_environment_on_stop_and_auto_stop_in_are_recorded() -> None:
    env = plan(load(KEPT), MAIN).job("deploy-review").environment
    assert env is not None
    assert (env.on_stop, env.auto_stop_in, env.auto_stop_in_seconds, env.deployment_tier) == (
        "stop-review",
        "1 day",
        86400,
        "development",
    )


@pytest.mark.parametrize("keyword", ["id_tokens", "secrets", "pages", "release"])
def test_server_only_keywords_plan_with_a_warning_naming_what_is_ignored(keyword: str) -> None:
    doc = loads(f"job:\n  script: s\n  {keyword}:\n    X: {{a: b}}\n", "ci.yml")
    [warning] = lint(doc)
    assert warning.severity == "warning"
    assert str(warning).startswith(f"ci.yml:3:3: job: {keyword}: `{keyword}:` is ignored: ")
    result = plan(doc, MAIN)
    [(ignored, why)] = result.job("job").ignored_keywords
    assert ignored == keyword and "GitLab server" in why
    assert [w.keyword for w in result.warnings] == [keyword]


def test_id_tokens_in_default_warn_once_not_per_job() -> None:
    doc = loads(
        "default:\n  id_tokens:\n    T: {aud: x}\na:\n  script: s\nb:\n  script: s\n", "ci.yml"
    )
    assert [(p.location.line if p.location else 0) for p in lint(doc)] == [2]
    result = plan(doc, MAIN)
    assert all(j.ignored_keywords[0][0] == "id_tokens" for j in result.jobs)


def test_strict_lint_refuses_server_keywords(tmp_path: Path) -> None:
    app = build_app()  # the `kapal` application: lint and plan pass argv through
    path = tmp_path / ".gitlab-ci.yml"
    path.write_text("job:\n  script: s\n  release:\n    tag_name: v1\n    description: d\n")
    assert CliRunner().invoke(app, ["lint", str(path)]).exit_code == 0
    assert CliRunner().invoke(app, ["lint", "--strict", str(path)]).exit_code == 1
    shown = CliRunner().invoke(app, ["plan", str(tmp_path), "--branch", "main"])
    assert shown.exit_code == 0 and "`release:` is ignored" in shown.stderr


def test_only_refs_with_a_project_path_match_in_that_project_only() -> None:
    text = (
        "upstream:\n  script: s\n  only: [main@group/app]\n"
        "fork:\n  script: s\n  only: [main@someone/app]\n"
        "pattern:\n  script: s\n  except: ['/^ma/@group/app']\n"
    )
    context = TriggerContext(source="push", branch="main", project_path="group/app")
    result = _plan(text, context)
    assert result.job("upstream").runs
    assert not result.job("fork").runs
    assert not result.job("pattern").runs
    elsewhere = _plan(text, TriggerContext(source="push", branch="main", project_path="x/y"))
    assert not elsewhere.job("upstream").runs and elsewhere.job("pattern").runs


RULE_NEEDS = """\
    stages: [build, test]
    build:
      stage: build
      script: make
    lint:
      stage: build
      script: lint
    test:
      stage: test
      script: test
      needs: [build]
      interruptible: false
      rules:
        - if: $CI_COMMIT_TAG
          needs: [build, lint]
          interruptible: true
        - when: on_success
    """


def test_rules_needs_and_interruptible_replace_the_jobs_when_the_rule_matches() -> None:
    branch = _plan(RULE_NEEDS).job("test")
    assert [n.job for n in branch.needs or ()] == ["build"] and not branch.interruptible
    tag = _plan(RULE_NEEDS, TriggerContext(source="push", tag="v1")).job("test")
    assert [n.job for n in tag.needs or ()] == ["build", "lint"] and tag.interruptible


def test_rules_needs_name_jobs_that_exist() -> None:
    messages = _messages(RULE_NEEDS.replace("needs: [build, lint]", "needs: [build, lintr]"))
    assert any(
        "'lintr' is not a job in this pipeline (did you mean 'lint'?)" in m for m in messages
    )


def test_pull_policy_access_unprotect_and_manual_confirmation_are_recorded() -> None:
    result = _plan(
        """\
        deploy:
          stage: deploy
          script: ./deploy
          when: manual
          manual_confirmation: Deploy to production?
          image: {name: alpine, pull_policy: [always, if-not-present]}
          services:
            - name: postgres:16
              pull_policy: if-not-present
          artifacts:
            paths: [out]
            public: false
          cache:
            key: k
            unprotect: true
        report:
          script: s
          artifacts: {paths: [r], access: none}
        """
    )
    job = result.job("deploy")
    assert job.manual_confirmation == "Deploy to production?"
    assert job.image is not None and job.image.pull_policy == ("always", "if-not-present")
    assert job.services[0].pull_policy == ("if-not-present",)
    assert job.artifacts is not None and job.artifacts.access == "developer"
    assert job.caches[0].unprotect
    report = result.job("report").artifacts
    assert report is not None and report.access == "none"
    assert Plan.from_json(result.to_json()) == result


def test_identity_is_ignored_with_a_warning() -> None:
    doc = loads("job:\n  script: s\n  identity: google_cloud\n", "ci.yml")
    [warning] = lint(doc)
    assert warning.severity == "warning" and "`identity:` is ignored" in warning.message


def test_hooks_are_ignored_with_a_warning_even_from_default() -> None:
    doc = loads(
        "default:\n  hooks:\n    pre_get_sources_script: [git config --global x y]\n"
        "job:\n  script: s\n",
        "ci.yml",
    )
    [warning] = lint(doc)
    assert warning.severity == "warning" and "does not run it" in warning.message
    assert plan(doc, MAIN).job("job").ignored_keywords[0][0] == "hooks"
