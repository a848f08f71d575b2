"""A pipeline's page: stages of job cards, the needs graph, tests, artifacts, images, actions."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from markupsafe import Markup
from sqlalchemy import select
from sqlalchemy.orm import Session

from pipeline.errors import PipelineError
from pipeline.plan import Plan
from web.api.auth import Access
from web.dashboard.dag import DagJob, draw_dag
from web.dashboard.display import FINISHED_STATUSES
from web.dashboard.live import pipeline_version
from web.dashboard.pages import RowId, database_of, page
from web.dashboard.rendering import render
from web.db.jobs import get_job
from web.db.models import Artifact
from web.db.pipelines import get_pipeline_detail, get_pipeline_plan
from web.db.repos import get_repository
from web.db.results import list_built_images, list_test_cases
from web.db.schemas import ArtifactRead, JobRead, Scope, TestCaseRead
from web.errors import NotFoundError

router = APIRouter(include_in_schema=False)


@dataclass
class JobCard:
    """A job on the pipeline page: its latest attempt and the attempts before it."""

    job: JobRead
    earlier: list[JobRead] = field(default_factory=list)


@dataclass
class Stage:
    """A column of job cards."""

    name: str
    cards: list[JobCard] = field(default_factory=list)


@dataclass
class TestSummary:
    """A pipeline's test cases counted by status, with the failed ones."""

    __test__ = False  # not a pytest test class

    counts: dict[str, int]
    failed: list[TestCaseRead]
    jobs: dict[int, str]

    @property
    def total(self) -> int:
        """How many test cases there are."""
        return sum(self.counts.values())


def _plan(raw: dict[str, Any] | None) -> Plan | None:
    if raw is None:
        return None
    try:
        return Plan.from_dict(raw)
    except PipelineError:
        return None  # a plan of an older format: the page does without its graph


def _stages(jobs: list[JobRead], plan: Plan | None) -> list[Stage]:
    cards: dict[str, JobCard] = {}
    for job in jobs:  # plan order, attempts oldest first
        card = cards.get(job.name)
        if card is None:
            cards[job.name] = JobCard(job)
        else:
            card.earlier.append(card.job)
            card.job = job
    order = list(plan.stages) if plan is not None else []
    stages: dict[str, Stage] = {name: Stage(name) for name in order}
    for card in cards.values():
        stages.setdefault(card.job.stage, Stage(card.job.stage)).cards.append(card)
    return [stage for stage in stages.values() if stage.cards]


def _dag(jobs: list[JobRead], plan: Plan | None) -> Markup | None:
    if plan is None or not any(job.needs is not None for job in plan.jobs):
        return None
    latest = {job.name: job for job in jobs}
    drawn = [
        DagJob(
            name=job.name,
            status=latest[job.name].status,
            job_id=latest[job.name].id,
            waits_for=job.waits_for,
            needs=tuple(need.job for need in job.needs or ()),
        )
        for job in plan.runnable_jobs()
        if job.name in latest
    ]
    return Markup(draw_dag(drawn)) if drawn else None


def _artifacts_of(session: Session, job_ids: list[int]) -> list[ArtifactRead]:
    """The artifacts of these jobs in one query (a pipeline may hold hundreds of jobs)."""
    if not job_ids:
        return []
    rows = session.scalars(
        select(Artifact).where(Artifact.job_id.in_(job_ids)).order_by(Artifact.job_id, Artifact.id)
    )
    return [ArtifactRead.model_validate(row) for row in rows]


@router.get("/pipelines/{pipeline_id}")
def pipeline_page(request: Request, pipeline_id: RowId) -> Response:
    """A pipeline: stages of job cards, the needs graph, tests, artifacts, images, actions."""
    database = database_of(request)

    def build(access: Access) -> Response:
        # taken before the page's reads: a change made while they run makes the page refresh
        version = pipeline_version(database, pipeline_id)
        with database.transaction() as session:
            detail = get_pipeline_detail(session=session, pipeline_id=pipeline_id)
            if detail is None:
                raise NotFoundError(f"pipeline {pipeline_id} does not exist")
            access.need(Scope.READ, detail.repository_id)
            repository = get_repository(session=session, repository_id=detail.repository_id)
            plan = _plan(get_pipeline_plan(session=session, pipeline_id=pipeline_id))
            cases = list_test_cases(session=session, pipeline_id=pipeline_id)
            names = {job.id: job.name for job in detail.jobs}
            current = [job for job in detail.jobs if not job.retried]
            by_job = {job.id: job for job in current}
            artifacts = [
                (by_job[artifact.job_id], artifact)
                for artifact in _artifacts_of(session, list(by_job))
            ]
            images = [
                (names.get(image.job_id, "?"), image.job_id, image)
                for image in list_built_images(session=session, pipeline_id=pipeline_id)
            ]
            parent_job = (
                None
                if detail.parent_job_id is None
                else get_job(session=session, job_id=detail.parent_job_id)
            )
        counts = {status: 0 for status in ("passed", "failed", "error", "skipped")}
        for case in cases:
            counts[case.status] = counts.get(case.status, 0) + 1
        statuses = {job.status for job in current}
        return render(
            request,
            "pipeline.html",
            viewer=access,
            section="pipelines",
            p=detail,
            repository=repository,
            stages=_stages(detail.jobs, plan),
            dag=_dag(detail.jobs, plan),
            tests=TestSummary(
                counts=counts,
                failed=[c for c in cases if c.status in ("failed", "error")],
                jobs=names,
            ),
            artifacts=artifacts,
            images=images,
            parent_job_name=parent_job.name if parent_job is not None else None,
            can_retry=plan is not None
            and not statuses & {"pending", "running"}
            and bool(statuses & {"success", "failed", "canceled"}),
            can_cancel=bool(statuses & {"created", "pending", "scheduled", "running", "manual"})
            and detail.status not in FINISHED_STATUSES,
            version=version,
        )

    return page(request, build)
