"""Who may list pipelines: the list checks stored tokens itself (on the connection it reads
the list with), so each answer is checked here as the dependencies checked it before."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from tests.web.api.conftest import add_pipeline, error_of, register
from web.app import create_app
from web.db.schemas import Scope
from web.db.tokens import create_token, revoke_token
from web.orchestration import Services


def _bearer(plaintext: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {plaintext}"}


def test_tokens_on_a_private_server(services: Services, settings: Any) -> None:
    shop = register(services)
    blog = register(services, name="acme/blog")
    mine, _ = add_pipeline(services, shop.id)
    add_pipeline(services, blog.id)
    with services.database.transaction() as session:
        shop_reader = create_token(
            session=session, name="shop-reader", scopes=[Scope.READ], repository_id=shop.id
        )
        revoked = create_token(session=session, name="gone", scopes=[Scope.READ])
        revoke_token(session=session, token_id=revoked.token.id)
    private = settings.model_copy(update={"public_reads": False})
    with TestClient(create_app(private, services=services)) as client:

        def status(headers: dict[str, str] | None = None, **params: str) -> int:
            answer = client.get("/api/v1/pipelines", params=params, headers=headers)
            if answer.status_code != 200:
                error_of(answer)
            code: int = answer.status_code
            return code

        reader = _bearer(shop_reader.plaintext)
        listed = client.get("/api/v1/pipelines", params={"repo": "acme/shop"}, headers=reader)
        assert listed.status_code == 200, listed.text
        assert [p["id"] for p in listed.json()["items"]] == [mine]
        assert status(reader, repo=str(shop.id)) == 200
        assert status(reader, repo="acme/blog") == 403
        assert status(reader) == 403  # every repository's
        assert status() == 401
        assert status(_bearer(revoked.plaintext)) == 401
        assert status({"Authorization": "Basic YWRhOnNlY3JldA=="}) == 401
        assert status(_bearer("kapal_" + "x" * 43), repo="acme/shop") == 401


def test_a_bad_token_is_refused_even_where_reads_are_public(
    client: TestClient, services: Services
) -> None:
    register(services)
    answer = client.get("/api/v1/pipelines", headers=_bearer("not-a-token"))
    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"] == "Bearer"
    assert "token" in error_of(answer)
    assert client.get("/api/v1/pipelines").status_code == 200
