"""Helpers of the service-layer tests: register a repository, keep what a dispatcher is sent,
see the statements sent to the database."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from sqlalchemy import event

from tests.web.test_mirrors import Project
from web.db.repos import create_repository
from web.db.schemas import Provider, RepositoryCreate, RepositoryRead
from web.db.session import Database
from web.orchestration import Services
from web.settings import Settings


class KeptJobs:
    """A dispatcher keeping what it is sent, in order (thread-safe): job ids, plan requests."""

    def __init__(self) -> None:
        self.sent: list[int] = []
        self.plans: list[tuple[int, dict[str, Any]]] = []
        self.later: list[tuple[int, float]] = []
        self.statuses: list[tuple[int, str]] = []
        self._lock = threading.Lock()

    def run_jobs(self, job_ids: Sequence[int]) -> None:
        """Keep the job ids."""
        with self._lock:
            self.sent.extend(job_ids)

    def plan_pipeline(self, pipeline_id: int, request: dict[str, Any]) -> None:
        """Keep the plan request."""
        with self._lock:
            self.plans.append((pipeline_id, request))

    def advance_later(self, pipeline_id: int, seconds: float) -> None:
        """Keep the delayed advance."""
        with self._lock:
            self.later.append((pipeline_id, seconds))

    def commit_status(self, pipeline_id: int, status: str) -> None:
        """Keep the pipeline status to report."""
        with self._lock:
            self.statuses.append((pipeline_id, status))


def kept_services(database: Database, data_dir: Path, kept: KeptJobs | None = None) -> Services:
    """The service layer on the test `database`, its dispatcher keeping what it is sent."""
    settings = Settings(data_dir=data_dir, database_url=database.url, secret_key=SecretStr("k"))
    return Services(settings=settings, database=database, dispatcher=kept or KeptJobs())


def register(
    services: Services, project: Project, name: str = "acme/shop", **fields: Any
) -> RepositoryRead:
    """Register `project`'s bare repository as `name` (a GitHub repository)."""
    with services.database.transaction() as session:
        return create_repository(
            session=session,
            cipher=services.cipher(),
            new=RepositoryCreate(
                name=name,
                clone_url=str(project.origin),
                provider=Provider.GITHUB,
                webhook_secret=f"hook secret of {name}",
                **fields,
            ),
        )


@contextmanager
def sent_statements(database: Database) -> Iterator[list[str]]:
    """Every statement the engine sends while the block runs."""
    seen: list[str] = []

    def note(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        seen.append(statement)

    event.listen(database.engine, "before_cursor_execute", note)
    try:
        yield seen
    finally:
        event.remove(database.engine, "before_cursor_execute", note)
