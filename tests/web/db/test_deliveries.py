"""Webhook deliveries: recorded once per provider + delivery id, raw body kept for replay."""

from __future__ import annotations

import pytest

from tests.support.threads import run_at_once
from tests.web.db.factories import make_pipeline, make_repository
from web.db.deliveries import finish_delivery, get_delivery, list_deliveries, record_delivery
from web.db.encryption import SecretCipher
from web.db.schemas import DeliveryCreate, DeliveryRecorded, Provider
from web.db.session import Database
from web.errors import NotFoundError

BODY = b'{"ref": "refs/heads/main", "after": "' + b"a" * 40 + b'", "bin": "\xff\x00"}'


def _delivery(delivery_id: str = "guid-1", provider: Provider = Provider.GITHUB) -> DeliveryCreate:
    return DeliveryCreate(
        provider=provider,
        delivery_id=delivery_id,
        event="push",
        payload=BODY,
        headers={"X-GitHub-Event": "push", "X-Hub-Signature-256": "sha256=00"},
    )


def test_a_redelivery_returns_the_first_pipeline(database: Database, cipher: SecretCipher) -> None:
    with database.transaction() as session:
        repo = make_repository(session, cipher)
        first = record_delivery(session=session, delivery=_delivery())
        assert first.created and first.pipeline_id is None
        pipeline = make_pipeline(session, repo.id, delivery_id="guid-1")
        finish_delivery(session=session, id=first.id, outcome="pipeline", pipeline_id=pipeline.id)
    with database.transaction() as session:
        again = record_delivery(session=session, delivery=_delivery())
    assert again == DeliveryRecorded(id=first.id, created=False, pipeline_id=pipeline.id)
    with database.transaction() as session:
        other_host = record_delivery(session=session, delivery=_delivery(provider=Provider.GITEA))
        other_id = record_delivery(session=session, delivery=_delivery("guid-2"))
    assert other_host.created and other_id.created
    assert len({first.id, other_host.id, other_id.id}) == 3


def test_payload_and_headers_are_kept_for_replay(database: Database) -> None:
    with database.transaction() as session:
        recorded = record_delivery(session=session, delivery=_delivery())
        finish_delivery(session=session, id=recorded.id, outcome="ignored: tag deleted")
    with database.transaction() as session:
        stored = get_delivery(session=session, provider=Provider.GITHUB, delivery_id="guid-1")
        assert get_delivery(session=session, provider=Provider.GITLAB, delivery_id="guid-1") is None
    assert stored is not None
    assert stored.payload == BODY
    assert stored.headers["X-Hub-Signature-256"] == "sha256=00"
    assert stored.outcome == "ignored: tag deleted" and stored.pipeline_id is None
    with pytest.raises(NotFoundError), database.transaction() as session:
        finish_delivery(session=session, id=recorded.id + 1, outcome="x")


def test_concurrent_copies_record_one_row(database: Database) -> None:
    def deliver(_: int) -> DeliveryRecorded:
        with database.transaction() as session:
            return record_delivery(session=session, delivery=_delivery("same"))

    results = run_at_once(6, deliver)
    assert all(isinstance(r, DeliveryRecorded) for r in results), results
    recorded = [r for r in results if isinstance(r, DeliveryRecorded)]
    assert sum(r.created for r in recorded) == 1
    assert len({r.id for r in recorded}) == 1


def test_list_newest_first(database: Database, cipher: SecretCipher) -> None:
    with database.transaction() as session:
        repo = make_repository(session, cipher)
        ids = []
        for n in range(5):
            delivery = _delivery(f"g{n}").model_copy(update={"repository_id": repo.id})
            ids.append(record_delivery(session=session, delivery=delivery).id)
        record_delivery(session=session, delivery=_delivery("no-repo"))
    with database.transaction() as session:
        first = list_deliveries(session=session, repository_id=repo.id, limit=3)
        rest = list_deliveries(
            session=session, repository_id=repo.id, cursor=first.next_cursor, limit=3
        )
        everything = list_deliveries(session=session)
    assert [d.id for d in first.items + rest.items] == ids[::-1]
    assert rest.next_cursor is None
    assert len(everything.items) == 6
