"""The charts page: durations of a branch's last pipelines, its pass rate, the slowest jobs and
the flakiest tests, drawn as SVG from the history (names escaped)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.web.dashboard.conftest import Dashboard, add_pipeline, register
from web.dashboard.charts import ranked_chart
from web.db.models import Job, Pipeline
from web.db.results import add_test_cases
from web.db.schemas import TestCaseCreate


def _times(board: Dashboard, model: type[Pipeline] | type[Job], row_id: int, seconds: int) -> None:
    end = datetime.now(UTC) - timedelta(minutes=5)
    with board.transaction() as session:
        row = session.get(model, row_id)
        assert row is not None
        row.started_at = end - timedelta(seconds=seconds)
        row.finished_at = end


def test_charts_draw_the_history_of_a_branch(dashboard: Dashboard) -> None:
    shop = register(dashboard, "acme/shop")
    seconds = [60, 90, 300, 75, 120]
    pipelines = []
    for n, length in enumerate(seconds):
        status = "failed" if n == 2 else "success"
        pipeline_id, jobs = add_pipeline(
            dashboard,
            shop.id,
            status=status,
            jobs={"compile": "success", "<b>e2e</b>": status},
        )
        pipelines.append(pipeline_id)
        _times(dashboard, Pipeline, pipeline_id, length)
        _times(dashboard, Job, jobs[0], 20)
        _times(dashboard, Job, jobs[1], length - 20)
        with dashboard.transaction() as session:
            add_test_cases(
                session=session,
                job_id=jobs[1],
                cases=[
                    TestCaseCreate(suite="shop", name="test_steady", status="passed"),
                    TestCaseCreate(
                        suite="shop",
                        name="test_flaky",
                        status="failed" if n in (1, 3) else "passed",
                    ),
                ],
            )
    add_pipeline(dashboard, shop.id, ref="other", status="success")  # another branch: not drawn

    tab = dashboard.page()
    tab.goto(dashboard.url + "/charts")
    bars = tab.locator("#chart-durations rect.bar")
    assert bars.count() == len(seconds)
    heights = [float(b.get_attribute("height") or 0) for b in bars.all()]
    assert heights.index(max(heights)) == 2  # the 300 s pipeline, oldest first
    assert "st-failed" in (bars.nth(2).get_attribute("class") or "")
    assert tab.locator("#chart-pass-rate circle.point").count() == 1  # all finished today
    assert "80%" in (tab.locator("#chart-pass-rate circle.point title").text_content() or "")
    labels = [t.text_content() for t in tab.locator("#chart-slowest text.label").all()]
    assert labels == ["<b>e2e</b>", "compile"]
    flaky = tab.locator("#chart-flaky").inner_text()
    assert "shop test_flaky" in flaky and "test_steady" not in flaky
    dashboard.screenshot(tab, "charts")
    tab.click("#chart-durations a >> nth=0")
    tab.wait_for_url(f"**/pipelines/{pipelines[0]}")


def test_chart_labels_are_escaped() -> None:
    svg = ranked_chart([("<script>alert(1)</script>", 3.0, "&")], label="x")
    assert "<script>" not in svg
    assert "&lt;script&gt;" in svg and "&amp;" in svg
