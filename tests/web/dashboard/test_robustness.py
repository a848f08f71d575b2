"""Whatever a browser sends the dashboard (filters, cursors, ids, badge paths, forms), the answer
is a page or a 4xx, never a 500; and a sign-in only ever sends the person back to this site."""

from __future__ import annotations

import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.exceptions import StarletteDeprecationWarning

with warnings.catch_warnings():
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

from tests.web.api.conftest import ADMIN, RecordingDispatcher
from web.app import create_app
from web.dashboard.signin import local_path
from web.db.session import Database
from web.orchestration import Services
from web.settings import Settings

TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=60)


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory, migrated_sqlite: Path) -> Iterator[TestClient]:
    """The app over an empty SQLite database (one for the module: hypothesis runs many cases)."""
    root = tmp_path_factory.mktemp("robust")
    shutil.copyfile(migrated_sqlite, root / "kapal.db")
    config = Settings(
        data_dir=root / "data",
        database_url=f"sqlite:///{root / 'kapal.db'}",
        secret_key="test key",
        admin_token=ADMIN,
    )
    database = Database(config.database_url)
    services = Services(settings=config, database=database, dispatcher=RecordingDispatcher())
    try:
        with TestClient(create_app(config, services=services), raise_server_exceptions=False) as c:
            yield c
    finally:
        database.dispose()


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(repo=TEXT, branch=TEXT, status=TEXT, source=TEXT, cursor=TEXT)
def test_any_filters_get_a_page_or_a_4xx(
    client: TestClient, repo: str, branch: str, status: str, source: str, cursor: str
) -> None:
    query = {"repo": repo, "branch": branch, "status": status, "source": source, "cursor": cursor}
    for path in ("/", "/charts"):
        answer = client.get(path, params=query)
        assert answer.status_code < 500, (path, query, answer.text[:300])


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(path=TEXT)
def test_any_badge_path_gets_a_badge_or_a_4xx(client: TestClient, path: str) -> None:
    answer = client.get("/badges/" + quote(path, safe="/") + ".svg")
    assert answer.status_code < 500
    if answer.status_code == 200:
        assert answer.text.startswith("<svg")


@pytest.mark.parametrize(
    "path",
    [
        "/pipelines/0",
        "/pipelines/99999999999999999999999",
        "/jobs/9223372036854775807",
        "/jobs/1/raw",
        "/jobs/1/log/events",
        "/jobs/1/artifacts/1",
        "/repos/5",
        "/dashboard/events?pipeline=99999999999999999999999",
        "/dashboard/events?pipeline=4",
        "/dashboard/events?repo=nothing",
        "/?cursor=not-a-cursor",
    ],
)
def test_unknown_rows_and_bad_ids_are_4xx(client: TestClient, path: str) -> None:
    answer = client.get(path)
    assert 400 <= answer.status_code < 500, answer.text[:300]


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=st.binary(max_size=300))
def test_any_posted_form_is_refused_without_the_csrf_value(client: TestClient, body: bytes) -> None:
    for path in ("/signin", "/signout", "/jobs/1/play", "/pipelines/1/retry"):
        answer = client.post(
            path, content=body, headers={"Content-Type": "application/x-www-form-urlencoded"}
        )
        assert answer.status_code == 403, (path, answer.status_code)


@pytest.mark.parametrize(
    ("target", "kept"),
    [
        ("/pipelines/3", "/pipelines/3"),
        ("//evil.example/x", "/"),
        ("https://evil.example/", "/"),
        ("/\\evil.example", "/"),
        ("/\r\nSet-Cookie: x=1", "/"),
        ("", "/"),
    ],
)
def test_sign_in_goes_back_to_this_site_only(target: str, kept: str) -> None:
    assert local_path(target) == kept
