"""Every page renders from the same history on SQLite and on PostgreSQL (the queries behind the
list, the pipeline, the job, the repositories, the badges and the charts), with what it holds."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from starlette.exceptions import StarletteDeprecationWarning

with warnings.catch_warnings():
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

from pipeline import TriggerContext, loads
from pipeline.planner import plan
from tests.web.api.conftest import ADMIN, RecordingDispatcher
from web.app import create_app
from web.db.jobs import set_job_status
from web.db.logs import append_log
from web.db.models import Job, Pipeline
from web.db.pipelines import create_pipeline, record_plan
from web.db.repos import create_repository
from web.db.results import add_test_cases
from web.db.schemas import PipelineCreate, Provider, RepositoryCreate, TestCaseCreate
from web.db.session import Database
from web.orchestration import Services
from web.settings import Settings

YAML = """
build:
  stage: build
  script: [make]
test:
  stage: test
  needs: [build]
  script: [make test]
"""


@pytest.fixture
def services(database_url: str, tmp_path: Path) -> Iterator[Services]:
    """The service layer over a migrated database of each kind."""
    config = Settings(
        data_dir=tmp_path / "data", database_url=database_url, secret_key="k", admin_token=ADMIN
    )
    database = Database(database_url)
    try:
        yield Services(settings=config, database=database, dispatcher=RecordingDispatcher())
    finally:
        database.dispose()


@pytest.fixture
def client(services: Services) -> Iterator[TestClient]:
    """A client of the app on those services."""
    app = create_app(services.settings, services=services)
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def _history(services: Services) -> tuple[int, dict[str, int]]:
    the_plan = plan(loads(YAML), TriggerContext(source="push", branch="main"))
    end = datetime.now(UTC) - timedelta(minutes=1)
    with services.database.transaction() as session:
        repository = create_repository(
            session=session,
            cipher=services.cipher(),
            new=RepositoryCreate(
                name="acme/shop", clone_url="x", provider=Provider.GITLAB, webhook_secret="s"
            ),
        )
        made = create_pipeline(
            session=session,
            new=PipelineCreate(
                repository_id=repository.id,
                source="merge_request_event",
                ref="main",
                sha="ab" * 20,
                message="Speed up <checkout>",
                status="failed",
            ),
        )
        jobs = {
            j.name: j.id for j in record_plan(session=session, pipeline_id=made.id, plan=the_plan)
        }
        set_job_status(session=session, job_id=jobs["build"], status="success", exit_code=0)
        set_job_status(session=session, job_id=jobs["test"], status="failed", exit_code=1)
        for row_id, model, seconds in (
            (made.id, Pipeline, 200),
            (jobs["build"], Job, 50),
            (jobs["test"], Job, 150),
        ):
            row = session.get(model, row_id)
            assert row is not None
            row.started_at, row.finished_at = end - timedelta(seconds=seconds), end
        append_log(session=session, job_id=jobs["test"], lines=["$ make test", "1 failed"])
        add_test_cases(
            session=session,
            job_id=jobs["test"],
            cases=[TestCaseCreate(suite="s", name="t", status="failed", message="boom")],
        )
    return made.id, jobs


def test_every_page_renders_the_history(client: TestClient, services: Services) -> None:
    pipeline_id, jobs = _history(services)
    listing = client.get("/", params={"repo": "acme/shop", "source": "merge_request_event"})
    assert listing.status_code == 200
    assert f'id="pipeline-{pipeline_id}"' in listing.text
    assert "Speed up &lt;checkout&gt;" in listing.text and "merge request" in listing.text
    assert "3m 20s" in listing.text  # the pipeline's 200 s
    detail = client.get(f"/pipelines/{pipeline_id}")
    assert detail.status_code == 200
    assert 'data-from="build" data-to="test"' in detail.text and "boom" in detail.text
    job = client.get(f"/jobs/{jobs['test']}")
    assert job.status_code == 200 and 'id="exit-code">1<' in job.text
    assert client.get(f"/jobs/{jobs['test']}/raw").text == "$ make test\n1 failed\n"
    assert client.get("/repos").status_code == 200
    assert client.get("/repos/1").status_code == 200
    assert ">failed</text>" in client.get("/badges/acme/shop/main.svg").text
    charts = client.get("/charts")
    assert charts.status_code == 200
    assert 'class="bar st-failed"' in charts.text  # the duration of the failed pipeline
    assert "2m30s" in charts.text  # `test`, the slowest job
