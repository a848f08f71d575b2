"""Environments in a browser: the current deployment of each, an environment's history with who
approved each deployment, and a rollback refused without a sign-in and answered by the shipping
service with one."""

from __future__ import annotations

import hashlib

from runner.images import ImageStore
from runner.ship.deployments import Deployment
from tests.web.api.conftest import ADMIN
from tests.web.dashboard.conftest import Dashboard, add_pipeline, register
from web.db.environments import DatabaseDeployments, list_deployments

A = "sha256:" + hashlib.sha256(b"a").hexdigest()
B = "sha256:" + hashlib.sha256(b"b").hexdigest()


def _deploy(
    board: Dashboard, repository_id: int, environment: str, digest: str, **more: object
) -> int:
    url = str(more.pop("url", "https://shop.example.test"))
    approved_by = more.pop("approved_by", None)
    log = DatabaseDeployments(
        board.services.database,
        repository_id,
        pipeline_id=more.pop("pipeline_id", None),  # type: ignore[arg-type]
        approved_by=approved_by,  # type: ignore[arg-type]
        url=url,
    )
    made = log.record(
        Deployment(
            environment=environment,
            kind="registry",
            digest=digest,
            image="shop:build",
            target=f"registry.example.test/shop:{environment}",
            user="deployer",
            **more,  # type: ignore[arg-type]
        )
    )
    assert made.id is not None
    return made.id


def test_environments_show_their_deployments_and_roll_back_behind_a_sign_in(
    dashboard: Dashboard, image_store: ImageStore, busybox_image: str
) -> None:
    # the server's image store holds busybox (deployment 1's digest), not digest A (2's)
    settings = dashboard.services.settings
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    settings.images_dir.symlink_to(image_store.root)
    stored = image_store.resolve(busybox_image).digest
    repository = register(dashboard)
    pipeline_id, _ = add_pipeline(dashboard, repository.id, status="success")
    first = _deploy(
        dashboard, repository.id, "production", stored, approved_by="alice", pipeline_id=pipeline_id
    )
    second = _deploy(dashboard, repository.id, "production", A, approved_by="bob")
    _deploy(dashboard, repository.id, "production", B, status="failed", message="push refused: 401")
    _deploy(dashboard, repository.id, "review/x", A, url="javascript:window.__pwned='url'")

    tab = dashboard.page()
    tab.goto(dashboard.url + "/environments")
    assert tab.locator("table.environments tr[id^=environment-]").count() == 2
    production = tab.locator("tr:has-text('production')")
    assert A[:19] in production.inner_text() and "bob" in production.inner_text()
    review = tab.locator("tr:has-text('review/x')")
    assert "javascript:" in review.inner_text()
    assert review.locator("a[href^='javascript']").count() == 0  # shown, never linked

    tab.click("text=production")
    history = tab.locator("table.deployments tr[id^=deployment-]")
    assert history.count() == 3
    assert history.nth(0).get_attribute("data-status") == "failed"
    assert "push refused: 401" in tab.locator("table.deployments").inner_text()
    assert "alice" in history.nth(2).inner_text()
    assert tab.locator(f"#deployment-{second} button").count() == 0  # the current one
    dashboard.screenshot(tab, "environment")

    # a rollback without a sign-in is refused before anything ships
    tab.click(f"#deployment-{first} button")
    assert "sign" in tab.locator("#error-message").inner_text().lower()
    with dashboard.transaction() as session:
        assert len(list_deployments(session=session, environment_id=1)) == 3

    # signed in: deployment 1's digest is deployed again, as a rollback, by whoever asked
    tab.goto(f"{dashboard.url}/environments/1")
    tab.click("#signin-link")
    tab.fill("input[name=token]", ADMIN)
    tab.click("form.signin button")
    tab.click(f"#deployment-{first} button")
    tab.wait_for_url(f"{dashboard.url}/environments/1")
    current = tab.locator("#current").inner_text()
    assert stored in current and f"rollback to deployment #{first}" in current
    assert "KAPAL_ADMIN_TOKEN" in current
    # a digest the store no longer holds: the shipping service's refusal is shown
    tab.click(f"#deployment-{second} button")
    tab.wait_for_url(f"{dashboard.url}/environments/1")
    notice = tab.locator(".notice").inner_text()
    assert notice.startswith("cannot roll production back"), notice
    with dashboard.transaction() as session:
        assert len(list_deployments(session=session, environment_id=1)) == 4
    assert tab.evaluate("window.__pwned") is None
