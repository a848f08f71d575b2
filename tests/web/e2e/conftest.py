"""A whole kapal service in the test process: a migrated database, a broker, a real Celery
worker (embedded, in a thread) and the real runtime, on the embedded default (SQLite + kombu's
SQLAlchemy transport) and on PostgreSQL + Redis; and a local bare git repository to push to."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from pydantic import SecretStr

from runner.images import ImageStore
from tests.web.conftest import empty_postgres
from tests.web.service_support import register
from tests.web.test_mirrors import Project
from web.db.encryption import SecretCipher
from web.db.pipelines import get_pipeline_detail
from web.db.schemas import PipelineDetail, RepositoryRead
from web.orchestration import Services
from web.settings import Settings
from web.tasks import EmbeddedWorker, KapalCelery, create_celery, start_embedded_worker

FINISHED = frozenset({"success", "failed", "canceled", "skipped"})


@pytest.fixture
def project(tmp_path: Path) -> Project:
    """A bare origin repository and a working clone that commits and pushes to it."""
    return Project(tmp_path / "repos")


@pytest.fixture(params=["embedded", "postgres-redis"])
def service_settings(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    migrated_sqlite: Path,
    image_store: ImageStore,
    busybox_image: str,
) -> Settings:
    """Settings of a service in its own data dir (sharing the session's image store): SQLite
    and the SQLite broker, then PostgreSQL and a flushed Redis."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "images").symlink_to(image_store.root)
    if request.param == "embedded":
        database = data_dir / "kapal.db"
        shutil.copyfile(migrated_sqlite, database)
        return Settings(data_dir=data_dir, secret_key=SecretStr("test key"), log_flush_interval=0.1)
    database_url: str = request.getfixturevalue("database_url_postgres")
    redis_url: str = request.getfixturevalue("redis_url")
    redis.Redis.from_url(redis_url).flushdb()
    return Settings(
        data_dir=data_dir,
        secret_key=SecretStr("test key"),
        database_url=database_url,
        broker_url=redis_url,
        log_flush_interval=0.1,
    )


@pytest.fixture
def database_url_postgres(request: pytest.FixtureRequest) -> Iterator[str]:
    """The session's migrated PostgreSQL database, emptied after the test."""
    url: str = request.getfixturevalue("migrated_postgres")
    try:
        yield url
    finally:
        empty_postgres(url)


@pytest.fixture
def celery_app(service_settings: Settings) -> Iterator[KapalCelery]:
    """kapal's Celery app on the service's settings (its database disposed of afterwards)."""
    app = create_celery(service_settings)
    try:
        yield app
    finally:
        app.services.database.dispose()


@pytest.fixture
def services(celery_app: KapalCelery) -> Services:
    """The service layer the HTTP side uses, sending jobs through the Celery app."""
    return celery_app.services


@pytest.fixture
def worker(service_settings: Settings, celery_app: KapalCelery) -> Iterator[EmbeddedWorker]:
    """A real Celery worker in a thread of the test process."""
    started = start_embedded_worker(service_settings, app=celery_app, concurrency=2)
    try:
        yield started
    finally:
        started.stop(timeout=60)


@pytest.fixture
def repository(services: Services, project: Project) -> RepositoryRead:
    """`acme/shop` registered with the local bare repository as its clone URL."""
    return register(services, project)


def wait_for(
    services: Services,
    pipeline_id: int,
    until: Callable[[PipelineDetail], bool] = lambda p: p.status in FINISHED,
    timeout: float = 120.0,
) -> PipelineDetail:
    """Poll the pipeline until `until` holds (by default: it finished); fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        with services.database.transaction() as session:
            detail = get_pipeline_detail(session=session, pipeline_id=pipeline_id)
        assert detail is not None
        if until(detail):
            return detail
        if time.monotonic() > deadline:
            raise AssertionError(f"pipeline {pipeline_id} still {detail.status}: {detail.jobs}")
        time.sleep(0.05)


def cipher_of(services: Services) -> SecretCipher:
    """The services' cipher."""
    return services.cipher()
