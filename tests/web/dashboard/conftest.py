"""The dashboard in a real browser: Debian's Chromium driven by Playwright, against the app on a
real uvicorn over a SQLite database filled through `web.db`'s functions.

One browser per test session (starting Chromium is the slow part); each test gets its own
database, server and browser context (its own cookies), and fails on any console error or
uncaught exception of the pages it opened.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pipeline import TriggerContext, loads
from pipeline.planner import plan
from tests.web.api.conftest import ADMIN, LiveServer, RecordingDispatcher
from web.db.jobs import create_jobs, set_job_status
from web.db.logs import append_log
from web.db.pipelines import create_pipeline, record_plan, set_pipeline_status
from web.db.repos import create_repository
from web.db.schemas import JobCreate, PipelineCreate, Provider, RepositoryCreate, RepositoryRead
from web.db.session import Database
from web.orchestration import Services
from web.settings import Settings

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WEBHOOK_SECRET = "whsec-visible-to-admins"
SCREENSHOTS = "dashboard-screenshots"


@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    """Headless Chromium for the dashboard's tests (one launch for them all).

    Package-scoped, not session-scoped: Playwright's sync API keeps an asyncio loop running in
    this thread while it is started, so tests collected after these (`asyncio.run` in
    tests/web/hooks) could not run their own loop if it lived to the end of the session.
    """
    if not CHROMIUM.exists():
        pytest.fail("Debian's chromium is not installed: run .ci/setup (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield chromium
        finally:
            chromium.close()


@dataclass
class Dashboard:
    """A served kapal with its database, the jobs sent to workers, and a browser context."""

    server: LiveServer
    services: Services
    dispatcher: RecordingDispatcher
    context: Any
    shots: Path
    problems: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        """The server's base URL."""
        return self.server.url

    def page(self) -> Any:
        """A new tab that records console errors and uncaught exceptions."""
        tab = self.context.new_page()
        tab.on("console", self._console)
        tab.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        tab.on("response", self._response)
        return tab

    def _console(self, message: Any) -> None:
        # a page answered 401/403 on purpose logs "Failed to load resource"; failed
        # subresources (scripts, styles, streams) are caught by `_response` instead
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            self.problems.append(f"console error: {message.text}")

    def _response(self, response: Any) -> None:
        if response.status >= 400 and response.request.resource_type != "document":
            self.problems.append(f"{response.status} for {response.url}")

    def screenshot(self, tab: Any, name: str) -> Path:
        """A full-page screenshot under the test output (for a reviewer; not committed)."""
        path = self.shots / f"{name}.png"
        tab.screenshot(path=str(path), full_page=True)
        return path

    def transaction(self) -> Any:
        """A database transaction (to change rows under the open pages)."""
        return self.services.database.transaction()


@pytest.fixture
def public_reads() -> bool:
    """Whether the served kapal lets anyone read (parametrize it to False for a private one)."""
    return True


@pytest.fixture
def dashboard(
    browser: Any,
    public_reads: bool,
    tmp_path: Path,
    migrated_sqlite: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Dashboard]:
    """kapal on a real uvicorn over a fresh SQLite database, and a browser context for it."""
    database_file = tmp_path / "kapal.db"
    shutil.copyfile(migrated_sqlite, database_file)
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=f"sqlite:///{database_file}",
        secret_key="test key",
        admin_token=ADMIN,
        public_url="http://kapal.test",
        public_reads=public_reads,
    )
    dispatcher = RecordingDispatcher()
    database = Database(settings.database_url)
    services = Services(settings=settings, database=database, dispatcher=dispatcher)
    server = LiveServer(settings, services, tmp_path / "run" / "kapal.sock")
    server.start()
    context = browser.new_context(viewport={"width": 1360, "height": 900})
    # KAPAL_SCREENSHOTS, else under pytest's base temporary directory; never in the tree
    shots = Path(
        os.environ.get("KAPAL_SCREENSHOTS") or tmp_path_factory.getbasetemp() / SCREENSHOTS
    )
    shots.mkdir(parents=True, exist_ok=True)
    board = Dashboard(server, services, dispatcher, context, shots)
    try:
        yield board
    finally:
        context.close()
        server.stop()
        database.dispose()
    assert board.problems == [], board.problems


def register(board: Dashboard, name: str = "acme/shop") -> RepositoryRead:
    """Register a repository straight through the database."""
    with board.transaction() as session:
        return create_repository(
            session=session,
            cipher=board.services.cipher(),
            new=RepositoryCreate(
                name=name,
                clone_url=f"https://git.example.test/{name}.git",
                provider=Provider.GITEA,
                webhook_secret=WEBHOOK_SECRET,
            ),
        )


def add_pipeline(
    board: Dashboard,
    repository_id: int,
    *,
    ref: str = "main",
    status: str = "running",
    message: str = "Fix the checkout total",
    jobs: dict[str, str] | None = None,
    source: str = "push",
) -> tuple[int, list[int]]:
    """Record a pipeline with jobs (name -> status) in one stage `test`; returns their ids."""
    with board.transaction() as session:
        made = create_pipeline(
            session=session,
            new=PipelineCreate(
                repository_id=repository_id,
                source=source,
                ref=ref,
                sha="c0ffee" + "0" * 34,
                message=message,
                author_name="Ana Dev",
                status="created",
            ),
        )
        set_pipeline_status(session=session, pipeline_id=made.id, status=status)
        rows = create_jobs(
            session=session,
            pipeline_id=made.id,
            jobs=[
                JobCreate(name=name, stage="test", position=i, status=job_status)
                for i, (name, job_status) in enumerate((jobs or {}).items())
            ],
        )
    return made.id, [r.id for r in rows]


def add_planned_pipeline(
    board: Dashboard, repository_id: int, yaml: str
) -> tuple[int, dict[str, int]]:
    """Record a pipeline planned from `yaml` (jobs `created`/`skipped` as planned); returns
    its id and its job ids by name."""
    the_plan = plan(loads(yaml), TriggerContext(source="push", branch="main"))
    with board.transaction() as session:
        made = create_pipeline(
            session=session,
            new=PipelineCreate(
                repository_id=repository_id,
                source="push",
                ref="main",
                sha="feed" + "1" * 36,
                message="Ship the new basket\n\nLong body.",
                author_name="Bo Ops",
                status="created",
            ),
        )
        jobs = record_plan(session=session, pipeline_id=made.id, plan=the_plan)
    return made.id, {job.name: job.id for job in jobs}


def set_job(board: Dashboard, job_id: int, status: str, **more: Any) -> None:
    """Move a job to `status` in the database."""
    with board.transaction() as session:
        set_job_status(session=session, job_id=job_id, status=status, **more)


def write_log(board: Dashboard, job_id: int, lines: list[str]) -> None:
    """Append lines to a job's log in the database."""
    with board.transaction() as session:
        append_log(session=session, job_id=job_id, lines=lines)


def wait_until(tab: Any, expression: str, timeout: float = 15.0) -> None:
    """Poll a JavaScript expression until it is truthy (`wait_for_function` evaluates strings
    with eval, which the dashboard's Content-Security-Policy refuses, as it should)."""
    import time

    deadline = time.monotonic() + timeout
    while not tab.evaluate(expression):
        assert time.monotonic() < deadline, f"still false after {timeout} s: {expression}"
        tab.wait_for_timeout(50)
