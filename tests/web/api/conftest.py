"""The web application on a migrated database (SQLite, then PostgreSQL), through TestClient.

Jobs the service layer makes pending go to `RecordingDispatcher` (the queue is the layer above
what these tests check); tests that need jobs to run use the end-to-end fixtures instead.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from starlette.exceptions import StarletteDeprecationWarning

with warnings.catch_warnings():
    # Starlette's TestClient prefers httpx2; kapal uses httpx, which Starlette still takes
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

from tests.web.test_mirrors import Project
from web.app import create_app
from web.db.jobs import create_jobs
from web.db.pipelines import create_pipeline
from web.db.repos import create_repository
from web.db.schemas import JobCreate, PipelineCreate, Provider, RepositoryCreate, RepositoryRead
from web.db.session import Database
from web.orchestration import Services, plan_recorded_pipeline
from web.settings import Settings

ADMIN = "admin-test-token"
AUTH = {"Authorization": f"Bearer {ADMIN}"}
WEBHOOK_SECRET = "s3cret-webhook-key"


class RecordingDispatcher:
    """A dispatcher that keeps the job ids it is given, and plans a pipeline it is sent at once
    as a worker's `plan_pipeline` task would (the request through JSON, as Celery sends it)
    when it has `services` (the `services` fixture sets them)."""

    def __init__(self) -> None:
        self.sent: list[int] = []
        self.planned: list[tuple[int, dict[str, Any]]] = []
        self.services: Services | None = None

    def run_jobs(self, job_ids: Sequence[int]) -> None:
        """Remember the jobs."""
        self.sent.extend(job_ids)

    def plan_pipeline(self, pipeline_id: int, request: dict[str, Any]) -> None:
        """Remember the pipeline and its request; plan it when the dispatcher has services."""
        sent = json.loads(json.dumps(request))
        self.planned.append((pipeline_id, sent))
        if self.services is not None:
            plan_recorded_pipeline(services=self.services, pipeline_id=pipeline_id, **sent)


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    """Settings on the test database, with a known admin token."""
    return Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        secret_key="test key",
        admin_token=ADMIN,
        public_url="http://kapal.test",
    )


@pytest.fixture
def dispatcher() -> RecordingDispatcher:
    """The jobs sent to workers."""
    return RecordingDispatcher()


@pytest.fixture
def services(settings: Settings, dispatcher: RecordingDispatcher) -> Iterator[Services]:
    """The service layer on the test database."""
    database = Database(settings.database_url)
    try:
        made = Services(settings=settings, database=database, dispatcher=dispatcher)
        dispatcher.services = made
        yield made
    finally:
        dispatcher.services = None
        database.dispose()


@pytest.fixture
def client(settings: Settings, services: Services) -> Iterator[TestClient]:
    """A client of the app (lifespan run)."""
    with TestClient(create_app(settings, services=services), raise_server_exceptions=False) as c:
        yield c


@pytest.fixture
def project(tmp_path: Path) -> Project:
    """A bare origin repository and a working clone that commits and pushes to it."""
    return Project(tmp_path / "repos")


def register(
    services: Services,
    *,
    name: str = "acme/shop",
    clone_url: str = "",
    provider: Provider = Provider.GITHUB,
) -> RepositoryRead:
    """Register a repository straight through the database."""
    with services.database.transaction() as session:
        return create_repository(
            session=session,
            cipher=services.cipher(),
            new=RepositoryCreate(
                name=name,
                clone_url=clone_url or f"https://github.com/{name}.git",
                provider=provider,
                webhook_secret=WEBHOOK_SECRET,
            ),
        )


def add_pipeline(
    services: Services,
    repository_id: int,
    *,
    ref: str = "main",
    status: str = "running",
    source: str = "push",
    jobs: dict[str, str] | None = None,
) -> tuple[int, list[int]]:
    """Record a pipeline and its jobs (name -> status); returns their ids."""
    with services.database.transaction() as session:
        made = create_pipeline(
            session=session,
            new=PipelineCreate(
                repository_id=repository_id, source=source, ref=ref, sha="a" * 40, status=status
            ),
        )
        rows = create_jobs(
            session=session,
            pipeline_id=made.id,
            jobs=[
                JobCreate(name=name, stage="test", position=i, status=job_status)
                for i, (name, job_status) in enumerate((jobs or {}).items())
            ],
        )
    return made.id, [r.id for r in rows]


def error_of(response: Any) -> str:
    """The `error` of a JSON error answer."""
    body = response.json()
    assert set(body) == {"error"}, body
    message = body["error"]
    assert isinstance(message, str) and message
    return message


class LiveServer:
    """The app served by a real uvicorn in a thread, on a Unix socket and on TCP."""

    def __init__(self, settings: Settings, services: Services, socket_path: Path) -> None:
        import socket
        import threading

        import uvicorn

        from web.serve import tcp_socket, unix_socket

        self.socket_path = socket_path
        self._sockets: list[socket.socket] = [
            unix_socket(socket_path),
            tcp_socket("127.0.0.1", 0),
        ]
        self.url = f"http://127.0.0.1:{self._sockets[1].getsockname()[1]}"
        self.unix = f"unix://{socket_path}"
        config = uvicorn.Config(
            create_app(settings, services=services), log_level="warning", lifespan="on"
        )
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": self._sockets}, daemon=True
        )

    def start(self) -> None:
        """Serve, and return once uvicorn listens."""
        import time

        self._thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            assert self._thread.is_alive(), "uvicorn stopped while starting"
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)

    def stop(self) -> None:
        """Shut uvicorn down and wait for it."""
        self.server.should_exit = True
        self._thread.join(30)
        for sock in self._sockets:
            sock.close()
        self.socket_path.unlink(missing_ok=True)


@pytest.fixture
def live_server(settings: Settings, services: Services, tmp_path: Path) -> Iterator[LiveServer]:
    """The app on a real uvicorn (Unix socket `server.unix`, TCP `server.url`)."""
    server = LiveServer(settings, services, tmp_path / "run" / "kapal.sock")
    server.start()
    try:
        yield server
    finally:
        server.stop()
