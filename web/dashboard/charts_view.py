"""The charts page: a branch's pipeline durations and pass rate, a repository's slowest jobs and
flakiest tests."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Request
from fastapi.responses import Response
from markupsafe import Markup

from web.api.auth import Access
from web.dashboard import charts, trends
from web.dashboard.display import duration
from web.dashboard.pages import Filter, blank, database_of, page
from web.dashboard.rendering import render
from web.db.repos import list_repositories
from web.db.schemas import Scope
from web.errors import NotFoundError

CHART_PIPELINES = 30
CHART_DAYS = 14

router = APIRouter(include_in_schema=False)


@router.get("/charts")
def charts_page(request: Request, repo: Filter = None, branch: Filter = None) -> Response:
    """A repository's trends: durations and pass rate of a branch, slowest jobs, flaky tests."""
    database = database_of(request)

    def build(access: Access) -> Response:
        with database.transaction() as session:
            repositories = list_repositories(session=session)
            chosen = next((r for r in repositories if r.name == blank(repo)), None)
            if blank(repo) is not None and chosen is None:
                raise NotFoundError(f"no repository named {repo!r}")
            repository = chosen or (repositories[0] if repositories else None)
            if repository is None:
                access.need(Scope.READ)
                return render(
                    request, "charts.html", viewer=access, section="charts", repository=None
                )
            access.need(Scope.READ, repository.id)
            ref = blank(branch) or repository.default_branch
            runs = trends.recent_durations(
                session=session, repository_id=repository.id, ref=ref, limit=CHART_PIPELINES
            )
            days = trends.pass_rate_by_day(
                session=session,
                repository_id=repository.id,
                ref=ref,
                days=CHART_DAYS,
                today=datetime.now(UTC),
            )
            slow = trends.slowest_jobs(session=session, repository_id=repository.id)
            flaky = trends.flakiest_tests(session=session, repository_id=repository.id)
        return render(
            request,
            "charts.html",
            viewer=access,
            section="charts",
            repositories=repositories,
            repository=repository,
            branch=ref,
            days=CHART_DAYS,
            durations_count=len(runs),
            durations=Markup(  # drawn by kapal, every label escaped
                charts.column_chart(
                    [
                        charts.Bar(
                            value=run.seconds,
                            label=f"#{run.id}",
                            status=run.status,
                            href=f"/pipelines/{run.id}",
                            title=f"#{run.id} {run.status}: {duration(run.seconds)}",
                        )
                        for run in runs
                    ],
                    label=f"durations of the last pipelines of {ref}",
                )
            ),
            pass_rate=Markup(
                charts.rate_chart(
                    [(d.day.strftime("%m-%d"), d.rate if d.total else None) for d in days],
                    label=f"pass rate of {ref} by day",
                )
            ),
            slowest_count=len(slow),
            slowest=Markup(
                charts.ranked_chart(
                    [
                        (j.name, j.mean, f"(longest {duration(j.longest)}, {j.runs} runs)")
                        for j in slow
                    ],
                    label="slowest jobs",
                )
            ),
            flaky_count=len(flaky),
            flaky=Markup(
                charts.ranked_chart(
                    [
                        (f"{t.suite} {t.name}", t.failed, f"failed, {t.passed} passed")
                        for t in flaky
                    ],
                    label="flakiest tests",
                    unit="",
                )
            ),
        )

    return page(request, build)
