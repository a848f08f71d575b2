"""Real-world pipeline files (tests/pipeline/realworld), linted and planned under several triggers.

Each file is written in the style teams use; the expected job sets follow GitLab's documented
behaviour (job_rules.md, yaml/index.md): a job without `rules`/`only` runs for branches and tags
but not in merge request pipelines; the first matching rule decides; `changes` is true when
there is no list of changes; `needs: optional` tolerates a job left out of the pipeline.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from pipeline import Plan, TriggerContext, lint, load, plan

REALWORLD = Path(__file__).parent / "realworld"
FILES = [
    "python-library.gitlab-ci.yml",
    "webapp-services.gitlab-ci.yml",
    "monorepo.gitlab-ci.yml",
    "templates-project/.gitlab-ci.yml",
    "workflow-merge-requests.gitlab-ci.yml",
    "kapal-build-deploy.kapal.yml",
    "legacy-only-except.gitlab-ci.yml",
]

SHA = "4f2c9e1d8b7a6c5d4e3f2a1b0c9d8e7f6a5b4c3d"
MAIN = TriggerContext(source="push", branch="main", commit_sha=SHA)
FEATURE = TriggerContext(source="push", branch="feature/login", commit_sha=SHA)
TAG = TriggerContext(source="push", tag="v1.4.0", commit_sha=SHA)
SCHEDULE = TriggerContext(source="schedule", branch="main", commit_sha=SHA)
MR_VARIABLES = (
    ("CI_MERGE_REQUEST_IID", "42"),
    ("CI_MERGE_REQUEST_SOURCE_BRANCH_NAME", "feature/login"),
    ("CI_MERGE_REQUEST_TARGET_BRANCH_NAME", "main"),
)


def merge_request(*changed: str, labels: str | None = None) -> TriggerContext:
    """A merge request pipeline for feature/login into main with these changed files."""
    variables = MR_VARIABLES + ((("CI_MERGE_REQUEST_LABELS", labels),) if labels else ())
    return TriggerContext(
        source="merge_request_event",
        branch="feature/login",
        commit_sha=SHA,
        changed_files=tuple(changed),
        variables=variables,
    )


@dataclass(frozen=True)
class Outcome:
    """What a person reads from `kapal plan`: jobs that run, manual ones, skipped ones."""

    runs: set[str]
    manual: set[str]
    skipped: set[str]


def outcome(name: str, context: TriggerContext) -> tuple[Outcome, Plan]:
    the_plan = plan(load(REALWORLD / name), context)
    runs = {job.name for job in the_plan.runnable_jobs() if not job.manual}
    manual = {job.name for job in the_plan.runnable_jobs() if job.manual}
    skipped = {job.name for job in the_plan.skipped_jobs()}
    return Outcome(runs, manual, skipped), the_plan


@pytest.mark.parametrize("name", FILES)
def test_lints_clean(name: str) -> None:
    """Every file is valid: `kapal lint` reports no problem."""
    assert lint(REALWORLD / name) == []


@pytest.mark.parametrize("name", FILES)
def test_plan_round_trips_through_json(name: str) -> None:
    """The plan a runner gets survives JSON unchanged."""
    _, the_plan = outcome(name, MAIN)
    assert Plan.from_json(the_plan.to_json()) == the_plan


# -- Python library --------------------------------------------------------------------------

PY_TESTS = {"test: [3.10]", "test: [3.11]", "test: [3.12]"}


def test_python_library_main() -> None:
    """Main: lint, the three-version matrix, the wheel and the docs; no publishing."""
    result, the_plan = outcome("python-library.gitlab-ci.yml", MAIN)
    assert result == Outcome(
        {"ruff", "mypy", *PY_TESTS, "build-wheel", "docs"}, set(), {"publish-pypi"}
    )
    edges = set(the_plan.edges())
    assert {(test, "build-wheel") for test in PY_TESTS} <= edges
    assert ("ruff", "build-wheel") in edges
    assert ("mypy", "build-wheel") not in edges  # needs: [ruff, test] replaces stage order
    assert not any(downstream == "docs" for _, downstream in edges)  # needs: []
    assert the_plan.job("mypy").allow_failure
    assert the_plan.job("ruff").interruptible  # from `default:`
    assert the_plan.job("test: [3.11]").image is not None


def test_python_library_feature_branch_and_tag() -> None:
    """A feature branch drops the docs; a version tag publishes after the wheel."""
    feature, _ = outcome("python-library.gitlab-ci.yml", FEATURE)
    assert feature.runs == {"ruff", "mypy", *PY_TESTS, "build-wheel"}
    assert feature.skipped == {"docs", "publish-pypi"}
    tag, the_plan = outcome("python-library.gitlab-ci.yml", TAG)
    assert tag.runs == {"ruff", "mypy", *PY_TESTS, "build-wheel", "publish-pypi"}
    assert tag.skipped == {"docs"}
    assert ("build-wheel", "publish-pypi") in set(the_plan.edges())
    env = the_plan.job("publish-pypi").environment
    assert env is not None and env.name == "pypi"
    junit = the_plan.job("test: [3.10]").artifacts
    assert junit is not None and junit.junit == ("report.xml",) and junit.when == "always"


def test_python_library_release_candidate_tag_does_not_publish() -> None:
    """`/^v\\d+\\.\\d+\\.\\d+$/` is anchored: v1.4.0-rc1 is not a release."""
    result, _ = outcome("python-library.gitlab-ci.yml", TriggerContext(tag="v1.4.0-rc1"))
    assert "publish-pypi" in result.skipped


# -- web application with services -----------------------------------------------------------


def test_webapp_main_deploys_staging_then_manual_production() -> None:
    """Main: tests, image, staging deploy, and production waiting for a person."""
    result, the_plan = outcome("webapp-services.gitlab-ci.yml", MAIN)
    assert result == Outcome(
        {"unit-tests", "integration-tests", "build-image", "deploy-staging", "notify-failure"},
        {"deploy-production"},
        set(),
    )
    assert the_plan.job("notify-failure").when == "on_failure"
    edges = set(the_plan.edges())
    assert ("deploy-staging", "deploy-production") in edges
    assert ("build-image", "deploy-production") in edges
    assert ("unit-tests", "deploy-production") not in edges
    integration = the_plan.job("integration-tests")
    assert [(s.name, s.aliases) for s in integration.services] == [
        ("postgres:15", ("db",)),
        ("redis:7", ("redis",)),
    ]
    assert integration.variables_dict()["DATABASE_URL"].endswith("@db:5432/app_test")
    assert integration.retry.max == 1 and integration.timeout_seconds == 20 * 60
    assert the_plan.job("unit-tests").before_script == ("pip install -r requirements.txt",)
    production = the_plan.job("deploy-production")
    assert production.environment is not None and production.environment.name == "production"
    assert production.resource_group == "production"


def test_webapp_feature_branch_and_tag() -> None:
    """A feature branch only tests; a tag also builds the image but deploys nothing."""
    feature, _ = outcome("webapp-services.gitlab-ci.yml", FEATURE)
    assert feature == Outcome(
        {"unit-tests", "integration-tests", "notify-failure"},
        set(),
        {"build-image", "deploy-staging", "deploy-production"},
    )
    tag, _ = outcome("webapp-services.gitlab-ci.yml", TAG)
    assert tag.runs == {"unit-tests", "integration-tests", "build-image", "notify-failure"}
    assert tag.skipped == {"deploy-staging", "deploy-production"}


def test_webapp_merge_request_runs_nothing() -> None:
    """Jobs without rules do not run in merge request pipelines (GitLab's default)."""
    result, _ = outcome("webapp-services.gitlab-ci.yml", merge_request("app/views.py"))
    assert result.runs == set() and result.manual == set()


# -- monorepo with rules: changes ------------------------------------------------------------


def test_monorepo_merge_request_touching_web_only() -> None:
    """Only the web component and the e2e suite run; e2e's optional need on api-test is dropped."""
    result, the_plan = outcome("monorepo.gitlab-ci.yml", merge_request("web/src/App.tsx"))
    assert result.runs == {"web-build", "web-test", "e2e"}
    assert result.skipped == {"api-build", "api-test", "docs-lint"}
    edges = set(the_plan.edges())
    assert edges == {("web-build", "web-test"), ("web-test", "e2e")}


def test_monorepo_merge_request_touching_shared_code() -> None:
    """`shared/**/*` belongs to both components, so both build and test."""
    result, the_plan = outcome("monorepo.gitlab-ci.yml", merge_request("shared/proto/user.proto"))
    assert result.runs == {"api-build", "api-test", "web-build", "web-test", "e2e"}
    assert {("api-test", "e2e"), ("web-test", "e2e"), ("api-build", "api-test")} <= set(
        the_plan.edges()
    )


def test_monorepo_merge_request_touching_docs_only() -> None:
    """A docs change runs the markdown lint alone (root `*.md` and `docs/**/*.md`)."""
    result, _ = outcome("monorepo.gitlab-ci.yml", merge_request("docs/guide/setup.md", "README.md"))
    assert result.runs == {"docs-lint"}
    nested, _ = outcome("monorepo.gitlab-ci.yml", merge_request("web/README.md"))
    assert "docs-lint" not in nested.runs  # `*.md` does not cross `/`; web/** does match
    assert nested.runs == {"web-build", "web-test", "e2e"}


def test_monorepo_default_branch_builds_everything() -> None:
    """On the default branch every component builds and e2e waits for both test jobs."""
    result, the_plan = outcome("monorepo.gitlab-ci.yml", MAIN)
    assert result.runs == {"api-build", "api-test", "web-build", "web-test", "docs-lint", "e2e"}
    web_test = the_plan.job("web-test")
    assert web_test.needs is not None and [n.job for n in web_test.needs] == ["web-build"]
    assert the_plan.job("docs-lint").needs == ()


# -- extends + include: local ----------------------------------------------------------------

TEMPLATES = "templates-project/.gitlab-ci.yml"


def test_templates_main() -> None:
    """Main: tests and packaging from templates, production deploy manual."""
    result, the_plan = outcome(TEMPLATES, MAIN)
    assert result == Outcome({"unit", "integration", "package"}, {"deploy-prod"}, {"deploy-review"})
    assert set(the_plan.edges()) == {("unit", "package"), ("package", "deploy-prod")}


def test_templates_feature_branch_gets_a_review_app() -> None:
    """A feature branch deploys a review environment named after the branch slug."""
    result, the_plan = outcome(TEMPLATES, FEATURE)
    assert result == Outcome(
        {"unit", "integration", "package", "deploy-review"}, set(), {"deploy-prod"}
    )
    review = the_plan.job("deploy-review").environment
    assert review is not None and review.name.startswith("review/")


def test_templates_merge_multi_level_extends() -> None:
    """`.deploy-manual` extends `.deploy`; `.pytest` extends `.python-base`; `default` adds the
    image and tags; job keys override template keys and variables merge."""
    _, the_plan = outcome(TEMPLATES, MAIN)
    unit, integration = the_plan.job("unit"), the_plan.job("integration")
    assert unit.stage == "test" and unit.script == ('pytest "$TEST_PATH" --junitxml=report.xml',)
    assert unit.variables_dict()["TEST_PATH"] == "tests/unit"
    assert integration.variables_dict()["TEST_PATH"] == "tests/integration"
    assert unit.variables_dict()["PYTHONUNBUFFERED"] == "1"
    assert unit.retry.max == 2
    assert unit.image is not None and unit.image.name == "registry.example.com/base/python:3.11"
    assert unit.tags == ("docker",)
    assert integration.allow_failure_exit_codes == (137,)
    prod = the_plan.job("deploy-prod")
    assert prod.stage == "deploy" and prod.image is not None and prod.image.name == "alpine:3.19"
    assert prod.resource_group == "production" and prod.timeout_seconds == 90 * 60
    assert prod.needs is not None and [n.job for n in prod.needs] == ["package"]


# -- workflow: rules for merge requests vs branches ------------------------------------------

WORKFLOW = "workflow-merge-requests.gitlab-ci.yml"


def test_workflow_branch_pipeline() -> None:
    """A push to main without an open merge request is a branch pipeline."""
    result, the_plan = outcome(WORKFLOW, MAIN)
    assert the_plan.created
    assert result == Outcome({"lint", "test", "test-slow"}, set(), {"danger-review", "release"})


def test_workflow_push_with_open_merge_request_creates_no_pipeline() -> None:
    """`$CI_COMMIT_BRANCH && $CI_OPEN_MERGE_REQUESTS` → never: the MR pipeline runs instead."""
    context = TriggerContext(
        source="push",
        branch="feature/login",
        variables=(("CI_OPEN_MERGE_REQUESTS", "group/project!42"),),
    )
    _, the_plan = outcome(WORKFLOW, context)
    assert not the_plan.created
    assert the_plan.skip_reason


def test_workflow_merge_request_pipeline() -> None:
    """In the MR pipeline: lint and danger run, the slow tests are manual, and `test` (no rules)
    runs too: with `workflow: rules`, GitLab drops the default `only: [branches, tags]`."""
    result, the_plan = outcome(WORKFLOW, merge_request("src/index.ts"))
    assert the_plan.created
    assert result == Outcome({"lint", "danger-review", "test"}, {"test-slow"}, {"release"})
    assert the_plan.job("test-slow").allow_failure
    assert the_plan.job("danger-review").allow_failure


def test_workflow_merge_request_with_label_runs_slow_tests() -> None:
    """A `run-slow` label makes the slow tests run automatically."""
    result, _ = outcome(WORKFLOW, merge_request("src/index.ts", labels="bug,run-slow"))
    assert "test-slow" in result.runs


def test_workflow_tag_pipeline() -> None:
    """A version tag releases; lint (branch or MR only) is skipped."""
    result, the_plan = outcome(WORKFLOW, TAG)
    assert result == Outcome({"test", "release"}, set(), {"lint", "danger-review", "test-slow"})
    assert ("test", "release") in set(the_plan.edges())


def test_workflow_web_pipeline_on_a_branch() -> None:
    """A pipeline started from the UI on a branch passes `$CI_COMMIT_BRANCH` too."""
    result, the_plan = outcome(WORKFLOW, TriggerContext(source="web", branch="feature/login"))
    assert the_plan.created and result.runs == {"lint", "test"}


# -- kapal's build: and deploy: extensions ---------------------------------------------------

KAPAL = "kapal-build-deploy.kapal.yml"


def test_kapal_extensions_main() -> None:
    """Main: build the image, test in it, ship to staging, production manual."""
    result, the_plan = outcome(KAPAL, MAIN)
    assert result == Outcome(
        {"image-build", "unit", "smoke", "ship-staging"}, {"ship-production"}, set()
    )
    build = the_plan.job("image-build").build
    assert build is not None
    assert build.tags == ("demo:$CI_COMMIT_SHORT_SHA",) and build.build_args == (("PY", "3.11"),)
    staging = the_plan.job("ship-staging").deploy
    assert staging is not None and staging.to == "registry.example.test/demo:staging"
    assert staging.service is not None and staging.service.port == 8000
    assert {("image-build", "unit"), ("image-build", "smoke"), ("unit", "ship-staging")} <= set(
        the_plan.edges()
    )
    assert ("ship-staging", "ship-production") in set(the_plan.edges())


def test_kapal_extensions_tag_ships_production_without_staging() -> None:
    """On a tag staging is skipped; production's optional need on it is dropped."""
    result, the_plan = outcome(KAPAL, TAG)
    assert result == Outcome(
        {"image-build", "unit", "smoke"}, {"ship-production"}, {"ship-staging"}
    )
    production = the_plan.job("ship-production")
    assert production.needs is not None and [n.job for n in production.needs] == ["unit"]


def test_kapal_extensions_feature_branch() -> None:
    """A feature branch builds and tests only."""
    result, _ = outcome(KAPAL, FEATURE)
    assert result == Outcome(
        {"image-build", "unit", "smoke"}, set(), {"ship-staging", "ship-production"}
    )


# -- only/except ------------------------------------------------------------------------------

LEGACY = "legacy-only-except.gitlab-ci.yml"


def test_legacy_only_except_main_and_hotfix() -> None:
    """Main builds and tests; a hotfix/ branch also runs the hotfix check (regex ref)."""
    result, _ = outcome(LEGACY, MAIN)
    assert result.runs == {"build", "test"}
    assert result.skipped == {"hotfix-check", "deploy", "nightly-report"}
    hotfix, _ = outcome(LEGACY, TriggerContext(branch="hotfix/cve-2024-1"))
    assert hotfix.runs == {"build", "test", "hotfix-check"}


def test_legacy_only_variables() -> None:
    """`only: refs + variables` both must hold: main deploys when DEPLOY_ENABLED is "true"."""
    enabled = TriggerContext(branch="main", variables=(("DEPLOY_ENABLED", "true"),))
    result, _ = outcome(LEGACY, enabled)
    assert "deploy" in result.runs
    tag, _ = outcome(LEGACY, TriggerContext(tag="v2.0.0", variables=(("DEPLOY_ENABLED", "true"),)))
    assert "deploy" in tag.runs
    feature, _ = outcome(
        LEGACY, TriggerContext(branch="feature/x", variables=(("DEPLOY_ENABLED", "true"),))
    )
    assert "deploy" in feature.skipped


def test_legacy_schedule() -> None:
    """A schedule runs the nightly report and not the tests (`except: schedules`)."""
    result, the_plan = outcome(LEGACY, SCHEDULE)
    assert result.runs == {"build", "nightly-report"}
    assert {"test", "deploy", "hotfix-check"} <= result.skipped
    assert ("build", "nightly-report") in set(the_plan.edges())


def test_skipped_jobs_say_why() -> None:
    """Every skipped job carries a reason a person can read."""
    for name in FILES:
        for context in (MAIN, FEATURE, TAG):
            _, the_plan = outcome(name, context)
            for job in the_plan.skipped_jobs():
                assert job.skip_reason, f"{name}: {job.name} skipped without a reason"
