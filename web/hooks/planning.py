"""Plan the pipeline of a webhook `Trigger` at its commit, read from the repository's mirror.

One call does what a delivery needs after it is verified and recorded::

    with RepositoryMirror(data_dir, name=repo.name, clone_url=repo.clone_url) as mirror:
        planned = plan_trigger(trigger, mirror, pipeline_id=N, default_branch=repo.default_branch)
    if planned.error is not None: record the pipeline as failed, reason str(planned.error)
    elif planned.plan is None: no pipeline file at that commit (answer "ignored")
    else: record planned.plan (its `skip_reason` says when `workflow: rules` refuse it)

Mirror problems (`RepositoryUnreachableError`, `CommitNotFoundError`, `UnsafeTreeError`,
`MirrorBusyError`) are raised; problems of the pipeline file are results in `error`.
(Not imported by `web.hooks` itself: `web.mirrors` imports `web.hooks`.)

`include: remote/project/component/template` are fetched through `remote`, the fetcher
`include_fetcher(settings)` makes: cached under the data dir as `kapal run` does,
`include: remote` connecting only to the addresses `runner.include_addresses` allows (the
pipeline file is untrusted here), GitLab includes read from KAPAL_GITLAB_URL. Planning runs in
the worker's planning step (`web.orchestration.plan_recorded_pipeline`), never while a webhook
is answered; a file that cannot be fetched is the pipeline's positioned plan error.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import pipeline
from pipeline.errors import PipelineError
from pipeline.remote import RemoteFetcher
from runner.remote_includes import HttpFetcher, fetcher_for
from web.hooks.context import trigger_context
from web.hooks.trigger import Trigger
from web.mirrors import PlanningTree, RepositoryMirror
from web.settings import Settings

PlanChild = Callable[[pipeline.TriggerContext, PlanningTree, RemoteFetcher | None], pipeline.Plan]
"""Plans a child pipeline from its parent's trigger context, the commit's files and the
fetcher of its remote and GitLab includes."""


def include_fetcher(settings: Settings) -> HttpFetcher:
    """The server's fetcher of includes: cached under `settings.data_dir`/includes, GitLab
    includes from KAPAL_GITLAB_URL, `include: remote` only to public addresses, the allow-list
    (KAPAL_INCLUDE_ALLOWED_HOSTS) and KAPAL_GITLAB_URL's origin. Close it after planning."""
    from runner.include_addresses import AddressPolicy

    return fetcher_for(
        settings.data_dir,
        gitlab_url=settings.gitlab_url,
        gitlab_token=settings.gitlab_token,
        addresses=AddressPolicy.from_settings(settings.include_allowed_hosts, settings.gitlab_url),
    )


@dataclass(frozen=True)
class PlannedTrigger:
    """The outcome of planning a trigger: the context, and a plan or the pipeline's error.

    `plan` and `error` are both None when the commit has no pipeline file.
    """

    trigger: Trigger
    context: pipeline.TriggerContext
    plan: pipeline.Plan | None
    error: PipelineError | None


def plan_trigger(
    trigger: Trigger,
    mirror: RepositoryMirror,
    *,
    pipeline_id: int,
    default_branch: str | None = None,
    variables: tuple[tuple[str, str], ...] = (),
    source: str | None = None,
    server_url: str = "",
    plan_child: PlanChild | None = None,
    remote: RemoteFetcher | None = None,
) -> PlannedTrigger:
    """Fetch `trigger`'s commit into `mirror`, read its pipeline file there, and plan it.

    Changed files come from the payload when it lists them all, else from git: against the
    previous commit of the branch, for a new branch against `default_branch`, for a merge
    request against its target branch (tags: unknown, so every `changes:` matches).
    `source` replaces the trigger's CI_PIPELINE_SOURCE (`api`, `web` for a pipeline run by hand).
    `plan_child` plans a child pipeline instead of the commit's pipeline file (a `trigger:`
    job's, `web.orchestration`), from the context that file would be planned in. `remote`
    fetches remote and GitLab includes (`include_fetcher`); without one they are errors.
    The context's CI_SERVER_* variables name `server_url` (KAPAL_GITLAB_URL).
    """
    default = default_branch or trigger.default_branch or "main"
    request = trigger.merge_request
    base_branch = request.target_branch if request is not None else default
    refs = [trigger.fetch_ref]
    if trigger.tag is None and base_branch != trigger.branch:
        refs.append(f"refs/heads/{base_branch}")
    sha = mirror.fetch(trigger.sha, refs)
    trigger = dataclasses.replace(trigger, sha=sha)
    changed = trigger.changed_files
    merge_base = None
    if request is not None:
        merge_base = mirror.merge_base(sha, base_branch)
        changed = mirror.changed_files(sha, base_branch=base_branch)
    elif trigger.tag is None and changed is None:
        new_branch = trigger.is_new_ref and trigger.branch != default
        changed = mirror.changed_files(
            sha, before=trigger.before_sha, base_branch=default if new_branch else None
        )
    facts = mirror.commit_facts(sha) if not (trigger.message and trigger.author) else None

    def context(files: tuple[str, ...] | None) -> pipeline.TriggerContext:
        made = trigger_context(
            trigger,
            pipeline_id=pipeline_id,
            default_branch=default,
            changed_files=changed,
            project_files=files,
            commit=facts,
            merge_base_sha=merge_base,
            variables=variables,
        )
        made = dataclasses.replace(made, server_url=server_url)
        return made if source is None else dataclasses.replace(made, source=source)

    try:
        with mirror.planning_tree(sha) as tree:
            planning = context(tree.files)
            if plan_child is not None:
                planned = plan_child(planning, tree, remote)
                return PlannedTrigger(trigger, planning, planned, None)
            document = tree.load()
            if document is None:
                return PlannedTrigger(trigger, planning, None, None)
            planned = pipeline.plan(document, planning, remote)
            return PlannedTrigger(trigger, planning, planned, None)
    except PipelineError as exc:
        return PlannedTrigger(trigger, context(None), None, exc)
