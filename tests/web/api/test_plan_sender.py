"""Plan requests leave a web process in batches: every webhook's pipeline is sent to be planned
exactly once, several to a `plan_pipelines` message (through a real Redis), which a worker
plans (one) or sends on one by one (several); with the broker down they are planned here."""

from __future__ import annotations

import base64
import dataclasses
import json
import shutil
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient
from pydantic import SecretStr

from tests.web.api.conftest import register
from tests.web.api.test_hooks import push_of
from tests.web.api.test_serve import sockets_free_port
from tests.web.hooks.conftest import delivery
from tests.web.test_mirrors import Project
from web.app import create_app
from web.db.pipelines import get_pipeline_detail
from web.settings import Settings
from web.tasks import PLAN_PIPELINE, PLAN_PIPELINES, CeleryDispatcher, KapalCelery, create_celery

# planned, and nothing to run: a manual job
PIPELINE = "image: busybox:latest\nship:\n  script: [echo ship]\n  when: manual\n"


def _app(tmp_path: Path, migrated_sqlite: Path, broker_url: str, queue: str) -> KapalCelery:
    shutil.copyfile(migrated_sqlite, tmp_path / "kapal.db")
    settings = Settings(data_dir=tmp_path, secret_key=SecretStr("k"), broker_url=broker_url)
    app = create_celery(settings)
    app.services = dataclasses.replace(app.services, dispatcher=CeleryDispatcher(app, queue))
    return app


@pytest.fixture
def queue(redis_url: str) -> Iterator[str]:
    """A queue of this test's own on the session's Redis, emptied afterwards."""
    name = f"plans-{uuid.uuid4().hex}"
    yield name
    redis.Redis.from_url(redis_url).delete(name)


def _messages(redis_url: str, queue: str) -> list[tuple[str, list[Any]]]:
    """(task name, args) of each message waiting in `queue`, oldest first."""
    found = []
    for raw in reversed(redis.Redis.from_url(redis_url).lrange(queue, 0, -1)):
        message = json.loads(raw)
        args, _kwargs, _embed = json.loads(base64.b64decode(message["body"]))
        found.append((message["headers"]["task"], args))
    return found


def _deliver(app: KapalCelery, project: Project, count: int) -> list[int]:
    """`count` signed pushes at once through the HTTP app; the pipelines they made."""
    register(app.services, clone_url=str(project.origin))
    sha = project.commit({".kapal.yml": PIPELINE})
    project.push()
    with TestClient(create_app(app.services.settings, services=app.services)) as client:

        def post(_: int) -> int:
            headers, body = delivery("github", push_of(sha), "push")
            answer = client.post("/hooks/github", content=body, headers=headers)
            assert answer.status_code == 201, answer.text
            pipeline_id: int = answer.json()["pipeline_id"]
            return pipeline_id

        with ThreadPoolExecutor(max_workers=count) as pool:
            return list(pool.map(post, range(count)))


def _planned(app: KapalCelery, pipeline_id: int) -> list[str]:
    with app.services.database.transaction() as session:
        detail = get_pipeline_detail(session=session, pipeline_id=pipeline_id)
    assert detail is not None
    return [job.name for job in detail.jobs]


def test_a_burst_of_webhooks_is_sent_to_be_planned_once_each_in_few_messages(
    tmp_path: Path, migrated_sqlite: Path, redis_url: str, queue: str
) -> None:
    app = _app(tmp_path, migrated_sqlite, redis_url, queue)
    try:
        made = _deliver(app, Project(tmp_path / "repos"), 12)
        app.send_waiting()
        sent = _messages(redis_url, queue)
        assert {task for task, _ in sent} == {PLAN_PIPELINES}
        batches = [args[0] for _, args in sent]
        assert sorted(pipeline_id for batch in batches for pipeline_id, _ in batch) == sorted(made)
        assert 1 <= len(batches) <= len(made)
        # a worker: a batch of several is sent on one by one, a batch of one is planned
        redis.Redis.from_url(redis_url).delete(queue)
        everything = [item for batch in batches for item in batch]
        app.tasks[PLAN_PIPELINES](everything[1:])  # the task run here, as a worker runs it
        app.tasks[PLAN_PIPELINES](everything[:1])
        assert _planned(app, everything[0][0]) == ["ship"]
        sent_on = _messages(redis_url, queue)
        assert [task for task, _ in sent_on] == [PLAN_PIPELINE] * (len(made) - 1)
        assert [args for _, args in sent_on] == everything[1:]
        for _, args in sent_on:
            app.tasks[PLAN_PIPELINE](*args)
        assert all(_planned(app, pipeline_id) == ["ship"] for pipeline_id in made)
    finally:
        app.send_waiting()
        app.services.database.dispose()


def test_with_the_broker_down_the_web_process_plans_them_itself(
    tmp_path: Path, migrated_sqlite: Path
) -> None:
    with sockets_free_port() as port:
        app = _app(tmp_path, migrated_sqlite, f"redis://127.0.0.1:{port}/0", "plans")
        try:
            made = _deliver(app, Project(tmp_path / "repos"), 3)
            app.send_waiting()
            assert all(_planned(app, pipeline_id) == ["ship"] for pipeline_id in made)
        finally:
            app.services.database.dispose()
