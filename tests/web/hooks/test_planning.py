"""A verified delivery planned at its commit: the mirror, the trigger context and the plan."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pipeline.errors import IncludeError, LoadError
from tests.web.hooks.conftest import SECRET, delivery, payload
from tests.web.test_mirrors import Project, git
from web.errors import CommitNotFoundError
from web.hooks import Trigger, parse_delivery
from web.hooks.planning import plan_trigger
from web.hooks.trigger import ZERO_SHA
from web.mirrors import RepositoryMirror

PIPELINE = """
include: ci/jobs.yml
unit:
  script: [pytest]
  rules:
    - changes: ["shop/**/*"]
docs:
  script: [make docs]
  rules:
    - changes: ["docs/**/*"]
docker:
  script: [build]
  rules:
    - exists: [Dockerfile]
"""
JOBS = """
review:
  script: [echo $CI_MERGE_REQUEST_IID]
  rules:
    - if: $CI_PIPELINE_SOURCE == "merge_request_event"
"""


@pytest.fixture
def project(tmp_path: Path) -> Project:
    made = Project(tmp_path / "repos")
    made.commit({".kapal.yml": PIPELINE, "ci/jobs.yml": JOBS, "README.md": "shop\n"}, "Start")
    made.push()
    return made


def github_push(project: Project, before: str, after: str, ref: str = "refs/heads/main") -> Trigger:
    data: dict[str, Any] = payload("github_push")
    data |= {"ref": ref, "before": before, "after": after, "commits": [], "head_commit": None}
    data["repository"]["clone_url"] = str(project.origin)
    headers, body = delivery("github", data, "push")
    got = parse_delivery("github", headers, body, secret=SECRET)
    assert isinstance(got, Trigger)
    return got


def names(planned: Any) -> list[str]:
    assert planned.error is None and planned.plan is not None
    return sorted(job.name for job in planned.plan.jobs if job.skip_reason is None)


def test_push_plans_with_changed_files_from_git(project: Project, tmp_path: Path) -> None:
    before = git(project.work, "rev-parse", "HEAD")
    after = project.commit({"shop/cart.py": "x = 1\n"}, "Cart\n\nWith totals.")
    project.push()
    trigger = github_push(project, before, after)
    assert trigger.changed_files is None  # the payload listed no commits
    with RepositoryMirror(tmp_path / "data", name="acme/shop", clone_url=str(project.origin)) as m:
        planned = plan_trigger(trigger, m, pipeline_id=5)
    assert names(planned) == ["unit"]
    assert planned.context.changed_files == ("shop/cart.py",)
    assert planned.context.commit_message == "Cart\n\nWith totals."
    assert planned.context.commit_author == "Ada Lovelace <ada@example.com>"
    assert "Dockerfile" not in (planned.context.project_files or ())


def test_new_branch_compares_with_the_default_branch(project: Project, tmp_path: Path) -> None:
    git(project.work, "checkout", "-q", "-b", "docs-work")
    project.commit({"docs/index.md": "# Shop\n"})
    after = project.commit({"Dockerfile": "FROM debian\n"})
    project.push("HEAD:refs/heads/docs-work")
    trigger = github_push(project, ZERO_SHA, after, ref="refs/heads/docs-work")
    with RepositoryMirror(tmp_path / "data", name="acme/shop", clone_url=str(project.origin)) as m:
        planned = plan_trigger(trigger, m, pipeline_id=6, default_branch="main")
    assert planned.context.changed_files == ("Dockerfile", "docs/index.md")
    assert names(planned) == ["docker", "docs"]


def test_gitlab_merge_request_plans_against_its_target(project: Project, tmp_path: Path) -> None:
    git(project.work, "checkout", "-q", "-b", "fast-checkout")
    sha = project.commit({"shop/checkout.py": "fast = True\n"}, "Faster")
    # GitLab keeps a merge request's head under refs/merge-requests/IID/head
    project.push("HEAD:refs/merge-requests/12/head")
    data = payload("gitlab_merge_request")
    data["object_attributes"]["last_commit"]["id"] = sha
    headers, body = delivery("gitlab", data, "Merge Request Hook")
    trigger = parse_delivery("gitlab", headers, body, secret=SECRET)
    assert isinstance(trigger, Trigger)
    with RepositoryMirror(tmp_path / "data", name="acme/shop", clone_url=str(project.origin)) as m:
        planned = plan_trigger(trigger, m, pipeline_id=7)
    assert names(planned) == ["review", "unit"]
    review = next(job for job in planned.plan.jobs if job.name == "review")  # type: ignore[union-attr]
    seen = {v.name: v.value for v in review.variables}
    assert seen["CI_MERGE_REQUEST_IID"] == "12"
    assert seen["CI_MERGE_REQUEST_DIFF_BASE_SHA"] == git(project.work, "rev-parse", "main")
    assert seen["CI_COMMIT_MESSAGE"] == "Cache the cart totals\n"  # the payload's own


def test_invalid_pipeline_file_is_a_result(project: Project, tmp_path: Path) -> None:
    before = git(project.work, "rev-parse", "HEAD")
    after = project.commit({"ci/jobs.yml": None})
    project.push()
    with RepositoryMirror(tmp_path / "data", name="acme/shop", clone_url=str(project.origin)) as m:
        planned = plan_trigger(github_push(project, before, after), m, pipeline_id=8)
    assert planned.plan is None and isinstance(planned.error, IncludeError)
    assert str(planned.error).startswith(".kapal.yml:2:")


def test_symlinked_pipeline_file_is_a_failed_pipeline(project: Project, tmp_path: Path) -> None:
    before = git(project.work, "rev-parse", "HEAD")
    (project.work / ".kapal.yml").unlink()
    (project.work / ".kapal.yml").symlink_to("/etc/passwd")
    after = project.commit({})
    project.push()
    with RepositoryMirror(tmp_path / "data", name="acme/shop", clone_url=str(project.origin)) as m:
        planned = plan_trigger(github_push(project, before, after), m, pipeline_id=9)
    assert isinstance(planned.error, LoadError) and "symbolic link" in str(planned.error)
    assert "root:" not in str(planned.error)


def test_no_pipeline_file(project: Project, tmp_path: Path) -> None:
    before = git(project.work, "rev-parse", "HEAD")
    after = project.commit({".kapal.yml": None, "ci/jobs.yml": None})
    project.push()
    with RepositoryMirror(tmp_path / "data", name="acme/shop", clone_url=str(project.origin)) as m:
        planned = plan_trigger(github_push(project, before, after), m, pipeline_id=10)
    assert (planned.plan, planned.error) == (None, None)


def test_made_up_commit_is_an_error(project: Project, tmp_path: Path) -> None:
    trigger = github_push(project, ZERO_SHA, "ab" * 20)
    mirror = RepositoryMirror(tmp_path / "data", name="acme/shop", clone_url=str(project.origin))
    with mirror, pytest.raises(CommitNotFoundError):
        plan_trigger(trigger, mirror, pipeline_id=11)


def test_include_through_a_symlink_out_of_the_repository_reads_no_host_file(
    project: Project, tmp_path: Path
) -> None:
    secret = tmp_path / "host-secret.yml"
    secret.write_text("stolen:\n  script: [echo host-only-value]\n")
    before = git(project.work, "rev-parse", "HEAD")
    (project.work / "ci/jobs.yml").unlink()
    (project.work / "ci/jobs.yml").symlink_to(secret)
    after = project.commit({})
    project.push()
    with RepositoryMirror(tmp_path / "data", name="acme/shop", clone_url=str(project.origin)) as m:
        planned = plan_trigger(github_push(project, before, after), m, pipeline_id=12)
    assert planned.plan is None and isinstance(planned.error, IncludeError)
    assert "host-only-value" not in str(planned.error)
    assert secret.read_text() == "stolen:\n  script: [echo host-only-value]\n"
