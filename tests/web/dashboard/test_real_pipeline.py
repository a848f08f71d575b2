"""The dashboard over a real run: a pipeline pushed to a local git repository runs in a real
Celery worker on the real runtime while a browser watches its row, its log growing line by line,
and then plays its manual job from the page with a token of the `write` scope."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.web.api.conftest import LiveServer
from tests.web.dashboard.conftest import Dashboard, wait_until
from tests.web.e2e import conftest as e2e
from tests.web.test_mirrors import Project
from web.db.schemas import PipelineDetail, RepositoryRead, Scope
from web.db.tokens import create_token
from web.orchestration import Services, create_pipeline_for_ref
from web.settings import Settings
from web.tasks import EmbeddedWorker

# the service fixtures of the end-to-end tests: a real Celery worker on the real runtime
service_settings = e2e.service_settings
database_url_postgres = e2e.database_url_postgres
celery_app = e2e.celery_app
services = e2e.services
worker = e2e.worker
project = e2e.project
repository = e2e.repository
wait_for = e2e.wait_for

PIPELINE = r"""
stages: [test, deploy]
unit:
  image: busybox:latest
  script:
    - printf '\033[32mgreen\033[0m\n'
    - for i in 1 2 3 4 5 6 7 8; do echo "tick $i"; sleep 0.4; done
    - echo '<script>window.__pwned = 1</script>'
ship:
  stage: deploy
  image: busybox:latest
  when: manual
  script: [echo shipped]
"""


@pytest.fixture
def served(
    browser: object, service_settings: Settings, services: Services, tmp_path: Path
) -> Iterator[Dashboard]:
    """The service on a real uvicorn, and a browser context for it."""
    server = LiveServer(service_settings, services, tmp_path / "run" / "kapal.sock")
    server.start()
    context = browser.new_context(viewport={"width": 1360, "height": 900})  # type: ignore[attr-defined]
    board = Dashboard(server, services, None, context, tmp_path)  # type: ignore[arg-type]
    try:
        yield board
    finally:
        context.close()
        server.stop()
    assert board.problems == [], board.problems


def _unit_done(detail: PipelineDetail) -> bool:
    return any(j.name == "unit" and j.status in ("success", "failed") for j in detail.jobs)


@pytest.mark.parametrize("service_settings", ["embedded"], indirect=True)
def test_a_real_run_seen_live_and_its_manual_job_played_from_the_page(
    served: Dashboard,
    services: Services,
    project: Project,
    repository: RepositoryRead,
    worker: EmbeddedWorker,
) -> None:
    with services.database.transaction() as session:
        token = create_token(session=session, name="deployer", scopes=[Scope.WRITE]).plaintext
    project.commit({".kapal.yml": PIPELINE})
    project.push()
    pipeline_id = create_pipeline_for_ref(
        services=services, repository_id=repository.id, ref="main"
    ).id
    listing = served.page()
    listing.goto(served.url + "/")
    listing.wait_for_selector(f"#pipeline-{pipeline_id}")
    listing.evaluate("window.__notReloaded = true")
    detail = wait_for(services, pipeline_id, lambda p: any(j.name == "unit" for j in p.jobs))
    unit = next(j for j in detail.jobs if j.name == "unit")

    log = served.page()
    log.goto(f"{served.url}/jobs/{unit.id}")
    log.wait_for_selector("#log .line:has-text('tick 1')", timeout=120_000)
    seen_while_running = log.locator("#log .line").count()
    log.wait_for_selector("#log .line:has-text('tick 8')", timeout=60_000)
    assert log.locator("#log .line").count() > seen_while_running  # it grew
    log.wait_for_selector("#log-end:not([hidden])", timeout=60_000)
    assert "success" in log.locator("#log-end").inner_text()
    assert log.locator("#log .ansi-fg-2").first.inner_text() == "green"
    assert log.locator("#log .line:has-text('<script>')").count() >= 1
    assert log.evaluate("window.__pwned") is None

    finished = wait_for(services, pipeline_id, _unit_done)
    listing.wait_for_selector(
        f"#pipeline-{pipeline_id}[data-status={finished.status}]", timeout=30_000
    )
    assert listing.evaluate("window.__notReloaded") is True

    page = served.page()
    page.goto(f"{served.url}/pipelines/{pipeline_id}")
    assert page.locator("#job-ship").get_attribute("data-status") == "manual"
    page.click("#signin-link")
    page.fill("input[name=token]", token)
    page.click("form.signin button")
    page.click("#job-ship button.play")
    # the card follows the job to its end without a reload
    page.evaluate("window.__notReloaded = true")
    page.wait_for_selector("#job-ship[data-status=success]", timeout=120_000)
    wait_until(page, "window.__notReloaded === true")
