"""`/api/v1/repos`: register, list, update, delete, secrets; and who may do it."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.web.api.conftest import AUTH, error_of
from web.db.repos import get_repository_credentials
from web.db.secrets import secrets_for_pipeline
from web.orchestration import Services

NEW = {
    "name": "acme/shop",
    "clone_url": "https://github.com/acme/shop.git",
    "provider": "github",
    "secret": "hook secret",
}


def test_register_answers_201_with_the_webhook_url(client: TestClient, services: Services) -> None:
    response = client.post("/api/v1/repos", json=NEW, headers=AUTH)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["name"] == "acme/shop"
    assert body["webhook_url"] == "http://kapal.test/hooks/github"
    assert "secret" not in body and "webhook_secret" not in body
    with services.database.transaction() as session:
        credentials = get_repository_credentials(
            session=session, cipher=services.cipher(), repository_id=body["id"]
        )
    assert credentials.webhook_secret == "hook secret"


def test_list_get_update_delete(client: TestClient) -> None:
    made = client.post("/api/v1/repos", json=NEW, headers=AUTH).json()
    other = client.post(
        "/api/v1/repos", json={**NEW, "name": "acme/api", "provider": "gitlab"}, headers=AUTH
    ).json()
    listed = client.get("/api/v1/repos").json()
    assert [r["name"] for r in listed] == ["acme/api", "acme/shop"]
    assert client.get("/api/v1/repos", params={"name": "acme/api"}).json()[0]["id"] == other["id"]
    assert client.get("/api/v1/repos", params={"name": "nope/nope"}).json() == []
    changed = client.patch(
        f"/api/v1/repos/{made['id']}", json={"default_branch": "trunk"}, headers=AUTH
    )
    assert changed.status_code == 200
    assert changed.json()["default_branch"] == "trunk"
    assert client.get(f"/api/v1/repos/{made['id']}").json()["default_branch"] == "trunk"
    assert client.delete(f"/api/v1/repos/{made['id']}", headers=AUTH).status_code == 204
    missing = client.get(f"/api/v1/repos/{made['id']}")
    assert missing.status_code == 404
    assert f"repository {made['id']} does not exist" in error_of(missing)


def test_a_taken_name_is_409(client: TestClient) -> None:
    assert client.post("/api/v1/repos", json=NEW, headers=AUTH).status_code == 201
    again = client.post("/api/v1/repos", json=NEW, headers=AUTH)
    assert again.status_code == 409
    assert "already exists" in error_of(again)


def test_bad_bodies_are_422_naming_the_field(client: TestClient) -> None:
    bad = client.post("/api/v1/repos", json={**NEW, "provider": "bitbucket"}, headers=AUTH)
    assert bad.status_code == 422
    assert "provider" in error_of(bad)
    missing = client.post("/api/v1/repos", json={"name": "x"}, headers=AUTH)
    assert missing.status_code == 422
    assert "clone_url" in error_of(missing)
    not_json = client.post(
        "/api/v1/repos",
        content=b"{not json",
        headers={**AUTH, "Content-Type": "application/json"},
    )
    assert not_json.status_code == 422
    error_of(not_json)


def test_secrets_are_write_only(client: TestClient, services: Services) -> None:
    from tests.web.api.conftest import add_pipeline

    repo = client.post("/api/v1/repos", json=NEW, headers=AUTH).json()
    put = client.put(
        f"/api/v1/repos/{repo['id']}/secrets/DEPLOY_KEY",
        json={"value": "hunter2", "protected": True},
        headers=AUTH,
    )
    assert put.status_code == 200, put.text
    assert "hunter2" not in put.text
    listed = client.get(f"/api/v1/repos/{repo['id']}/secrets", headers=AUTH)
    assert [s["name"] for s in listed.json()] == ["DEPLOY_KEY"]
    assert "hunter2" not in listed.text
    pipeline_id, _ = add_pipeline(services, repo["id"], ref="main")
    with services.database.transaction() as session:
        values = secrets_for_pipeline(
            session=session, cipher=services.cipher(), pipeline_id=pipeline_id
        )
    assert values == {"DEPLOY_KEY": "hunter2"}
    bad_name = client.put(
        f"/api/v1/repos/{repo['id']}/secrets/not-a-var", json={"value": "x"}, headers=AUTH
    )
    assert bad_name.status_code == 422
    assert "variable name" in error_of(bad_name)
    gone = client.delete(f"/api/v1/repos/{repo['id']}/secrets/DEPLOY_KEY", headers=AUTH)
    assert gone.status_code == 204
    again = client.delete(f"/api/v1/repos/{repo['id']}/secrets/DEPLOY_KEY", headers=AUTH)
    assert again.status_code == 404
    assert (
        client.put("/api/v1/repos/999/secrets/X", json={"value": "x"}, headers=AUTH).status_code
        == 404
    )
