"""Pipelines: record, read with jobs, list newest first with filters and cursors, statuses."""

from __future__ import annotations

import threading
import time

import pytest

from pipeline import Plan, TriggerContext, loads, plan
from tests.web.db.factories import make_jobs, make_pipeline, make_repository
from tests.web.service_support import sent_statements
from web.db.deliveries import finish_delivery, get_delivery, record_delivery
from web.db.encryption import SecretCipher
from web.db.jobs import list_jobs
from web.db.logs import append_log, read_log
from web.db.pipelines import (
    delete_pipeline,
    get_pipeline,
    get_pipeline_detail,
    get_pipeline_plan,
    latest_pipeline,
    list_pipelines,
    lock_pipeline,
    record_plan,
    set_pipeline_plan,
    set_pipeline_status,
)
from web.db.repos import delete_repository
from web.db.schemas import DeliveryCreate, Provider
from web.db.session import Database
from web.errors import InvalidCursorError, NotFoundError


def test_create_and_read(database: Database, cipher: SecretCipher) -> None:
    with database.transaction() as session:
        repo = make_repository(session, cipher)
        created = make_pipeline(
            session,
            repo.id,
            ref="feature/x",
            before_sha="b" * 40,
            message="Fix the thing\n\nbody",
            author_name="Ada",
            author_email="ada@example.com",
            delivery_id="d-1",
            variables={"DEPLOY": "1"},
            trigger={"changed_files": ["a.py"]},
        )
    assert created.status == "created"
    assert created.started_at is None and created.finished_at is None
    with database.transaction() as session:
        read = get_pipeline(session=session, pipeline_id=created.id)
    assert read == created
    assert read.variables == {"DEPLOY": "1"}
    assert read.trigger == {"changed_files": ["a.py"]}
    assert read.message == "Fix the thing\n\nbody"
    with database.transaction() as session:
        assert get_pipeline(session=session, pipeline_id=created.id + 100) is None


def test_a_pipeline_made_failed_is_finished(database: Database, cipher: SecretCipher) -> None:
    with database.transaction() as session:
        repo = make_repository(session, cipher)
        failed = make_pipeline(session, repo.id, status="failed", reason=".kapal.yml:3:1: bad")
    assert failed.finished_at is not None
    assert failed.reason == ".kapal.yml:3:1: bad"


def test_detail_lists_jobs_in_plan_order(database: Database, cipher: SecretCipher) -> None:
    with database.transaction() as session:
        repo = make_repository(session, cipher)
        pipeline = make_pipeline(session, repo.id)
        make_jobs(session, pipeline.id, "build", "test", "deploy")
    with database.transaction() as session:
        detail = get_pipeline_detail(session=session, pipeline_id=pipeline.id)
        assert get_pipeline_detail(session=session, pipeline_id=pipeline.id + 1) is None
    assert detail is not None
    assert [j.name for j in detail.jobs] == ["build", "test", "deploy"]
    assert detail.id == pipeline.id


def test_detail_is_read_in_one_statement_with_children_and_parent(
    database: Database, cipher: SecretCipher
) -> None:
    # one statement, one snapshot: a pipeline is never shown beside jobs of another moment
    with database.transaction() as session:
        repo = make_repository(session, cipher)
        parent = make_pipeline(session, repo.id)
        _, trigger = make_jobs(session, parent.id, "build", "trigger")
        child = make_pipeline(session, repo.id, source="parent_pipeline", parent_job_id=trigger.id)
        make_jobs(session, child.id, "inner")
    with database.transaction() as session, sent_statements(database) as sent:
        detail = get_pipeline_detail(session=session, pipeline_id=parent.id)
        child_detail = get_pipeline_detail(session=session, pipeline_id=child.id)
        empty = make_pipeline(session, repo.id)
        sent.clear()
        no_jobs = get_pipeline_detail(session=session, pipeline_id=empty.id)
        assert len(sent) == 1
    assert detail is not None and child_detail is not None and no_jobs is not None
    assert [(j.name, j.downstream_pipeline_id) for j in detail.jobs] == [
        ("build", None),
        ("trigger", child.id),
    ]
    assert detail.parent_pipeline_id is None
    assert [j.name for j in child_detail.jobs] == ["inner"]
    assert child_detail.parent_pipeline_id == parent.id
    assert (no_jobs.jobs, no_jobs.parent_pipeline_id) == ([], None)


def test_plan_is_kept_as_json(database: Database, cipher: SecretCipher) -> None:
    plan = {"stages": ["build", "test"], "jobs": [{"name": "a", "script": ["echo ü"]}]}
    with database.transaction() as session:
        repo = make_repository(session, cipher)
        pipeline = make_pipeline(session, repo.id)
        assert get_pipeline_plan(session=session, pipeline_id=pipeline.id) is None
        set_pipeline_plan(session=session, pipeline_id=pipeline.id, plan=plan)
    with database.transaction() as session:
        assert get_pipeline_plan(session=session, pipeline_id=pipeline.id) == plan
    with pytest.raises(NotFoundError), database.transaction() as session:
        set_pipeline_plan(session=session, pipeline_id=pipeline.id + 1, plan=plan)


def test_list_is_newest_first_with_cursor(database: Database, cipher: SecretCipher) -> None:
    with database.transaction() as session:
        repo = make_repository(session, cipher)
        ids = [make_pipeline(session, repo.id).id for _ in range(7)]
    seen: list[int] = []
    cursor = None
    pages = 0
    while True:
        with database.transaction() as session:
            page = list_pipelines(session=session, cursor=cursor, limit=3)
        pages += 1
        seen.extend(p.id for p in page.items)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == sorted(ids, reverse=True)
    assert pages == 3


def test_list_filters(database: Database, cipher: SecretCipher) -> None:
    with database.transaction() as session:
        shop = make_repository(session, cipher, "acme/shop")
        blog = make_repository(session, cipher, "acme/blog")
        a = make_pipeline(session, shop.id, ref="main")
        b = make_pipeline(session, shop.id, ref="dev", source="api")
        c = make_pipeline(session, blog.id, ref="main", status="failed")
    with database.transaction() as session:

        def ids(**filters: object) -> list[int]:
            return [p.id for p in list_pipelines(session=session, **filters).items]  # type: ignore[arg-type]

        assert ids() == [c.id, b.id, a.id]
        assert ids(repository_id=shop.id) == [b.id, a.id]
        assert ids(repository_id=shop.id, ref="main") == [a.id]
        assert ids(ref="main") == [c.id, a.id]
        assert ids(status="failed") == [c.id]
        assert ids(source="api") == [b.id]
        assert ids(source="push", status="created") == [a.id]
        latest = latest_pipeline(session=session, repository_id=shop.id, ref="main")
        assert latest is not None and latest.id == a.id
        assert latest_pipeline(session=session, repository_id=blog.id, ref="dev") is None


@pytest.mark.parametrize("cursor", ["abc", "-1", "1" * 30, "", "1 OR 1=1"])
def test_a_foreign_cursor_is_refused(database: Database, cursor: str) -> None:
    with pytest.raises(InvalidCursorError, match="cursor"), database.transaction() as session:
        list_pipelines(session=session, cursor=cursor)


def test_status_stamps_start_and_finish(database: Database, cipher: SecretCipher) -> None:
    with database.transaction() as session:
        repo = make_repository(session, cipher)
        pipeline = make_pipeline(session, repo.id)
    with database.transaction() as session:
        assert set_pipeline_status(session=session, pipeline_id=pipeline.id, status="running")
        running = get_pipeline(session=session, pipeline_id=pipeline.id)
    assert running is not None and running.status == "running"
    assert running.started_at is not None and running.finished_at is None
    with database.transaction() as session:
        assert set_pipeline_status(
            session=session, pipeline_id=pipeline.id, status="failed", reason="job a failed"
        )
        done = get_pipeline(session=session, pipeline_id=pipeline.id)
    assert done is not None and done.status == "failed" and done.reason == "job a failed"
    assert done.finished_at is not None and done.finished_at >= running.started_at
    # running again (a retry) keeps the first start and clears the finish
    with database.transaction() as session:
        set_pipeline_status(session=session, pipeline_id=pipeline.id, status="running")
        again = get_pipeline(session=session, pipeline_id=pipeline.id)
    assert again is not None
    assert again.started_at == running.started_at and again.finished_at is None


def test_status_compare_and_set(database: Database, cipher: SecretCipher) -> None:
    with database.transaction() as session:
        repo = make_repository(session, cipher)
        pipeline = make_pipeline(session, repo.id, status="running")
    with database.transaction() as session:
        assert not set_pipeline_status(
            session=session, pipeline_id=pipeline.id, status="success", only_from={"created"}
        )
        assert set_pipeline_status(
            session=session, pipeline_id=pipeline.id, status="canceled", only_from={"running"}
        )
        read = get_pipeline(session=session, pipeline_id=pipeline.id)
    assert read is not None and read.status == "canceled"
    with pytest.raises(NotFoundError), database.transaction() as session:
        set_pipeline_status(session=session, pipeline_id=pipeline.id + 1, status="running")


def test_lock_pipeline_serialises_advancers(database: Database, cipher: SecretCipher) -> None:
    with database.transaction() as session:
        repo = make_repository(session, cipher)
        pipeline = make_pipeline(session, repo.id)
    events: list[str] = []
    first_holds = threading.Event()

    def first() -> None:
        with database.transaction() as session:
            lock_pipeline(session=session, pipeline_id=pipeline.id)
            first_holds.set()
            time.sleep(0.5)  # the second must wait all this while
            events.append("first releases")

    def second() -> None:
        first_holds.wait()
        with database.transaction() as session:
            lock_pipeline(session=session, pipeline_id=pipeline.id)
            events.append("second holds")

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert events == ["first releases", "second holds"]
    with pytest.raises(NotFoundError), database.transaction() as session:
        lock_pipeline(session=session, pipeline_id=pipeline.id + 1)


def test_deleting_a_repository_deletes_its_pipelines(
    database: Database, cipher: SecretCipher
) -> None:
    with database.transaction() as session:
        repo = make_repository(session, cipher)
        pipeline = make_pipeline(session, repo.id)
        make_jobs(session, pipeline.id, "a")
    with database.transaction() as session:
        delete_repository(session=session, repository_id=repo.id)
    with database.transaction() as session:
        assert get_pipeline(session=session, pipeline_id=pipeline.id) is None


PIPELINE_FILE = """
stages: [build, test, deploy]
build:
  stage: build
  image: python:3.12
  script: [make]
lint:
  stage: test
  allow_failure: true
  script: [make lint]
docs:
  stage: test
  rules:
    - if: $CI_COMMIT_BRANCH == "docs"
  script: [make docs]
deploy:
  stage: deploy
  when: manual
  script: [make deploy]
"""


def test_record_plan_stores_the_plan_and_its_jobs(database: Database, cipher: SecretCipher) -> None:
    the_plan = plan(
        loads(PIPELINE_FILE, ".kapal.yml"), TriggerContext(source="push", branch="main")
    )
    with database.transaction() as session:
        repo = make_repository(session, cipher)
        pipeline = make_pipeline(session, repo.id)
        recorded = record_plan(session=session, pipeline_id=pipeline.id, plan=the_plan)
    with database.transaction() as session:
        stored = get_pipeline_plan(session=session, pipeline_id=pipeline.id)
        jobs = list_jobs(session=session, pipeline_id=pipeline.id)
    assert stored is not None and Plan.from_dict(stored) == the_plan
    assert jobs == recorded
    table = [
        (j.name, j.stage, j.position, j.status, j.when, j.allow_failure, j.image) for j in jobs
    ]
    assert table == [
        ("build", "build", 0, "created", "on_success", False, "python:3.12"),
        ("lint", "test", 1, "created", "on_success", True, None),
        ("docs", "test", 2, "skipped", "on_success", False, None),
        ("deploy", "deploy", 3, "created", "manual", True, None),  # GitLab: manual may fail
    ]
    assert jobs[2].reason  # the planner's words for why it is left out


def test_delete_pipeline_takes_its_jobs_and_logs(database: Database, cipher: SecretCipher) -> None:
    with database.transaction() as session:
        repo = make_repository(session, cipher)
        pipeline = make_pipeline(session, repo.id)
        kept = make_pipeline(session, repo.id)
        (job,) = make_jobs(session, pipeline.id, "a")
        append_log(session=session, job_id=job.id, lines=["x"])
        recorded = record_delivery(
            session=session,
            delivery=DeliveryCreate(
                provider=Provider.GITHUB, delivery_id="d", event="push", payload=b"{}"
            ),
        )
        finish_delivery(
            session=session, id=recorded.id, outcome="pipeline", pipeline_id=pipeline.id
        )
    with database.transaction() as session:
        assert delete_pipeline(session=session, pipeline_id=pipeline.id)
        assert not delete_pipeline(session=session, pipeline_id=pipeline.id)
    with database.transaction() as session:
        assert get_pipeline(session=session, pipeline_id=pipeline.id) is None
        assert get_pipeline(session=session, pipeline_id=kept.id) is not None
        assert list_jobs(session=session, pipeline_id=pipeline.id) == []
        assert read_log(session=session, job_id=job.id).lines == []
        delivery = get_delivery(session=session, provider=Provider.GITHUB, delivery_id="d")
    assert delivery is not None and delivery.pipeline_id is None
