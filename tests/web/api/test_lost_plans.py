"""A webhook's pipeline whose plan request was lost is sent to be planned again, from its
recorded delivery (GitLab's too, whose token is not kept), once whatever the number of workers
looking at once; a pipeline planned twice at once is planned once; on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import JSON, Text, cast, select, update

from tests.support.threads import run_at_once
from tests.web.api.conftest import RecordingDispatcher, register
from tests.web.api.test_hooks import push_of
from tests.web.hooks.conftest import delivery, payload
from tests.web.test_mirrors import Project
from web.db.deliveries import get_delivery
from web.db.models import Pipeline
from web.db.pipelines import get_pipeline_detail
from web.db.schemas import Provider
from web.hooks.lost_plans import PLAN_SENT_AGAIN, resend_lost_plans
from web.orchestration import Services, plan_recorded_pipeline

PIPELINE = "image: busybox:latest\ntest:\n  script: [echo hello]\n"
ZERO = "0" * 40


def _jobs(services: Services, pipeline_id: int) -> tuple[str, list[str]]:
    with services.database.transaction() as session:
        detail = get_pipeline_detail(session=session, pipeline_id=pipeline_id)
    assert detail is not None
    return detail.status, [job.name for job in detail.jobs]


def _lost_deliveries(
    client: TestClient, services: Services, project: Project, dispatcher: RecordingDispatcher
) -> dict[int, dict[str, Any]]:
    """A GitHub and a GitLab push whose plan requests never reach a worker: pipeline id ->
    the request the hook sent."""
    register(services, clone_url=str(project.origin))
    register(services, name="acme/lab", clone_url=str(project.origin), provider=Provider.GITLAB)
    sha = project.commit({".kapal.yml": PIPELINE})
    project.push()
    dispatcher.services = None  # requests are noted, and nothing plans them: lost
    sends = [("github", *delivery("github", push_of(sha), "push", delivery_id="gh-1"))]
    data = payload("gitlab_push")
    data.update(after=sha, checkout_sha=sha, before=ZERO, commits=[], total_commits_count=0)
    data["project"]["path_with_namespace"] = "acme/lab"
    sends.append(("gitlab", *delivery("gitlab", data, "Push Hook", delivery_id="gl-1")))
    for provider, headers, body in sends:
        answer = client.post(f"/hooks/{provider}", content=body, headers=headers)
        assert answer.status_code == 201, answer.text
    lost = dict(dispatcher.planned)
    assert len(lost) == 2
    dispatcher.planned.clear()
    return lost


def test_a_lost_plan_request_is_sent_again_from_the_recorded_delivery(
    client: TestClient, services: Services, project: Project, dispatcher: RecordingDispatcher
) -> None:
    lost = _lost_deliveries(client, services, project, dispatcher)
    assert resend_lost_plans(services=services, older_than=3600) == []  # not waited enough
    assert sorted(resend_lost_plans(services=services, older_than=0)) == sorted(lost)
    assert dict(dispatcher.planned) == lost  # the very requests the hook sent
    assert resend_lost_plans(services=services, older_than=0) == []  # once
    with services.database.transaction() as session:
        for provider, name in ((Provider.GITHUB, "gh-1"), (Provider.GITLAB, "gl-1")):
            kept = get_delivery(session=session, provider=provider, delivery_id=name)
            assert kept is not None and kept.outcome == PLAN_SENT_AGAIN
    for pipeline_id, request in dispatcher.planned:
        plan_recorded_pipeline(services=services, pipeline_id=pipeline_id, **request)
        assert _jobs(services, pipeline_id)[1] == ["test"]
    # a redelivery still answers with its pipeline
    headers, body = delivery("github", push_of(ZERO[:-1] + "1"), "push", delivery_id="gh-1")
    again = client.post("/hooks/github", content=body, headers=headers)
    assert again.status_code == 200 and again.json()["pipeline_id"] in lost


def test_workers_looking_at_once_send_each_lost_request_once(
    client: TestClient, services: Services, project: Project, dispatcher: RecordingDispatcher
) -> None:
    lost = _lost_deliveries(client, services, project, dispatcher)
    found = run_at_once(4, lambda _: resend_lost_plans(services=services, older_than=0))
    assert not [f for f in found if isinstance(f, BaseException)], found
    resent = [pipeline_id for ids in found if isinstance(ids, list) for pipeline_id in ids]
    assert sorted(resent) == sorted(lost)
    assert sorted(pipeline_id for pipeline_id, _ in dispatcher.planned) == sorted(lost)


def test_a_pipeline_planned_twice_at_once_is_planned_once(
    client: TestClient, services: Services, project: Project, dispatcher: RecordingDispatcher
) -> None:
    lost = _lost_deliveries(client, services, project, dispatcher)
    pipeline_id, request = next(iter(lost.items()))
    done = run_at_once(
        2, lambda _: plan_recorded_pipeline(services=services, pipeline_id=pipeline_id, **request)
    )
    assert not [d for d in done if isinstance(d, BaseException)], done
    assert _jobs(services, pipeline_id)[1] == ["test"]
    assert len(dispatcher.sent) == 1  # its one job sent to run once


def test_a_pipeline_the_orm_recorded_unplanned_is_found_too(
    client: TestClient, services: Services, project: Project, dispatcher: RecordingDispatcher
) -> None:
    lost = _lost_deliveries(client, services, project, dispatcher)
    with services.database.transaction() as session:
        for pipeline_id in lost:  # as `create_pipeline` stores an unset plan: JSON null
            session.execute(
                update(Pipeline).where(Pipeline.id == pipeline_id).values(plan=JSON.NULL)
            )
        stored = session.execute(
            select(cast(Pipeline.plan, Text)).where(Pipeline.id.in_(list(lost)))
        ).scalars()
        assert set(stored) == {"null"}
    assert sorted(resend_lost_plans(services=services, older_than=0)) == sorted(lost)
