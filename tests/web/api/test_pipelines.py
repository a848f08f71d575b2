"""Pipelines and jobs through the API: run by hand, list with filters and cursors, read,
cancel, retry, play, logs (text and SSE), test cases, metrics; and who may do it."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from tests.web.api.conftest import AUTH, RecordingDispatcher, add_pipeline, error_of, register
from tests.web.test_mirrors import Project
from web.db.jobs import set_job_status
from web.db.logs import append_log
from web.db.results import add_test_cases
from web.db.schemas import MAX_REF_LENGTH, Scope, TestCaseCreate
from web.db.tokens import create_token
from web.orchestration import Services

PIPELINE = """
image: busybox:latest
build:
  script: [echo build]
deploy:
  script: [echo deploy]
  when: manual
"""


def token(
    services: Services, name: str, *scopes: Scope, repository_id: int | None = None
) -> dict[str, str]:
    with services.database.transaction() as session:
        made = create_token(session=session, name=name, scopes=scopes, repository_id=repository_id)
    return {"Authorization": f"Bearer {made.plaintext}"}


def test_run_a_pipeline_by_hand_then_play_its_manual_job(
    client: TestClient, services: Services, project: Project, dispatcher: RecordingDispatcher
) -> None:
    repo = register(services, clone_url=str(project.origin))
    sha = project.commit({".kapal.yml": PIPELINE})
    project.push()
    made = client.post(
        f"/api/v1/repos/{repo.id}/pipelines",
        json={"ref": "main", "variables": {"X": "1"}},
        headers=AUTH,
    )
    assert made.status_code == 201, made.text
    assert made.json()["sha"] == sha
    assert made.json()["source"] == "api"
    detail = client.get(f"/api/v1/pipelines/{made.json()['id']}").json()
    jobs = {j["name"]: j for j in detail["jobs"]}
    assert jobs["build"]["status"] == "pending"
    assert jobs["deploy"]["status"] == "manual"
    assert dispatcher.sent == [jobs["build"]["id"]]
    played = client.post(f"/api/v1/jobs/{jobs['deploy']['id']}/play", headers=AUTH)
    assert played.status_code == 200, played.text
    assert played.json()["status"] == "pending"
    assert dispatcher.sent[-1] == jobs["deploy"]["id"]
    twice = client.post(f"/api/v1/jobs/{jobs['deploy']['id']}/play", headers=AUTH)
    assert twice.status_code == 409
    assert "manual" in error_of(twice)


def test_an_unknown_ref_is_422_and_an_unknown_repository_404(
    client: TestClient, services: Services, project: Project
) -> None:
    repo = register(services, clone_url=str(project.origin))
    project.commit({".kapal.yml": PIPELINE})
    project.push()
    unknown = client.post(f"/api/v1/repos/{repo.id}/pipelines", json={"ref": "nope"}, headers=AUTH)
    assert unknown.status_code == 422
    assert "nope" in error_of(unknown)
    missing = client.post("/api/v1/repos/999/pipelines", json={"ref": "main"}, headers=AUTH)
    assert missing.status_code == 404
    error_of(missing)


def test_a_ref_as_long_as_a_push_may_bring_is_listed_and_run_by_hand(
    client: TestClient, services: Services, project: Project
) -> None:
    # a push records refs of up to 1024 characters; the API filters and runs them alike
    long_ref = "feature/" + "x" * 300
    repo = register(services, clone_url=str(project.origin))
    pipeline_id, _ = add_pipeline(services, repo.id, ref=long_ref)
    listed = client.get("/api/v1/pipelines", params={"ref": long_ref}).json()
    assert [p["id"] for p in listed["items"]] == [pipeline_id]
    unknown = client.post(
        f"/api/v1/repos/{repo.id}/pipelines", json={"ref": long_ref}, headers=AUTH
    )
    assert unknown.status_code == 422  # no such branch in the repository: not a length error
    assert long_ref in error_of(unknown)
    too_long = "x" * (MAX_REF_LENGTH + 1)
    assert client.get("/api/v1/pipelines", params={"ref": too_long}).status_code == 422
    refused = client.post(
        f"/api/v1/repos/{repo.id}/pipelines", json={"ref": too_long}, headers=AUTH
    )
    assert refused.status_code == 422
    assert "1024" in error_of(refused)


def test_list_filters_and_pages_with_cursors(client: TestClient, services: Services) -> None:
    shop = register(services)
    other = register(services, name="acme/api")
    ids = [add_pipeline(services, shop.id, ref="main" if i % 2 else "dev")[0] for i in range(7)]
    add_pipeline(services, other.id, status="failed", source="api")
    seen: list[int] = []
    cursor = None
    while True:
        params = {"repo": "acme/shop", "limit": 3} | ({"cursor": cursor} if cursor else {})
        page = client.get("/api/v1/pipelines", params=params).json()
        assert set(page) == {"items", "next_cursor"}
        seen += [p["id"] for p in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(ids, reverse=True)
    by_id = client.get("/api/v1/pipelines", params={"repo": str(shop.id), "ref": "main"}).json()
    assert [p["id"] for p in by_id["items"]] == [i for i in reversed(ids) if ids.index(i) % 2]
    failed = client.get("/api/v1/pipelines", params={"status": "failed", "source": "api"}).json()
    assert [p["repository_id"] for p in failed["items"]] == [other.id]
    bad = client.get("/api/v1/pipelines", params={"cursor": "abc"})
    assert bad.status_code == 400
    assert "cursor" in error_of(bad)
    unknown = client.get("/api/v1/pipelines", params={"repo": "nobody/none"})
    assert unknown.status_code == 404


def test_cancel_and_retry(client: TestClient, services: Services) -> None:
    repo = register(services)
    pipeline_id, (first, _second) = add_pipeline(
        services, repo.id, jobs={"a": "running", "b": "created"}
    )
    canceled = client.post(f"/api/v1/pipelines/{pipeline_id}/cancel", headers=AUTH)
    assert canceled.status_code == 200, canceled.text
    jobs = {j["name"]: j for j in canceled.json()["jobs"]}
    assert jobs["a"]["cancel_requested"] is True
    assert jobs["b"]["status"] == "canceled"
    with services.database.transaction() as session:
        set_job_status(session=session, job_id=first, status="failed", only_from={"running"})
    job = client.post(f"/api/v1/jobs/{first}/retry", headers=AUTH)
    assert job.status_code == 200, job.text
    assert job.json()["attempt"] == 2
    again = client.post(f"/api/v1/jobs/{job.json()['id']}/cancel", headers=AUTH)
    assert again.status_code == 200
    assert again.json()["status"] == "canceled"
    nothing = client.post(f"/api/v1/pipelines/{pipeline_id}/retry", headers=AUTH)
    assert nothing.status_code == 409  # recorded without a plan: nothing it could run again
    assert "no plan" in error_of(nothing)
    assert client.post("/api/v1/pipelines/999/cancel", headers=AUTH).status_code == 404
    assert client.post("/api/v1/jobs/999/play", headers=AUTH).status_code == 404


def test_writes_need_a_token_with_the_right_scope(client: TestClient, services: Services) -> None:
    repo = register(services)
    other = register(services, name="acme/api")
    pipeline_id, (job_id,) = add_pipeline(services, repo.id, jobs={"a": "created"})
    none = client.post(f"/api/v1/pipelines/{pipeline_id}/cancel")
    assert none.status_code == 401
    assert none.headers["www-authenticate"] == "Bearer"
    assert "Authorization: Bearer" in error_of(none)
    bogus = client.post(
        f"/api/v1/pipelines/{pipeline_id}/cancel", headers={"Authorization": "Bearer nope"}
    )
    assert bogus.status_code == 401
    basic = client.post(
        f"/api/v1/pipelines/{pipeline_id}/cancel", headers={"Authorization": "Basic eDp5"}
    )
    assert basic.status_code == 401
    reader = token(services, "reader", Scope.READ)
    assert client.post(f"/api/v1/pipelines/{pipeline_id}/cancel", headers=reader).status_code == 403
    elsewhere = token(services, "other-repo", Scope.WRITE, repository_id=other.id)
    denied = client.post(f"/api/v1/jobs/{job_id}/cancel", headers=elsewhere)
    assert denied.status_code == 403
    assert "write" in error_of(denied)
    assert client.get(f"/api/v1/pipelines/{pipeline_id}", headers=elsewhere).status_code == 200
    writer = token(services, "writer", Scope.WRITE, repository_id=repo.id)
    assert client.post(f"/api/v1/jobs/{job_id}/cancel", headers=writer).status_code == 200
    assert client.post("/api/v1/repos", json={}, headers=writer).status_code == 403
    assert client.post("/api/v1/tokens", json={"name": "x"}, headers=writer).status_code == 403


def test_tokens_route_makes_a_token_that_works(client: TestClient, services: Services) -> None:
    repo = register(services)
    made = client.post("/api/v1/tokens", json={"name": "ci", "scopes": ["write"]}, headers=AUTH)
    assert made.status_code == 201, made.text
    plaintext = made.json()["token"]
    headers = {"Authorization": f"Bearer {plaintext}"}
    pipeline_id, _ = add_pipeline(services, repo.id)
    assert (
        client.post(f"/api/v1/pipelines/{pipeline_id}/cancel", headers=headers).status_code == 200
    )
    listed = client.get("/api/v1/tokens", headers=AUTH)
    assert [t["name"] for t in listed.json()] == ["ci"]
    assert plaintext not in listed.text
    token_id = made.json()["description"]["id"]
    assert client.delete(f"/api/v1/tokens/{token_id}", headers=AUTH).status_code == 204
    assert (
        client.post(f"/api/v1/pipelines/{pipeline_id}/cancel", headers=headers).status_code == 401
    )


def test_reads_can_need_a_token(services: Services, settings: object) -> None:
    from tests.web.api.conftest import TestClient as Client
    from web.app import create_app

    private = settings.model_copy(update={"public_reads": False})  # type: ignore[attr-defined]
    repo = register(services)
    pipeline_id, _ = add_pipeline(services, repo.id)
    with Client(create_app(private, services=services)) as client:
        assert client.get(f"/api/v1/pipelines/{pipeline_id}").status_code == 401
        assert client.get("/api/v1/pipelines").status_code == 401
        assert client.get(f"/api/v1/pipelines/{pipeline_id}", headers=AUTH).status_code == 200
        assert client.get("/healthz").status_code == 200
        assert client.get("/metrics").status_code == 401
        assert client.get("/metrics", headers=AUTH).status_code == 200


def test_log_text_from_an_offset(client: TestClient, services: Services) -> None:
    repo = register(services)
    _, (job_id,) = add_pipeline(services, repo.id, jobs={"a": "running"})
    with services.database.transaction() as session:
        append_log(session=session, job_id=job_id, lines=[f"line {i}" for i in range(5)])
    whole = client.get(f"/api/v1/jobs/{job_id}/log")
    assert whole.status_code == 200
    assert whole.text == "".join(f"line {i}\n" for i in range(5))
    assert whole.headers["x-kapal-next-offset"] == "5"
    assert whole.headers["x-kapal-job-status"] == "running"
    tail = client.get(f"/api/v1/jobs/{job_id}/log", params={"offset": 3})
    assert tail.text == "line 3\nline 4\n"
    assert client.get("/api/v1/jobs/999/log").status_code == 404
    assert client.get(f"/api/v1/jobs/{job_id}/log", params={"offset": -1}).status_code == 422


def test_log_as_server_sent_events_of_a_finished_job(
    client: TestClient, services: Services
) -> None:
    repo = register(services)
    _, (job_id,) = add_pipeline(services, repo.id, jobs={"a": "running"})
    with services.database.transaction() as session:
        append_log(session=session, job_id=job_id, lines=["one", "two", "three"])
        set_job_status(
            session=session, job_id=job_id, status="failed", exit_code=3, reason="exit 3"
        )
    events = sse(
        client.get(f"/api/v1/jobs/{job_id}/log", headers={"Accept": "text/event-stream"}).text
    )
    assert events[:3] == [("1", None, "one"), ("2", None, "two"), ("3", None, "three")]
    _ident, name, data = events[3]
    assert name == "end"
    assert json.loads(data) == {"status": "failed", "exit_code": 3, "reason": "exit 3"}
    resumed = sse(
        client.get(
            f"/api/v1/jobs/{job_id}/log",
            headers={"Accept": "text/event-stream", "Last-Event-ID": "2"},
        ).text
    )
    assert [e[2] for e in resumed if e[1] is None] == ["three"]
    for wrong in ("x", "-1", str(2**40), "1" * 30):
        bad = client.get(
            f"/api/v1/jobs/{job_id}/log",
            headers={"Accept": "text/event-stream", "Last-Event-ID": wrong},
        )
        assert bad.status_code == 400, wrong
        assert "Last-Event-ID" in error_of(bad)


def sse(text: str) -> list[tuple[str | None, str | None, str]]:
    """(id, event, data) of each event in an SSE stream (comments and pings left out)."""
    events = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        ident = name = None
        data: list[str] = []
        for line in block.split("\n"):
            field, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if field == "id":
                ident = value
            elif field == "event":
                name = value
            elif field == "data":
                data.append(value)
        if data:
            events.append((ident, name, "\n".join(data)))
    return events


def test_tests_report(client: TestClient, services: Services) -> None:
    repo = register(services)
    pipeline_id, (job_id,) = add_pipeline(services, repo.id, jobs={"a": "success"})
    with services.database.transaction() as session:
        add_test_cases(
            session=session,
            job_id=job_id,
            cases=[
                TestCaseCreate(suite="s", name="ok", status="passed", duration=0.5),
                TestCaseCreate(suite="s", name="bad", status="failed", message="boom"),
            ],
        )
    report = client.get(f"/api/v1/pipelines/{pipeline_id}/tests").json()
    assert report["counts"] == {"passed": 1, "failed": 1, "error": 0, "skipped": 0}
    assert [(c["name"], c["message"]) for c in report["cases"]] == [("ok", ""), ("bad", "boom")]


def test_health_metrics_and_openapi(client: TestClient, services: Services) -> None:
    repo = register(services)
    add_pipeline(services, repo.id, status="running", jobs={"a": "pending", "b": "pending"})
    _, (done,) = add_pipeline(services, repo.id, status="success", jobs={"c": "pending"})
    with services.database.transaction() as session:
        set_job_status(session=session, job_id=done, status="running")
        set_job_status(session=session, job_id=done, status="success")
    assert client.get("/healthz").json()["status"] == "ok"
    metrics = client.get("/metrics")
    assert metrics.headers["content-type"].startswith("text/plain")
    lines = metrics.text.splitlines()
    assert 'kapal_pipelines{status="running"} 1' in lines
    assert 'kapal_pipelines{status="success"} 1' in lines
    assert "kapal_queue_depth 2" in lines
    assert 'kapal_job_duration_seconds_count{status="success"} 1' in lines
    spec = client.get("/openapi.json").json()
    assert "/hooks/github" in spec["paths"]
    assert "/api/v1/jobs/{job_id}/log" in spec["paths"]
    unknown = client.get("/api/v1/nothing")
    assert unknown.status_code == 404
    assert "openapi" in error_of(unknown)


@pytest.mark.parametrize("path", ["/api/v1/pipelines/abc", "/api/v1/jobs/1e9999/log"])
def test_bad_path_parameters_are_422(client: TestClient, path: str) -> None:
    answer = client.get(path)
    assert answer.status_code == 422
    error_of(answer)


RETRY_PIPELINE = """
image: busybox:latest
stages: [build, test]
build:
  stage: build
  script: [echo build]
test:
  stage: test
  script: [echo test]
"""


def test_retry_a_failed_pipeline_and_read_its_jobs(
    client: TestClient, services: Services, project: Project, dispatcher: RecordingDispatcher
) -> None:
    from runner.engine.recorder import JobStatus
    from web.db.jobs import claim_job
    from web.orchestration import JobEnd, finish_job

    repo = register(services, clone_url=str(project.origin))
    project.commit({".kapal.yml": RETRY_PIPELINE})
    project.push()
    made = client.post(f"/api/v1/repos/{repo.id}/pipelines", json={"ref": "main"}, headers=AUTH)
    pipeline_id = made.json()["id"]
    build = dispatcher.sent[0]
    with services.database.transaction() as session:
        assert claim_job(session=session, job_id=build, worker="test-worker")
    finish_job(services=services, job_id=build, end=JobEnd(JobStatus.FAILED, 2, "exit 2"))
    job = client.get(f"/api/v1/jobs/{build}").json()
    assert (job["status"], job["exit_code"], job["worker"]) == ("failed", 2, "test-worker")
    assert job["repository_id"] == repo.id
    failed = client.get(f"/api/v1/pipelines/{pipeline_id}").json()
    assert failed["status"] == "failed"
    assert {j["name"]: j["status"] for j in failed["jobs"]}["test"] == "skipped"
    retried = client.post(f"/api/v1/pipelines/{pipeline_id}/retry", headers=AUTH)
    assert retried.status_code == 200, retried.text
    current = {j["name"]: j for j in retried.json()["jobs"] if not j["retried"]}
    assert current["build"]["attempt"] == 2
    assert current["build"]["status"] == "pending"
    assert current["test"]["status"] == "created"
    assert dispatcher.sent[-1] == current["build"]["id"]
    busy = client.post(f"/api/v1/pipelines/{pipeline_id}/retry", headers=AUTH)
    assert busy.status_code == 409
    assert "still runs" in error_of(busy)
    assert client.get("/api/v1/jobs/999").status_code == 404


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/pipelines/2147483648",
        "/api/v1/jobs/9223372036854775807",
        "/api/v1/repos/99999999999999999999/secrets",
        "/api/v1/jobs/0/log",
    ],
)
def test_ids_out_of_range_are_422_not_a_database_error(client: TestClient, path: str) -> None:
    answer = client.get(path, headers=AUTH)
    assert answer.status_code == 422
    assert "less than or equal" in error_of(answer) or "greater than" in error_of(answer)


def test_huge_numbers_in_queries_are_not_database_errors(
    client: TestClient, services: Services
) -> None:
    repo = register(services)
    pipeline_id, _ = add_pipeline(services, repo.id)
    page = client.get("/api/v1/pipelines", params={"cursor": str(2**40)}).json()
    assert [p["id"] for p in page["items"]] == [pipeline_id]
    missing = client.get("/api/v1/pipelines", params={"repo": str(2**40)})
    assert missing.status_code == 404
    made = client.post("/api/v1/tokens", json={"name": "t", "repository_id": 2**40}, headers=AUTH)
    assert made.status_code == 422
    unknown = client.post("/api/v1/tokens", json={"name": "t", "repository_id": 77}, headers=AUTH)
    assert unknown.status_code == 404
    assert "repository 77 does not exist" in error_of(unknown)
