"""Listing pipelines sends the same statements whatever the page holds: none per pipeline or
per job, through the API and the dashboard's list page (counted as SQLAlchemy sends them)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.web.api.conftest import add_pipeline, register
from tests.web.service_support import sent_statements
from web.orchestration import Services

JOBS = {"build": "success", "unit": "failed", "lint": "success", "deploy": "created"}
LISTS = {
    "api": "/api/v1/pipelines?limit=200",
    "api-filtered": "/api/v1/pipelines?repo=acme/shop&ref=main&status=running&limit=200",
    "dashboard": "/",
    "dashboard-filtered": "/?repo=acme/shop&branch=main&status=running",
}


def _listed(path: str, answer: Any) -> int:
    if path.startswith("/api/"):
        return len(answer.json()["items"])
    return len(re.findall(r'<tr[^>]*class="[^"]*pipeline-row', answer.text))


@pytest.mark.parametrize("path", LISTS.values(), ids=LISTS.keys())
def test_listing_sends_no_statement_per_pipeline(
    client: TestClient, services: Services, path: str
) -> None:
    shop = register(services)
    other = register(services, name="acme/docs")
    made = 0
    counts = {}
    for total in (2, 24):
        while made < total:
            add_pipeline(services, shop.id, ref="main", jobs=JOBS)
            add_pipeline(services, other.id, ref="main", status="failed", jobs=JOBS)
            made += 1
        client.get(path)  # whatever a first request prepares once
        with sent_statements(services.database) as seen:
            answer = client.get(path)
        assert answer.status_code == 200, answer.text
        assert _listed(path, answer) in (total, 2 * total)
        counts[total] = seen
    assert len(counts[24]) == len(counts[2]), counts
