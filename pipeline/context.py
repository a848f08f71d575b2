"""`TriggerContext`: what started a pipeline (source, ref, commit, changed files, variables).

`plan(document, context)` evaluates `workflow: rules`, `rules`, `only`/`except` and computes the
predefined CI_* variables from one of these. Build it with the fields you know; the rest have
defaults that suit `kapal run` on a laptop.
"""

from __future__ import annotations

from typing import Literal

from pipeline.records import record

PipelineSource = Literal[
    "push",
    "web",
    "api",
    "schedule",
    "merge_request_event",
    "trigger",
    "pipeline",
    "parent_pipeline",
    "external",
    "chat",
    "webide",
    "external_pull_request_event",
    "local",
]

PIPELINE_SOURCES: tuple[str, ...] = PipelineSource.__args__  # type: ignore[attr-defined]


@record
class TriggerContext:
    """The trigger of one pipeline: GitLab's CI_PIPELINE_SOURCE plus the commit it runs on.

    `branch` and `tag` are exclusive (a tag pipeline has no branch). `changed_files` is None when
    unknown (GitLab then treats every `changes:` as matching); `project_files` is None when
    unknown (then `exists:` looks at the files under the pipeline file's directory).
    `variables` are extra variables in order (`--var`, CI_MERGE_REQUEST_*, a schedule's
    variables); they override file variables like GitLab's trigger/schedule variables do.
    `server_url` is the GitLab instance's URL (KAPAL_GITLAB_URL, passed in by runner/ or web/),
    giving CI_SERVER_URL, _HOST, _PORT, _PROTOCOL and _FQDN; empty: they are not set.
    """

    source: str = "push"
    branch: str | None = None
    tag: str | None = None
    commit_sha: str = "0000000000000000000000000000000000000000"
    commit_before_sha: str = "0000000000000000000000000000000000000000"
    commit_message: str = ""
    commit_timestamp: str = ""
    commit_author: str = ""
    default_branch: str = "main"
    project_name: str = "project"
    project_path: str = ""
    project_dir: str = "/builds/project"
    pipeline_id: int = 1
    changed_files: tuple[str, ...] | None = None
    project_files: tuple[str, ...] | None = None
    variables: tuple[tuple[str, str], ...] = ()
    server_url: str = ""

    @property
    def ref(self) -> str:
        """The branch or tag name (empty when neither is set)."""
        return self.tag if self.tag is not None else (self.branch or "")

    @property
    def commit_short_sha(self) -> str:
        """The first 8 characters of the commit SHA, like CI_COMMIT_SHORT_SHA."""
        return self.commit_sha[:8]

    def variable(self, name: str) -> str | None:
        """The value of an extra variable (the last one wins), or None."""
        found: str | None = None
        for key, value in self.variables:
            if key == name:
                found = value
        return found
