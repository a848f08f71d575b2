"""The pipelines list in a browser: rows as recorded, filters, and rows that change and appear
without a reload when the database changes."""

from __future__ import annotations

from tests.web.dashboard.conftest import Dashboard, add_pipeline, register, set_job
from web.db.pipelines import set_pipeline_status


def test_rows_update_live_and_filters_narrow_the_list(dashboard: Dashboard) -> None:
    shop = register(dashboard, "acme/shop")
    docs = register(dashboard, "acme/docs")
    old, _ = add_pipeline(dashboard, docs.id, ref="gh-pages", status="failed", message="Typo")
    running, (unit, _) = add_pipeline(
        dashboard,
        shop.id,
        ref="main",
        status="running",
        message="Add <b>bold</b> basket\nbody",
        jobs={"unit": "running", "lint": "success"},
    )
    tab = dashboard.page()
    tab.goto(dashboard.url + "/")
    rows = tab.locator("tr.pipeline-row")
    assert rows.count() == 2
    assert rows.nth(0).get_attribute("id") == f"pipeline-{running}"  # newest first
    first = rows.nth(0)
    assert first.get_attribute("data-status") == "running"
    assert "acme/shop" in first.inner_text()
    assert "main" in first.inner_text()
    # the commit message is text, its first line only
    assert first.locator(".message").inner_text() == "Add <b>bold</b> basket"
    assert first.locator(".sha").inner_text() == "c0ffee00"
    assert "Ana Dev" in first.inner_text()
    assert "push" in first.inner_text()
    tab.wait_for_selector("#live-state:not([hidden])")
    tab.evaluate("window.__notReloaded = true")

    # the stage's icon: its jobs added up
    assert first.locator(".stage-icon").get_attribute("title") == "test: running"
    set_job(dashboard, unit, "success")
    tab.wait_for_selector(f"#pipeline-{running} .stage-icon[data-status=success]", timeout=15_000)
    with dashboard.transaction() as session:
        set_pipeline_status(session=session, pipeline_id=running, status="success")
    tab.wait_for_selector(f"#pipeline-{running}[data-status=success]", timeout=15_000)
    assert "passed" in tab.locator(f"#pipeline-{running} .status").inner_text()
    newer, _ = add_pipeline(dashboard, shop.id, ref="feature/x", status="pending")
    tab.wait_for_selector(f"#pipeline-{newer}", timeout=15_000)
    assert rows.nth(0).get_attribute("id") == f"pipeline-{newer}"
    assert tab.evaluate("window.__notReloaded") is True
    dashboard.screenshot(tab, "pipelines")

    tab.select_option("select[name=status]", "failed")
    tab.click("form.filters button[type=submit]")
    tab.wait_for_url(lambda url: "status=failed" in url)
    assert [r.get_attribute("id") for r in tab.locator("tr.pipeline-row").all()] == [
        f"pipeline-{old}"
    ]
    tab.goto(dashboard.url + "/?repo=acme/shop&branch=feature/x")
    assert [r.get_attribute("id") for r in tab.locator("tr.pipeline-row").all()] == [
        f"pipeline-{newer}"
    ]
    # a filtered live list drops a row that no longer matches
    tab.goto(dashboard.url + "/?status=pending")
    tab.wait_for_selector("#live-state:not([hidden])")
    with dashboard.transaction() as session:
        set_pipeline_status(session=session, pipeline_id=newer, status="running")
    tab.wait_for_selector(f"#pipeline-{newer}", state="detached", timeout=15_000)


def test_older_pipelines_are_a_page_away(dashboard: Dashboard) -> None:
    shop = register(dashboard, "acme/shop")
    ids = [add_pipeline(dashboard, shop.id, status="success")[0] for _ in range(53)]
    tab = dashboard.page()
    tab.goto(dashboard.url + "/?repo=acme/shop")
    shown = [r.get_attribute("data-id") for r in tab.locator("tr.pipeline-row").all()]
    assert shown == [str(i) for i in reversed(ids[-50:])]
    tab.click("#older")
    tab.wait_for_url(lambda url: "cursor=" in url)
    shown = [r.get_attribute("data-id") for r in tab.locator("tr.pipeline-row").all()]
    assert shown == [str(i) for i in reversed(ids[:3])]
    assert "repo=acme%2Fshop" in tab.url  # the filters stay
    assert tab.locator("#older").count() == 0
    tab.click("text=« Newest")
    assert tab.locator("tr.pipeline-row").count() == 50
