"""Repositories and badges: the webhook to paste (its secret for admins only), recent pipelines,
a badge per branch status; and a kapal whose reads are private shows nothing before a sign-in."""

from __future__ import annotations

import httpx
import pytest

from tests.web.api.conftest import ADMIN
from tests.web.dashboard.conftest import WEBHOOK_SECRET, Dashboard, add_pipeline, register
from web.dashboard.badges import BADGE_COLOURS, badge_svg


def _sign_in(tab: object, token: str) -> None:
    tab.click("#signin-link")  # type: ignore[attr-defined]
    tab.fill("input[name=token]", token)  # type: ignore[attr-defined]
    tab.click("form.signin button")  # type: ignore[attr-defined]


def test_badges_show_the_latest_pipeline_of_a_branch(dashboard: Dashboard) -> None:
    shop = register(dashboard, "acme/shop")
    add_pipeline(dashboard, shop.id, ref="main", status="failed")
    add_pipeline(dashboard, shop.id, ref="main", status="success")
    add_pipeline(dashboard, shop.id, ref="feature/x", status="running")
    with httpx.Client(base_url=dashboard.url) as http:
        main = http.get("/badges/acme/shop/main.svg")
        assert main.status_code == 200
        assert main.headers["content-type"].startswith("image/svg+xml")
        assert main.headers["cache-control"].startswith("no-cache")
        assert ">passed</text>" in main.text and BADGE_COLOURS["success"] in main.text
        feature = http.get("/badges/acme/shop/feature/x.svg")  # a branch holding a slash
        assert ">running</text>" in feature.text and BADGE_COLOURS["running"] in feature.text
        none_yet = http.get("/badges/acme/shop/release.svg")
        assert none_yet.status_code == 200 and ">unknown</text>" in none_yet.text
        unknown = http.get("/badges/acme/nothing/main.svg")
        assert unknown.status_code == 404 and ">unknown</text>" in unknown.text
        assert http.get("/badges/acme/shop/main.png").status_code == 404


@pytest.mark.parametrize("status", sorted(BADGE_COLOURS))
def test_each_status_has_its_badge(status: str) -> None:
    svg = badge_svg(None if status == "unknown" else status)
    word = "passed" if status == "success" else status
    assert f">{word}</text>" in svg
    assert BADGE_COLOURS[status] in svg
    assert svg.startswith("<svg ") and svg.endswith("</svg>")


def test_repository_pages_show_the_webhook_and_its_secret_to_admins(
    dashboard: Dashboard,
) -> None:
    shop = register(dashboard, "acme/shop")
    register(dashboard, "acme/docs")
    pipeline_id, _ = add_pipeline(dashboard, shop.id, ref="main", status="success")
    tab = dashboard.page()
    tab.goto(dashboard.url + "/repos")
    assert tab.locator("table.repos tbody tr, table.repos tr:has(td)").count() == 2
    # every badge image loaded (served by kapal, drawn as SVG)
    widths = tab.eval_on_selector_all("table.repos img", "imgs => imgs.map(i => i.naturalWidth)")
    assert len(widths) == 2 and all(w > 0 for w in widths)
    tab.click("text=acme/shop")
    assert tab.locator("#webhook-url").input_value() == "http://kapal.test/hooks/gitea"
    assert tab.locator("#webhook-secret").count() == 0
    assert tab.locator(f"#pipeline-{pipeline_id}").count() == 1
    assert "http://kapal.test/badges/acme/shop/main.svg" in tab.locator(".snippet").inner_text()
    _sign_in(tab, ADMIN)
    tab.wait_for_selector("#webhook-secret")
    assert tab.locator("#webhook-secret").input_value() == WEBHOOK_SECRET
    dashboard.screenshot(tab, "repository")


@pytest.mark.parametrize("public_reads", [False])
def test_private_reads_need_a_sign_in_and_then_follow_live(dashboard: Dashboard) -> None:
    shop = register(dashboard, "acme/shop")
    pipeline_id, (job_id,) = add_pipeline(dashboard, shop.id, jobs={"unit": "running"})
    with httpx.Client(base_url=dashboard.url) as http:
        for path in (
            "/",
            f"/pipelines/{pipeline_id}",
            f"/jobs/{job_id}",
            "/repos",
            "/environments",
            "/charts",
            f"/jobs/{job_id}/raw",
            f"/jobs/{job_id}/log/events",
            "/dashboard/events",
            "/badges/acme/shop/main.svg",
        ):
            answer = http.get(path)
            assert answer.status_code == 401, path
            assert "c0ffee" not in answer.text and "acme/shop" not in answer.text, path
    tab = dashboard.page()
    tab.goto(dashboard.url + "/")
    assert "needs an API token" in tab.locator("#error-message").inner_text()
    _sign_in(tab, ADMIN)
    tab.wait_for_selector(f"#pipeline-{pipeline_id}")
    tab.wait_for_selector("#live-state:not([hidden])")  # the event stream took the cookie
    tab.goto(f"{dashboard.url}/jobs/{job_id}")
    from tests.web.dashboard.conftest import write_log

    write_log(dashboard, job_id, ["visible once signed in"])
    tab.wait_for_selector("#L1", timeout=15_000)
