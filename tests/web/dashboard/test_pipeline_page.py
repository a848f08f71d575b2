"""The pipeline page in a browser: stages of job cards, the needs graph, tests, artifacts and
images; play, cancel and retry refused without a sign-in and a CSRF token, working with them;
cards that change without a reload."""

from __future__ import annotations

import hashlib

from tests.web.api.conftest import ADMIN
from tests.web.dashboard.conftest import (
    Dashboard,
    add_pipeline,
    add_planned_pipeline,
    register,
    set_job,
    wait_until,
)
from web.db.jobs import get_job, list_jobs
from web.db.pipelines import set_pipeline_status
from web.db.results import add_artifact, add_built_image, add_test_cases
from web.db.schemas import ArtifactCreate, Scope, TestCaseCreate
from web.db.tokens import create_token

PIPELINE = """
stages: [build, test, deploy]
build:
  stage: build
  script: [make]
unit:
  stage: test
  needs: [build]
  script: [make test]
lint:
  stage: test
  needs: []
  script: [make lint]
ship:
  stage: deploy
  needs: [unit, lint]
  when: manual
  script: [ship it]
"""
DIGEST = "sha256:" + hashlib.sha256(b"image").hexdigest()


def _record_results(board: Dashboard, jobs: dict[str, int]) -> None:
    files = board.services.settings.artifacts_dir / "p1" / "build"
    files.mkdir(parents=True)
    (files / "app.bin").write_bytes(b"binary")
    with board.transaction() as session:
        add_test_cases(
            session=session,
            job_id=jobs["unit"],
            cases=[
                TestCaseCreate(suite="shop.tests", name="test_total", status="passed"),
                TestCaseCreate(suite="shop.tests", name="test_tax", status="passed"),
                TestCaseCreate(suite="shop.tests", name="test_empty", status="passed"),
                TestCaseCreate(
                    suite="shop.tests",
                    name="test_discount",
                    status="failed",
                    message="<b>assert 1 == 2</b>",
                ),
                TestCaseCreate(suite="shop.tests", name="test_slow", status="skipped"),
            ],
        )
        add_artifact(
            session=session,
            job_id=jobs["build"],
            artifact=ArtifactCreate(
                name="binaries", path="p1/build", files=["app.bin"], size=6, sha256="0" * 64
            ),
        )
        add_built_image(session=session, job_id=jobs["build"], tag="shop:c0ffee", digest=DIGEST)


def _status(board: Dashboard, job_id: int) -> str:
    with board.transaction() as session:
        job = get_job(session=session, job_id=job_id)
    assert job is not None
    return job.status


def test_pipeline_page_shows_the_run_and_its_actions_need_a_signed_in_token(
    dashboard: Dashboard,
) -> None:
    repository = register(dashboard)
    pipeline_id, jobs = add_planned_pipeline(dashboard, repository.id, PIPELINE)
    for name, status in {"build": "success", "unit": "failed", "lint": "success"}.items():
        set_job(dashboard, jobs[name], status, exit_code=1 if status == "failed" else 0)
    set_job(dashboard, jobs["ship"], "manual")
    with dashboard.transaction() as session:
        set_pipeline_status(session=session, pipeline_id=pipeline_id, status="failed")
    _record_results(dashboard, jobs)

    tab = dashboard.page()
    url = f"{dashboard.url}/pipelines/{pipeline_id}"
    tab.goto(url)
    assert [h.inner_text() for h in tab.locator(".stage h3").all()] == [
        "BUILD",
        "TEST",
        "DEPLOY",
    ]
    assert tab.locator("#job-unit").get_attribute("data-status") == "failed"
    assert tab.locator("#job-ship").get_attribute("data-status") == "manual"
    # the needs graph: one arrow per need
    edges = {
        (e.get_attribute("data-from"), e.get_attribute("data-to"))
        for e in tab.locator("svg.dag-graph path.edge").all()
    }
    assert edges == {("build", "unit"), ("unit", "ship"), ("lint", "ship")}
    # tests: counts, and the failed case's message as text
    counts = tab.locator(".test-counts").inner_text()
    assert "3 passed" in counts and "1 failed" in counts and "1 skipped" in counts
    tab.click("ul.failed-cases summary")
    assert tab.locator("ul.failed-cases pre").inner_text() == "<b>assert 1 == 2</b>"
    assert tab.locator("text=" + DIGEST).count() == 1
    download = tab.request.get(
        dashboard.url + tab.locator("a.download").first.get_attribute("href")
    )
    assert download.status == 200
    assert download.headers["content-type"] == "application/gzip"
    dashboard.screenshot(tab, "pipeline")

    # without a sign-in, play is refused and nothing runs
    tab.click("#job-ship button.play")
    assert "sign" in tab.locator("#error-message").inner_text().lower()
    assert _status(dashboard, jobs["ship"]) == "manual"
    # nor does a form without this browser's CSRF value, signed in or not
    forged = tab.request.post(f"{dashboard.url}/jobs/{jobs['ship']}/play", form={"csrf": "x"})
    assert forged.status == 403
    assert _status(dashboard, jobs["ship"]) == "manual"
    assert dashboard.dispatcher.sent == []

    # sign in: a wrong token is refused, the admin token kept in an HttpOnly strict cookie
    tab.goto(url)
    tab.click("#signin-link")
    tab.fill("input[name=token]", "not-a-token")
    tab.click("form.signin button")
    assert "unknown" in tab.locator("#signin-error").inner_text()
    tab.fill("input[name=token]", ADMIN)
    tab.click("form.signin button")
    tab.wait_for_url(url)
    assert "signed in as" in tab.locator(".who").inner_text()
    (cookie,) = [c for c in dashboard.context.cookies() if c["name"] == "kapal_token"]
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict"
    forged = tab.request.post(f"{dashboard.url}/jobs/{jobs['ship']}/play", form={"csrf": "x"})
    assert forged.status == 403
    assert _status(dashboard, jobs["ship"]) == "manual"

    # play: the approval gate opens, who played it shows on the card
    tab.click("#job-ship button.play")
    tab.wait_for_selector("#job-ship[data-status=pending]")
    assert "played by KAPAL_ADMIN_TOKEN" in tab.locator("#job-ship").inner_text()
    assert dashboard.dispatcher.sent == [jobs["ship"]]

    # cancel, then retry the failed jobs: a second attempt of `unit`, the first kept
    tab.click(".title .actions button.danger")
    tab.wait_for_selector("#job-ship[data-status=canceled]")
    # a refused action comes back to its page with the reason, shown once
    csrf = tab.locator("input[name=csrf]").first.input_value()
    refused = tab.request.post(
        f"{dashboard.url}/jobs/{jobs['ship']}/play", form={"csrf": csrf}, headers={"Referer": url}
    )
    assert refused.status == 200 and refused.url == url
    assert "only a manual job waiting to be played" in refused.text()
    tab.goto(url + "?notice=Your+session+expired")  # a link cannot put words on the page
    assert tab.locator(".notice").count() == 0
    tab.click("text=Retry failed")
    tab.wait_for_selector("#job-unit .earlier")
    with dashboard.transaction() as session:
        unit = [j for j in list_jobs(session=session, pipeline_id=pipeline_id) if j.name == "unit"]
    assert [(j.attempt, j.retried) for j in unit] == [(1, True), (2, False)]
    assert "attempt 2" in tab.locator("#job-unit").inner_text()

    # the page follows the pipeline: a job starting shows without a reload
    tab.evaluate("window.__notReloaded = true")
    set_job(dashboard, unit[1].id, "running")
    tab.wait_for_selector("#job-unit[data-status=running]", timeout=15_000)
    wait_until(tab, "window.__notReloaded === true")


def test_a_read_only_token_cannot_play(dashboard: Dashboard) -> None:
    repository = register(dashboard)
    pipeline_id, (job_id,) = add_pipeline(dashboard, repository.id, jobs={"ship": "manual"})
    with dashboard.transaction() as session:
        reader = create_token(session=session, name="reader", scopes=[Scope.READ]).plaintext
    tab = dashboard.page()
    tab.goto(f"{dashboard.url}/pipelines/{pipeline_id}")
    tab.click("#signin-link")
    tab.fill("input[name=token]", reader)
    tab.click("form.signin button")
    tab.wait_for_selector("text=signed in as")
    tab.click("#job-ship button.play")
    assert tab.title().startswith("Not allowed")
    assert "may not do this" in tab.locator("#error-message").inner_text()
    assert _status(dashboard, job_id) == "manual"
    tab.goto(f"{dashboard.url}/pipelines/{pipeline_id}")
    tab.click(".who button")  # sign out
    assert tab.locator("#signin-link").count() == 1
    assert not [c for c in dashboard.context.cookies() if c["name"] == "kapal_token"]
