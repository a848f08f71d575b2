"""Webhook deliveries: recorded once per provider + delivery id, kept for replay."""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from web.db.models import WebhookDelivery
from web.db.paging import fetch_page
from web.db.schemas import DeliveryCreate, DeliveryRead, DeliveryRecorded, Page, Provider
from web.db.session import rowcount
from web.errors import NotFoundError


def record_delivery(*, session: Session, delivery: DeliveryCreate) -> DeliveryRecorded:
    """Record a delivery unless this provider + delivery id was recorded before.

    `created` is False for a redelivery, which then carries the first one's `pipeline_id`.
    An INSERT ... ON CONFLICT DO NOTHING: two concurrent copies of one delivery record one row
    (on PostgreSQL the second waits for the first's transaction, then sees its row).
    """
    values = {
        "provider": delivery.provider.value,
        "delivery_id": delivery.delivery_id,
        "event": delivery.event,
        "payload": delivery.payload,
        "headers": dict(delivery.headers),
        "repository_id": delivery.repository_id,
    }
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    statement = (
        insert(WebhookDelivery)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["provider", "delivery_id"])
        .returning(WebhookDelivery.id)
    )
    new_id = session.execute(statement).scalar_one_or_none()
    if new_id is not None:
        return DeliveryRecorded(id=new_id, created=True, pipeline_id=None)
    existing = session.execute(
        select(WebhookDelivery.id, WebhookDelivery.pipeline_id).where(
            WebhookDelivery.provider == delivery.provider.value,
            WebhookDelivery.delivery_id == delivery.delivery_id,
        )
    ).one()
    return DeliveryRecorded(id=existing.id, created=False, pipeline_id=existing.pipeline_id)


def finish_delivery(
    *, session: Session, id: int, outcome: str, pipeline_id: int | None = None
) -> None:
    """Say what came of a delivery (`pipeline`, `ignored: ...`) and which pipeline it made."""
    changed = rowcount(
        session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id == id)
            .values(outcome=outcome, pipeline_id=pipeline_id)
        )
    )
    if not changed:
        raise NotFoundError(f"webhook delivery {id} does not exist")


def get_delivery(*, session: Session, provider: Provider, delivery_id: str) -> DeliveryRead | None:
    """The delivery a provider sent with this id, or None."""
    row = session.scalars(
        select(WebhookDelivery).where(
            WebhookDelivery.provider == provider.value,
            WebhookDelivery.delivery_id == delivery_id,
        )
    ).one_or_none()
    return None if row is None else DeliveryRead.model_validate(row)


def list_deliveries(
    *,
    session: Session,
    repository_id: int | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> Page[DeliveryRead]:
    """Deliveries newest first (of one repository when given), with cursor pagination."""
    query = select(WebhookDelivery)
    if repository_id is not None:
        query = query.where(WebhookDelivery.repository_id == repository_id)
    return fetch_page(
        session=session,
        query=query,
        id_column=WebhookDelivery.id,
        schema=DeliveryRead,
        cursor=cursor,
        limit=limit,
    )
