"""The SVG kapal draws itself: the needs graph places jobs after what they wait for, and every
name in it is escaped."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from web.dashboard.dag import DagJob, draw_dag

SVG = "{http://www.w3.org/2000/svg}"


def test_the_graph_places_jobs_after_their_needs_and_escapes_names() -> None:
    hostile = '<script>alert("x")</script>'
    svg = draw_dag(
        [
            DagJob("build", "success", 1, (), ()),
            DagJob(hostile, "failed", 2, ("build",), ("build",)),
            DagJob("ship & tell", "manual", 3, (hostile,), (hostile,)),
        ]
    )
    root = ET.fromstring(svg)  # well-formed: nothing a name holds broke out of its text
    assert "<script>" not in svg
    nodes = {a.get("data-job"): a for a in root.iter(f"{SVG}a")}
    assert set(nodes) == {"build", hostile, "ship & tell"}
    columns = {name: float(a.find(f"{SVG}rect").get("x")) for name, a in nodes.items()}  # type: ignore[union-attr]
    assert columns["build"] < columns[hostile] < columns["ship & tell"]
    edges = {
        (p.get("data-from"), p.get("data-to"))
        for p in root.iter(f"{SVG}path")
        if p.get("class") == "edge"
    }
    assert edges == {("build", hostile), (hostile, "ship & tell")}
    assert nodes[hostile].get("href") == "/jobs/2"


def test_no_jobs_draw_nothing() -> None:
    assert draw_dag([]) == ""
