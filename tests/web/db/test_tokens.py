"""API tokens: the plaintext is given once and never stored; verified by hash."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import text

from tests.web.db.factories import make_repository
from web.db.encryption import SecretCipher
from web.db.models import utcnow
from web.db.schemas import Scope
from web.db.session import Database
from web.db.tokens import (
    create_token,
    get_token_by_name,
    hash_token,
    list_tokens,
    revoke_token,
    verify_token,
)
from web.errors import ConflictError


def test_plaintext_is_never_stored(database: Database) -> None:
    with database.transaction() as session:
        created = create_token(session=session, name="ci", scopes=[Scope.WRITE])
    assert created.plaintext.startswith("kapal_") and len(created.plaintext) > 40
    assert created.plaintext.startswith(created.token.prefix)
    with database.transaction() as session:
        rows = session.execute(text("SELECT * FROM api_tokens")).all()
    dump = repr(rows)
    assert created.plaintext not in dump
    assert created.plaintext[len(created.token.prefix) :] not in dump
    assert hash_token(created.plaintext) in dump


def test_verify(database: Database) -> None:
    with database.transaction() as session:
        created = create_token(session=session, name="ci", scopes=[Scope.READ, Scope.WRITE])
        other = create_token(session=session, name="other", scopes=[Scope.READ])
    with database.transaction() as session:
        found = verify_token(session=session, plaintext=created.plaintext)
        assert verify_token(session=session, plaintext=other.plaintext) == other.token
        assert verify_token(session=session, plaintext=created.plaintext + "x") is None
        assert verify_token(session=session, plaintext="") is None
        assert verify_token(session=session, plaintext="\udcff") is None
    assert found == created.token
    assert found.scopes == [Scope.READ, Scope.WRITE]


def test_revoked_and_expired_tokens_fail(database: Database) -> None:
    with database.transaction() as session:
        revoked = create_token(session=session, name="old", scopes=[Scope.ADMIN])
        expired = create_token(
            session=session,
            name="temp",
            scopes=[Scope.READ],
            expires_at=utcnow() - timedelta(seconds=1),
        )
        later = create_token(
            session=session,
            name="later",
            scopes=[Scope.READ],
            expires_at=utcnow() + timedelta(days=1),
        )
    with database.transaction() as session:
        assert revoke_token(session=session, token_id=revoked.token.id)
        assert not revoke_token(session=session, token_id=revoked.token.id)
        assert not revoke_token(session=session, token_id=9999)
    with database.transaction() as session:
        assert verify_token(session=session, plaintext=revoked.plaintext) is None
        assert verify_token(session=session, plaintext=expired.plaintext) is None
        assert verify_token(session=session, plaintext=later.plaintext) == later.token
        listed = list_tokens(session=session)
    assert [t.name for t in listed] == ["old", "temp", "later"]
    assert listed[0].revoked_at is not None


def test_names_are_unique(database: Database) -> None:
    with database.transaction() as session:
        create_token(session=session, name="ci", scopes=[Scope.READ])
    with pytest.raises(ConflictError, match="'ci'"), database.transaction() as session:
        create_token(session=session, name="ci", scopes=[Scope.READ])
    with database.transaction() as session:
        found = get_token_by_name(session=session, name="ci")
        assert get_token_by_name(session=session, name="nope") is None
    assert found is not None and found.scopes == [Scope.READ]


def test_rights(database: Database, cipher: SecretCipher) -> None:
    with database.transaction() as session:
        repo = make_repository(session, cipher)
        reader = create_token(session=session, name="r", scopes=[Scope.READ]).token
        writer = create_token(session=session, name="w", scopes=[Scope.WRITE]).token
        admin = create_token(session=session, name="a", scopes=[Scope.ADMIN]).token
        scoped = create_token(
            session=session, name="s", scopes=[Scope.WRITE], repository_id=repo.id
        ).token
    assert reader.allows(Scope.READ) and not reader.allows(Scope.WRITE)
    assert writer.allows(Scope.WRITE) and writer.allows(Scope.READ)
    assert not writer.allows(Scope.ADMIN)
    assert admin.allows(Scope.ADMIN) and admin.allows(Scope.WRITE, repository_id=repo.id)
    assert scoped.allows(Scope.WRITE, repository_id=repo.id)
    assert not scoped.allows(Scope.WRITE, repository_id=repo.id + 1)
    assert not scoped.allows(Scope.READ)  # not across every repository
