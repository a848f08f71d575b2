"""Repositories: register, read, list, update, delete; credentials stored encrypted."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from tests.web.db.factories import make_repository
from web.db.encryption import SecretCipher
from web.db.repos import (
    delete_repository,
    get_repository,
    get_repository_by_name,
    get_repository_credentials,
    list_repositories,
    update_repository,
)
from web.db.schemas import Provider, RepositoryUpdate
from web.db.session import Database
from web.errors import ConflictError, NotFoundError, SecretKeyError


def test_create_then_read_by_id_and_name(database: Database, cipher: SecretCipher) -> None:
    with database.transaction() as session:
        created = make_repository(session, cipher, "acme/shop", status_token="status-token-1")
    assert created.name == "acme/shop"
    assert created.provider is Provider.GITHUB
    assert created.default_branch == "main"
    assert created.has_status_token
    assert created.created_at.tzinfo is not None
    with database.transaction() as session:
        assert get_repository(session=session, repository_id=created.id) == created
        assert get_repository_by_name(session=session, name="acme/shop") == created
        assert get_repository(session=session, repository_id=created.id + 1) is None
        assert get_repository_by_name(session=session, name="acme/other") is None


def test_a_taken_name_is_a_conflict(database: Database, cipher: SecretCipher) -> None:
    with database.transaction() as session:
        make_repository(session, cipher, "acme/shop")
    with pytest.raises(ConflictError, match="acme/shop"), database.transaction() as session:
        make_repository(session, cipher, "acme/shop")
    with database.transaction() as session:
        assert [r.name for r in list_repositories(session=session)] == ["acme/shop"]


def test_list_is_by_name(database: Database, cipher: SecretCipher) -> None:
    with database.transaction() as session:
        for name in ("b/two", "a/one", "c/three"):
            make_repository(session, cipher, name)
    with database.transaction() as session:
        assert [r.name for r in list_repositories(session=session)] == [
            "a/one",
            "b/two",
            "c/three",
        ]


def test_update_changes_only_given_fields(database: Database, cipher: SecretCipher) -> None:
    with database.transaction() as session:
        repo = make_repository(session, cipher)
    with database.transaction() as session:
        updated = update_repository(
            session=session,
            cipher=cipher,
            repository_id=repo.id,
            changes=RepositoryUpdate(
                default_branch="trunk", webhook_secret="new-hook-secret", allow_host_network=True
            ),
        )
    assert updated.default_branch == "trunk"
    assert updated.allow_host_network
    assert updated.clone_url == repo.clone_url
    with database.transaction() as session:
        creds = get_repository_credentials(session=session, cipher=cipher, repository_id=repo.id)
    assert creds.webhook_secret == "new-hook-secret"
    assert creds.status_token is None


def test_update_of_unknown_repository(database: Database, cipher: SecretCipher) -> None:
    with pytest.raises(NotFoundError, match="repository 42"), database.transaction() as session:
        update_repository(
            session=session, cipher=cipher, repository_id=42, changes=RepositoryUpdate()
        )


def test_credentials_are_encrypted_at_rest(database: Database, cipher: SecretCipher) -> None:
    with database.transaction() as session:
        repo = make_repository(
            session, cipher, webhook_secret="hook-plaintext-123", status_token="token-plain-456"
        )
    with database.transaction() as session:
        raw = session.execute(
            text("SELECT webhook_secret, status_token FROM repositories WHERE id = :id"),
            {"id": repo.id},
        ).one()
        creds = get_repository_credentials(session=session, cipher=cipher, repository_id=repo.id)
    assert b"hook-plaintext-123" not in bytes(raw.webhook_secret)
    assert b"token-plain-456" not in bytes(raw.status_token)
    assert creds.webhook_secret == "hook-plaintext-123"
    assert creds.status_token == "token-plain-456"
    with pytest.raises(SecretKeyError, match="not the key"), database.transaction() as session:
        get_repository_credentials(
            session=session, cipher=SecretCipher("another key"), repository_id=repo.id
        )


def test_delete_removes_the_repository(database: Database, cipher: SecretCipher) -> None:
    with database.transaction() as session:
        repo = make_repository(session, cipher)
    with database.transaction() as session:
        assert delete_repository(session=session, repository_id=repo.id)
        assert not delete_repository(session=session, repository_id=repo.id)
        assert get_repository(session=session, repository_id=repo.id) is None
