"""From a webhook `Trigger` to the `pipeline.TriggerContext` that `pipeline.plan` evaluates.

A push is GitLab's `push` source (with CI_COMMIT_BRANCH or CI_COMMIT_TAG), a merge request its
`merge_request_event` source with the CI_MERGE_REQUEST_* variables GitLab gives a detached merge
request pipeline. `rules: changes` sees `changed_files`: the payload's list, or what the caller
computed from git (`RepositoryMirror.changed_files`); None makes every `changes:` match.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline import TriggerContext
from web.hooks.trigger import Trigger


@dataclass(frozen=True)
class CommitFacts:
    """The head commit's message, author ("Name <email>") and ISO timestamp, read from git.

    Merge request payloads of GitHub and Gitea do not carry them; the mirror does.
    """

    message: str
    author: str
    timestamp: str


def trigger_context(
    trigger: Trigger,
    *,
    pipeline_id: int,
    default_branch: str | None = None,
    changed_files: tuple[str, ...] | None = None,
    project_files: tuple[str, ...] | None = None,
    commit: CommitFacts | None = None,
    merge_base_sha: str | None = None,
    variables: tuple[tuple[str, str], ...] = (),
) -> TriggerContext:
    """The planning context of `trigger` for the pipeline numbered `pipeline_id`.

    `default_branch` is the repository's as registered (else the payload's, else "main");
    `changed_files` replaces the trigger's own list when given (computed from git);
    `project_files` lists the commit's files for `rules: exists`; `commit` fills the message,
    author and timestamp the payload lacked; `merge_base_sha` is CI_MERGE_REQUEST_DIFF_BASE_SHA;
    `variables` (NAME, value) come after the trigger's own and override them.
    """
    name = trigger.repository.rsplit("/", 1)[-1] or "project"
    path = trigger.repository or name
    message, author, timestamp = trigger.message, trigger.author, trigger.timestamp
    if commit is not None:
        message = message or commit.message
        author = author or commit.author
        timestamp = timestamp or commit.timestamp
    return TriggerContext(
        source="merge_request_event" if trigger.merge_request is not None else "push",
        branch=trigger.branch,
        tag=trigger.tag,
        commit_sha=trigger.sha,
        commit_before_sha=trigger.before_sha,
        commit_message=message,
        commit_timestamp=timestamp,
        commit_author=author,
        default_branch=default_branch or trigger.default_branch or "main",
        project_name=name,
        project_path=path,
        project_dir=f"/builds/{path}",
        pipeline_id=pipeline_id,
        changed_files=changed_files if changed_files is not None else trigger.changed_files,
        project_files=project_files,
        variables=merge_request_variables(trigger, merge_base_sha) + tuple(variables),
    )


def merge_request_variables(
    trigger: Trigger, merge_base_sha: str | None = None
) -> tuple[tuple[str, str], ...]:
    """GitLab's CI_MERGE_REQUEST_* variables of a merge request trigger (none for a push)."""
    request = trigger.merge_request
    if request is None:
        return ()
    values = [
        ("CI_MERGE_REQUEST_IID", str(request.iid)),
        ("CI_MERGE_REQUEST_TITLE", request.title),
        ("CI_MERGE_REQUEST_EVENT_TYPE", "detached"),
        ("CI_MERGE_REQUEST_SOURCE_BRANCH_NAME", request.source_branch),
        ("CI_MERGE_REQUEST_SOURCE_BRANCH_SHA", request.source_sha),
        ("CI_MERGE_REQUEST_TARGET_BRANCH_NAME", request.target_branch),
        ("CI_MERGE_REQUEST_PROJECT_PATH", request.target_repository),
        ("CI_MERGE_REQUEST_SOURCE_PROJECT_PATH", request.source_repository or ""),
        ("CI_MERGE_REQUEST_REF_PATH", trigger.fetch_ref),
    ]
    if request.target_sha is not None:
        values.append(("CI_MERGE_REQUEST_TARGET_BRANCH_SHA", request.target_sha))
    if merge_base_sha is not None:
        values.append(("CI_MERGE_REQUEST_DIFF_BASE_SHA", merge_base_sha))
    return tuple(values)
