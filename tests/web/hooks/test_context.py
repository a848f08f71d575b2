"""A parsed trigger plans the pipeline GitLab would: source, refs, rules, changes, MR variables."""

from __future__ import annotations

import pipeline
from tests.web.hooks.conftest import SECRET, delivery, payload
from web.hooks import CommitFacts, Trigger, parse_delivery, trigger_context

PIPELINE = """
stages: [test, deploy]
unit:
  script: [pytest]
  rules:
    - changes: ["shop/**/*"]
docs:
  script: [make docs]
  rules:
    - changes: ["docs/**/*"]
review:
  script: [echo review]
  rules:
    - if: >-
        $CI_PIPELINE_SOURCE == "merge_request_event"
        && $CI_MERGE_REQUEST_TARGET_BRANCH_NAME == "main"
release:
  stage: deploy
  script: [echo release $CI_COMMIT_TAG]
  rules:
    - if: $CI_COMMIT_TAG =~ /^v\\d+/
on-main:
  stage: deploy
  script: [echo deploy]
  rules:
    - if: $CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH
"""


def trigger(provider: str, name: str, event: str) -> Trigger:
    headers, body = delivery(provider, payload(name), event)
    got = parse_delivery(provider, headers, body, secret=SECRET)
    assert isinstance(got, Trigger)
    return got


def running(context: pipeline.TriggerContext) -> list[str]:
    plan = pipeline.plan(pipeline.loads(PIPELINE), context)
    return [job.name for job in plan.jobs if job.skip_reason is None]


def variables(context: pipeline.TriggerContext) -> dict[str, str]:
    plan = pipeline.plan(pipeline.loads(PIPELINE), context)
    return {v.name: v.value for v in plan.jobs[0].variables}


def test_push_to_the_default_branch() -> None:
    context = trigger_context(trigger("github", "github_push", "push"), pipeline_id=7)
    assert (context.source, context.branch, context.tag) == ("push", "main", None)
    assert running(context) == ["unit", "on-main"]
    seen = variables(context)
    assert seen["CI_PIPELINE_SOURCE"] == "push"
    assert seen["CI_COMMIT_SHA"] == "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c"
    assert seen["CI_COMMIT_BEFORE_SHA"] == "6113728f27ae82c7b1a177c8d03f9e96e0adf246"
    assert seen["CI_COMMIT_BRANCH"] == "main"
    assert seen["CI_COMMIT_TITLE"] == "Test the checkout page"
    assert seen["CI_COMMIT_AUTHOR"] == "Ada Lovelace <ada@example.com>"
    assert seen["CI_PROJECT_PATH"] == "acme/shop"
    assert seen["CI_PROJECT_NAME"] == "shop"
    assert seen["CI_PIPELINE_ID"] == "7"


def test_changed_files_from_git_replace_the_payload_list() -> None:
    got = trigger("gitlab", "gitlab_push", "Push Hook")
    assert running(trigger_context(got, pipeline_id=1)) == ["unit"]
    context = trigger_context(got, pipeline_id=1, changed_files=("docs/index.md",))
    assert running(context) == ["docs"]


def test_registered_default_branch_wins_over_the_payload() -> None:
    got = trigger("gitlab", "gitlab_push", "Push Hook")  # pushed to develop
    assert "on-main" in running(trigger_context(got, pipeline_id=1, default_branch="develop"))


def test_tag_push() -> None:
    context = trigger_context(trigger("gitlab", "gitlab_tag_push", "Tag Push Hook"), pipeline_id=3)
    assert (context.source, context.tag, context.branch) == ("push", "v2.0.0", None)
    # unknown changed files: every `changes:` matches, as GitLab does for tags
    assert running(context) == ["unit", "docs", "release"]
    assert variables(context)["CI_COMMIT_TAG"] == "v2.0.0"


def test_merge_request_variables() -> None:
    got = trigger("github", "github_pull_request", "pull_request")
    facts = CommitFacts("Cache totals\n\nBody", "Linus <l@example.com>", "2026-12-01T08:00:00Z")
    context = trigger_context(
        got,
        pipeline_id=9,
        changed_files=("shop/cart.py",),
        commit=facts,
        merge_base_sha="0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c",
    )
    assert context.source == "merge_request_event"
    assert running(context) == ["unit", "review"]
    seen = variables(context)
    assert "CI_COMMIT_BRANCH" not in seen  # GitLab leaves it unset in merge request pipelines
    assert seen["CI_COMMIT_REF_NAME"] == "fast-checkout"
    assert seen["CI_COMMIT_MESSAGE"] == "Cache totals\n\nBody"
    assert seen["CI_COMMIT_AUTHOR"] == "Linus <l@example.com>"
    assert seen["CI_COMMIT_TIMESTAMP"] == "2026-12-01T08:00:00Z"
    assert seen["CI_MERGE_REQUEST_IID"] == "42"
    assert seen["CI_MERGE_REQUEST_SOURCE_BRANCH_NAME"] == "fast-checkout"
    assert seen["CI_MERGE_REQUEST_TARGET_BRANCH_NAME"] == "main"
    assert seen["CI_MERGE_REQUEST_SOURCE_PROJECT_PATH"] == "linus/shop"
    assert seen["CI_MERGE_REQUEST_PROJECT_PATH"] == "acme/shop"
    assert seen["CI_MERGE_REQUEST_REF_PATH"] == "refs/pull/42/head"
    assert seen["CI_MERGE_REQUEST_DIFF_BASE_SHA"] == "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c"
    assert seen["CI_MERGE_REQUEST_EVENT_TYPE"] == "detached"


def test_extra_variables_come_last_and_win() -> None:
    got = trigger("gitlab", "gitlab_merge_request", "Merge Request Hook")
    context = trigger_context(
        got, pipeline_id=1, variables=(("CI_MERGE_REQUEST_TARGET_BRANCH_NAME", "release"),)
    )
    assert "review" not in running(context)
