"""Deliveries at once: 200 concurrent POSTs of 50 distinct pushes (each delivered four times,
shuffled) make exactly 50 pipelines, every copy of a delivery answered with its pipeline or as
still being processed, on SQLite and PostgreSQL."""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor

from fastapi.testclient import TestClient

from tests.web.api.test_hooks import origin, pipelines_of, push_of  # noqa: F401 (fixture)
from tests.web.hooks.conftest import delivery
from tests.web.test_mirrors import Project
from web.orchestration import Services

PIPELINE = "image: busybox:latest\ntest:\n  script: [echo hello]\n"


def test_two_hundred_concurrent_deliveries_of_fifty_pushes_make_fifty_pipelines(
    client: TestClient,
    services: Services,
    origin: Project,  # noqa: F811
) -> None:
    shas = [origin.commit({".kapal.yml": PIPELINE, "n": f"{n}\n"}) for n in range(50)]
    origin.push()
    sends = [
        (f"push-{n}", delivery("github", push_of(sha), "push", delivery_id=f"push-{n}"))
        for n, sha in enumerate(shas)
        for _ in range(4)
    ]
    random.Random(7).shuffle(sends)

    def post(send: tuple[str, tuple[dict[str, str], bytes]]) -> tuple[str, int, int]:
        name, (headers, body) = send
        answer = client.post("/hooks/github", content=body, headers=headers)
        return name, answer.status_code, answer.json().get("pipeline_id")

    with ThreadPoolExecutor(max_workers=32) as pool:
        answers = list(pool.map(post, sends))
    assert {status for _, status, _ in answers} <= {200, 201}, answers
    by_delivery: dict[str, set[int]] = {}
    for name, _, pipeline_id in answers:
        by_delivery.setdefault(name, set()).add(pipeline_id)
    # one copy makes the pipeline (201); the others are answered with it, or, while it is
    # being made, 200 with `"pipeline_id": null` ("still being processed")
    made = sorted(p for _, status, p in answers if status == 201)
    assert len(made) == 50
    assert all(ids - {None} and len(ids - {None}) == 1 for ids in by_delivery.values())
    assert sorted(pipelines_of(services)) == made
