"""`GET /metrics`: valid Prometheus text, and a job duration histogram whose counters only grow
as job attempts end (through the worker's report, `finish_job`), however many ran."""

from __future__ import annotations

import math
import re
from collections import defaultdict

from fastapi.testclient import TestClient

from runner.engine.recorder import JobStatus
from tests.web.api.conftest import add_pipeline, register
from web.db.jobs import claim_job
from web.orchestration import JobEnd, Services, finish_job

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"'
SAMPLE = re.compile(rf"^({NAME})(?:\{{((?:{LABEL})(?:,{LABEL})*)?\}})? (\S+)$")
TYPES = {"counter", "gauge", "histogram", "summary", "untyped"}
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> tuple[dict[str, str], Samples]:
    """The metric families' types and the samples of a text exposition (format 0.0.4), every
    line checked: a line the format does not allow fails the test."""
    assert text.endswith("\n")
    types: dict[str, str] = {}
    samples: Samples = {}
    for line in text[:-1].split("\n"):
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert re.fullmatch(NAME, name) and kind in TYPES, line
            assert name not in types, f"{name} typed twice"
            types[name] = kind
            continue
        if line.startswith("# HELP "):
            assert re.fullmatch(rf"# HELP {NAME} .+", line), line
            continue
        match = SAMPLE.match(line)
        assert match, f"not a sample: {line!r}"
        name, labels, value = match.groups()
        family = re.sub(r"_(bucket|sum|count)$", "", name)
        assert name in types or types.get(family) == "histogram", f"{name} before its TYPE"
        pairs = tuple(
            (key, raw[1:-1])
            for key, raw in (p.split("=", 1) for p in re.findall(LABEL, labels or ""))
        )
        assert (name, pairs) not in samples, f"{line} twice"
        number = float(value)  # Go's ParseFloat takes the same forms: +Inf, 1e-05, 12.5
        assert not math.isnan(number), line
        samples[(name, pairs)] = number
    return types, samples


def histograms(samples: Samples, family: str) -> dict[str, dict[str, float]]:
    """Per `status`: its buckets by `le`, `sum` and `count`, checked as a histogram."""
    by_status: dict[str, dict[str, float]] = defaultdict(dict)
    for (name, labels), value in samples.items():
        if not name.startswith(family + "_"):
            continue
        found = dict(labels)
        key = found["le"] if name.endswith("_bucket") else name.rsplit("_", 1)[1]
        by_status[found["status"]][key] = value
    for values in by_status.values():
        bounds = sorted(
            (float(le), count) for le, count in values.items() if le not in ("sum", "count")
        )
        assert bounds[-1][0] == math.inf
        counts = [count for _, count in bounds]
        assert counts == sorted(counts), "buckets are cumulative"
        assert values["+Inf"] == values["count"]
        assert values["sum"] >= 0
    return dict(by_status)


def _run_and_end(services: Services, job_ids: list[int], status: JobStatus) -> None:
    with services.database.transaction() as session:
        for job_id in job_ids:
            assert claim_job(session=session, job_id=job_id, worker="kapal@test.1")
    for job_id in job_ids:
        finish_job(services=services, job_id=job_id, end=JobEnd(status))


def test_metrics_are_valid_and_the_histogram_only_grows(
    client: TestClient, services: Services
) -> None:
    repo = register(services)
    _, jobs = add_pipeline(
        services, repo.id, jobs={f"job-{i}": "pending" for i in range(6)} | {"waits": "pending"}
    )
    empty_types, empty = parse(client.get("/metrics").text)
    assert empty_types["kapal_job_duration_seconds"] == "histogram"
    assert histograms(empty, "kapal_job_duration_seconds") == {}

    _run_and_end(services, jobs[:2], JobStatus.SUCCESS)
    _run_and_end(services, jobs[2:3], JobStatus.FAILED)
    answer = client.get("/metrics")
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    types, first = parse(answer.text)
    assert types == {
        "kapal_pipelines": "gauge",
        "kapal_jobs": "gauge",
        "kapal_queue_depth": "gauge",
        "kapal_job_duration_seconds": "histogram",
    }
    before = histograms(first, "kapal_job_duration_seconds")
    assert {s: v["count"] for s, v in before.items()} == {"success": 2, "failed": 1}
    assert first[("kapal_queue_depth", ())] == 4

    # a repeated report counts nothing; more ends count on top
    finish_job(services=services, job_id=jobs[0], end=JobEnd(JobStatus.SUCCESS))
    _run_and_end(services, jobs[3:6], JobStatus.SUCCESS)
    _, second = parse(client.get("/metrics").text)
    after = histograms(second, "kapal_job_duration_seconds")
    assert {s: v["count"] for s, v in after.items()} == {"success": 5, "failed": 1}
    for status, values in before.items():
        for key, value in values.items():
            assert after[status][key] >= value, (status, key)
    assert after["success"]["sum"] >= before["success"]["sum"]
