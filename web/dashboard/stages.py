"""Each pipeline's stages in one word apiece (the row of small icons on the pipelines list), read
for a whole page of pipelines in one query."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from web.db.models import Job


@dataclass(frozen=True)
class StageSummary:
    """A stage of a pipeline and the status its current jobs add up to."""

    name: str
    status: str


def stage_status(statuses: Iterable[tuple[str, bool]]) -> str:
    """What a stage's jobs (status, allowed to fail) add up to, as GitLab shows a stage."""
    seen = list(statuses)
    names = {status for status, _ in seen}
    if "running" in names:
        return "running"
    if names & {"pending", "scheduled"}:
        return "pending"
    if any(status == "failed" and not allowed for status, allowed in seen):
        return "failed"
    if "created" in names:
        return "created"
    if "canceled" in names:
        return "canceled"
    if "manual" in names and not names - {"manual", "skipped"}:
        return "manual"
    if names and names <= {"skipped"}:
        return "skipped"
    return "success"


def stage_summaries(
    *, session: Session, pipeline_ids: Collection[int]
) -> dict[int, list[StageSummary]]:
    """The stages of each pipeline, in plan order, with their statuses (current attempts)."""
    if not pipeline_ids:
        return {}
    rows = session.execute(
        select(Job.pipeline_id, Job.stage, Job.status, Job.allow_failure)
        .where(Job.pipeline_id.in_(sorted(pipeline_ids)), Job.retried.is_(False))
        .order_by(Job.pipeline_id, Job.position)
    )
    jobs: dict[int, dict[str, list[tuple[str, bool]]]] = {}
    for pipeline_id, stage, status, allowed in rows:
        jobs.setdefault(pipeline_id, {}).setdefault(stage, []).append((status, allowed))
    return {
        pipeline_id: [StageSummary(name, stage_status(found)) for name, found in stages.items()]
        for pipeline_id, stages in jobs.items()
    }
