"""Child pipelines on the server: what planning one needs, and how its trigger job ends.

`web.orchestration` starts a `trigger:` job without a worker (`web.db.downstream`) and plans
its child pipeline with `web.hooks.planning.plan_trigger`, as a pushed commit's pipeline is
planned, at the parent's commit: `trigger_of_pipeline` rebuilds the trigger from the pipeline
row, `child_planner` plans the child's files (`include: local` read from the commit written out
of the mirror, never through a symlink; `include: artifact` and dotenv reports read from the
parent's stored artifacts through `runner.confined`, from the object store when one is set),
`mirrored_end` says how a `strategy: depend` trigger job ends with its child.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from pipeline.context import TriggerContext
from pipeline.plan import Job, Plan
from pipeline.remote import RemoteFetcher
from runner.artifacts import ArtifactStore, SharedArtifactStore
from runner.engine.downstream import ChildPipelines
from runner.engine.recorder import JobStatus
from web.db.schemas import PipelineRead, RepositoryRead
from web.hooks.planning import PlanChild
from web.hooks.trigger import ZERO_SHA, MergeRequest, Trigger
from web.mirrors import PlanningTree
from web.settings import Settings

__all__ = ["child_planner", "mirrored_end", "parent_artifacts", "trigger_of_pipeline"]


def trigger_of_pipeline(pipeline: PipelineRead, repository: RepositoryRead) -> Trigger:
    """The trigger a recorded pipeline was planned from, as far as its row tells (a child
    pipeline's row holds its parent's commit, ref and trigger facts)."""
    facts = pipeline.trigger
    full_ref = f"refs/tags/{pipeline.ref}" if pipeline.tag else f"refs/heads/{pipeline.ref}"
    request = facts.get("merge_request")
    merge_request = None
    if isinstance(request, dict):  # only what choosing changed files and merge base needs
        merge_request = MergeRequest(
            iid=int(request.get("iid") or 0),
            action="opened",
            title="",
            source_branch=str(request.get("source_branch") or pipeline.ref),
            target_branch=str(request.get("target_branch") or repository.default_branch),
            source_sha=pipeline.sha,
            target_sha=None,
            source_repository=request.get("source_repository"),
            source_clone_url=None,
            target_repository=repository.name,
            from_fork=bool(facts.get("from_fork")),
        )
    author = pipeline.author_name
    if pipeline.author_email:
        author = f"{author} <{pipeline.author_email}>"
    return Trigger(
        provider=facts.get("provider") or repository.provider.value,
        delivery_id=pipeline.delivery_id or f"pipeline:{pipeline.id}",
        event=str(facts.get("event") or pipeline.source),
        kind=facts.get("kind") or ("tag_push" if pipeline.tag else "push"),
        ref=full_ref,
        branch=None if pipeline.tag else pipeline.ref,
        tag=pipeline.ref if pipeline.tag else None,
        sha=pipeline.sha,
        before_sha=pipeline.before_sha or ZERO_SHA,
        fetch_ref=str(facts.get("fetch_ref") or full_ref),
        message=pipeline.message,
        author=author,
        timestamp="",
        repository=repository.name,
        clone_url=repository.clone_url,
        default_branch=repository.default_branch,
        changed_files=None,
        merge_request=merge_request,
    )


@contextmanager
def parent_artifacts(settings: Settings) -> Iterator[ArtifactStore]:
    """The store the parent pipeline's jobs kept their artifacts in, as workers open it: the
    object store when one is set (downloads in a scratch dir removed afterwards), else the
    artifacts dir. `ObjectStoreError` when the object store setting is malformed."""
    objects = settings.open_object_store()
    if objects is None:
        yield ArtifactStore(settings.artifacts_dir)
        return
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="kapal-child-", dir=settings.data_dir) as scratch:
        store = SharedArtifactStore(settings.artifacts_dir, objects, scratch=Path(scratch))
        try:
            yield store
        finally:
            store.close()


def child_planner(
    job: Job,
    *,
    parent: Plan,
    parent_id: int,
    child_id: int,
    depth: int,
    artifacts: ArtifactStore,
    log: Callable[[str], None],
) -> PlanChild:
    """What plans the child pipeline (`child_id`) trigger job `job` of pipeline `parent_id`
    starts, `depth` being how deep below its first pipeline `parent` is; raises
    `PipelineError` (files wrong, too deep) or `EngineError` (an artifact not readable)."""

    def plan(context: TriggerContext, tree: PlanningTree, remote: RemoteFetcher | None) -> Plan:
        children = ChildPipelines(
            context=context,
            root_dir=tree.root,
            pipeline_file=parent.pipeline_file or ".kapal.yml",
            depth=depth,
            remote=remote,
        )
        return children.plan(
            job,
            parent=parent,
            pipeline_id=parent_id,
            child_id=child_id,
            artifacts=artifacts,
            log=log,
        )

    return plan


def mirrored_end(child_id: int, status: str, failed: Iterable[str]) -> tuple[JobStatus, str]:
    """A `strategy: depend` trigger job's end once its child pipeline ended `status` (the jobs
    `failed` not allowed to), and why: the child's status, as `kapal run` says it."""
    shown = f"child pipeline #{child_id}"
    if status == "success":
        return JobStatus.SUCCESS, f"{shown} passed"
    if status == "canceled":
        return JobStatus.CANCELED, f"{shown} was canceled"
    if status == "failed":
        names = ", ".join(failed)
        return JobStatus.FAILED, f"{shown} failed" + (f": {names} failed" if names else "")
    return JobStatus.FAILED, f"{shown} ended {status}"
