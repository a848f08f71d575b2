"""Repository secrets: encrypted at rest; protected ones only reach trusted protected refs."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from tests.web.db.factories import make_pipeline, make_repository
from web.db.encryption import SecretCipher
from web.db.secrets import (
    delete_secret,
    is_protected_ref,
    list_secrets,
    secrets_for_pipeline,
    set_secret,
)
from web.db.session import Database
from web.errors import NotFoundError, SecretKeyError

PLAIN = "s3cr3t-deploy-key-value"


def test_values_are_encrypted_at_rest(database: Database, cipher: SecretCipher) -> None:
    with database.transaction() as session:
        repo = make_repository(session, cipher)
        stored = set_secret(
            session=session, cipher=cipher, repository_id=repo.id, name="DEPLOY_KEY", value=PLAIN
        )
    assert not hasattr(stored, "value")
    with database.transaction() as session:
        raw = session.execute(text("SELECT value FROM secrets")).scalar_one()
    assert PLAIN.encode() not in bytes(raw)
    assert cipher.decrypt(bytes(raw)) == PLAIN


def test_set_replaces_list_and_delete(database: Database, cipher: SecretCipher) -> None:
    with database.transaction() as session:
        repo = make_repository(session, cipher)
        first = set_secret(
            session=session, cipher=cipher, repository_id=repo.id, name="B_TOKEN", value="one-1"
        )
        set_secret(
            session=session, cipher=cipher, repository_id=repo.id, name="A_KEY", value="two-22"
        )
        replaced = set_secret(
            session=session,
            cipher=cipher,
            repository_id=repo.id,
            name="B_TOKEN",
            value="three-333",
            protected=True,
        )
    assert replaced.id == first.id and replaced.protected
    with database.transaction() as session:
        listed = list_secrets(session=session, repository_id=repo.id)
        assert delete_secret(session=session, repository_id=repo.id, name="A_KEY")
        assert not delete_secret(session=session, repository_id=repo.id, name="A_KEY")
        left = list_secrets(session=session, repository_id=repo.id)
    assert [(s.name, s.protected) for s in listed] == [("A_KEY", False), ("B_TOKEN", True)]
    assert [s.name for s in left] == ["B_TOKEN"]
    with pytest.raises(NotFoundError), database.transaction() as session:
        set_secret(session=session, cipher=cipher, repository_id=repo.id + 1, name="X", value="v")


@pytest.mark.parametrize(
    ("ref", "tag", "source", "gets_protected"),
    [
        ("main", False, "push", True),
        ("main", False, "api", True),
        ("release/1.2", False, "push", True),
        ("v1.0", True, "push", True),
        ("feature/x", False, "push", False),
        ("main", True, "push", False),  # a tag named like the default branch is not it
        ("release/1.2", True, "push", False),
        ("main", False, "merge_request_event", False),  # a fork's code, whatever its branch
    ],
)
def test_protected_secrets_reach_only_protected_refs(
    database: Database,
    cipher: SecretCipher,
    ref: str,
    tag: bool,
    source: str,
    gets_protected: bool,
) -> None:
    with database.transaction() as session:
        repo = make_repository(
            session, cipher, protected_refs=["refs/heads/release/*", "refs/tags/v*"]
        )
        set_secret(
            session=session, cipher=cipher, repository_id=repo.id, name="OPEN", value="open-val"
        )
        set_secret(
            session=session,
            cipher=cipher,
            repository_id=repo.id,
            name="DEPLOY",
            value="deploy-val",
            protected=True,
        )
        pipeline = make_pipeline(session, repo.id, ref=ref, tag=tag, source=source)
    with database.transaction() as session:
        given = secrets_for_pipeline(session=session, cipher=cipher, pipeline_id=pipeline.id)
    expected = {"OPEN": "open-val"} | ({"DEPLOY": "deploy-val"} if gets_protected else {})
    assert given == expected


def test_wrong_key_is_an_error_not_garbage(database: Database, cipher: SecretCipher) -> None:
    with database.transaction() as session:
        repo = make_repository(session, cipher)
        set_secret(session=session, cipher=cipher, repository_id=repo.id, name="K", value=PLAIN)
        pipeline = make_pipeline(session, repo.id)
    with pytest.raises(SecretKeyError, match="KAPAL_ENCRYPTION_KEY"), database.transaction() as s:
        secrets_for_pipeline(session=s, cipher=SecretCipher("other"), pipeline_id=pipeline.id)
    with pytest.raises(NotFoundError), database.transaction() as session:
        secrets_for_pipeline(session=session, cipher=cipher, pipeline_id=pipeline.id + 1)


def test_is_protected_ref_patterns() -> None:
    patterns = ["refs/heads/stable-*"]
    assert is_protected_ref(default_branch="trunk", protected_refs=patterns, ref="trunk", tag=False)
    assert is_protected_ref(
        default_branch="trunk", protected_refs=patterns, ref="stable-2", tag=False
    )
    assert not is_protected_ref(
        default_branch="trunk", protected_refs=patterns, ref="stable-2", tag=True
    )
    assert not is_protected_ref(
        default_branch="trunk", protected_refs=patterns, ref="x/stable-2", tag=False
    )
    # `*` is the only wildcard, as in GitLab (and as `kapal run` matches): `?` and `[...]` are
    # themselves, so a pattern never protects more branches than it names
    for pattern, ref in (("refs/heads/v?", "v1"), ("refs/heads/[ab]", "a")):
        assert not is_protected_ref(
            default_branch="trunk", protected_refs=[pattern], ref=ref, tag=False
        )
    assert is_protected_ref(
        default_branch="trunk", protected_refs=["refs/tags/v*"], ref="v1", tag=True
    )
