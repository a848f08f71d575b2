"""Whatever a client sends to the REST API (bodies, query strings, path ids, headers) or the
three webhook routes (10,000 fuzzed deliveries, signed and not, on PostgreSQL), the answer is
never a 500, and an error is `{"error": "..."}`."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.web.api.conftest import AUTH, add_pipeline, error_of, register
from tests.web.api.test_hooks import (
    HEADER_NAMES,
    HEADER_VALUES,
    delivery_bodies,
    post_fuzzed_delivery,
)
from web.orchestration import Services

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5)
    ),
    max_leaves=15,
)
FIELDS = st.sampled_from(
    [
        "name",
        "clone_url",
        "provider",
        "secret",
        "default_branch",
        "ref",
        "variables",
        "value",
        "protected",
        "scopes",
        "repository_id",
        "expires_in_days",
        "protected_refs",
    ]
)
BODIES = st.one_of(
    st.binary(max_size=200),
    JSON.map(lambda v: json.dumps(v).encode()),
    st.dictionaries(FIELDS, JSON, max_size=6).map(lambda v: json.dumps(v).encode()),
)
IDS = st.one_of(
    st.integers(min_value=-5, max_value=2**70).map(str), st.text(min_size=1, max_size=12)
)
ROUTES = st.sampled_from(
    [
        ("POST", "/api/v1/repos"),
        ("PATCH", "/api/v1/repos/{id}"),
        ("PUT", "/api/v1/repos/{id}/secrets/{id}"),
        ("POST", "/api/v1/repos/{id}/pipelines"),
        ("POST", "/api/v1/pipelines/{id}/cancel"),
        ("POST", "/api/v1/pipelines/{id}/retry"),
        ("POST", "/api/v1/jobs/{id}/play"),
        ("POST", "/api/v1/jobs/{id}/retry"),
        ("POST", "/api/v1/jobs/{id}/cancel"),
        ("POST", "/api/v1/tokens"),
        ("GET", "/api/v1/pipelines"),
        ("GET", "/api/v1/pipelines/{id}"),
        ("GET", "/api/v1/jobs/{id}/log"),
        ("GET", "/api/v1/jobs/{id}/artifacts/{id}"),
        ("DELETE", "/api/v1/tokens/{id}"),
        ("GET", "/api/v1/environments/{id}/deployments"),
        ("POST", "/api/v1/environments/{id}/rollback"),
    ]
)
QUERY = st.dictionaries(
    st.sampled_from(["repo", "ref", "status", "source", "cursor", "limit", "offset", "all"]),
    st.text(max_size=30),
    max_size=4,
)


@settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    route=ROUTES,
    ident=IDS,
    body=BODIES,
    query=QUERY,
    content_type=st.sampled_from(
        ["application/json", "text/plain", "application/x-www-form-urlencoded", ""]
    ),
)
def test_fuzzed_requests_never_get_a_500(
    client: TestClient,
    services: Services,
    route: tuple[str, str],
    ident: str,
    body: bytes,
    query: dict[str, str],
    content_type: str,
) -> None:
    with services.database.transaction() as session:
        from web.db.repos import get_repository_by_name

        known = get_repository_by_name(session=session, name="acme/shop")
    if known is None:
        repo = register(services, clone_url="/nonexistent/origin.git")
        add_pipeline(services, repo.id, jobs={"a": "running", "b": "manual"})
    method, template = route
    path = template.replace("{id}", quote(ident, safe=""))
    headers: dict[str, Any] = dict(AUTH)
    if content_type:
        headers["Content-Type"] = content_type
    answer = client.request(
        method, path, content=body if method != "GET" else None, params=query, headers=headers
    )
    assert answer.status_code < 500, (method, path, answer.text)
    if answer.status_code >= 400:
        error_of(answer)


FUZZED_DELIVERIES = 10_000


class InProcessClient:
    """The app (its lifespan already run by TestClient) through httpx's ASGI transport on an
    event loop of this test's own: the same app and middleware, without TestClient's thread
    hop per request, so 10,000 deliveries fit in CI's time."""

    def __init__(self, app: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self.http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://kapal.test"
        )

    def post(self, url: str, **options: Any) -> httpx.Response:
        """POST through the app."""
        return self.loop.run_until_complete(self.http.post(url, **options))

    def close(self) -> None:
        """Close the client and its loop."""
        self.loop.run_until_complete(self.http.aclose())
        self.loop.close()


@pytest.fixture
def in_process(client: TestClient) -> Iterator[InProcessClient]:
    """A client of the same app as `client`, in this thread."""
    made = InProcessClient(client.app)
    try:
        yield made
    finally:
        made.close()


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
@settings(
    max_examples=FUZZED_DELIVERIES,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
@given(
    provider=st.sampled_from(["github", "gitlab", "gitea"]),
    headers=st.dictionaries(HEADER_NAMES, HEADER_VALUES, max_size=8),
    body=delivery_bodies(),
    signed=st.booleans(),
)
def test_ten_thousand_fuzzed_deliveries_never_get_a_500(
    in_process: InProcessClient,
    services: Services,
    provider: str,
    headers: dict[str, str],
    body: bytes,
    signed: bool,
) -> None:
    post_fuzzed_delivery(in_process, services, provider, headers, body, signed)
