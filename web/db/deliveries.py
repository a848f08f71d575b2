"""Webhook deliveries: recorded once per provider + delivery id, kept for replay."""

from __future__ import annotations

from functools import cache
from typing import Any

from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from web.db.models import Pipeline, WebhookDelivery, utcnow
from web.db.paging import fetch_page
from web.db.schemas import (
    DeliveryCreate,
    DeliveryRead,
    DeliveryRecorded,
    Page,
    PipelineCreate,
    PipelineRead,
    Provider,
)
from web.db.session import rowcount
from web.errors import NotFoundError


def _delivery_values(delivery: DeliveryCreate) -> dict[str, Any]:
    return {
        "provider": delivery.provider.value,
        "delivery_id": delivery.delivery_id,
        "event": delivery.event,
        "payload": delivery.payload,
        "headers": dict(delivery.headers),
        "repository_id": delivery.repository_id,
    }


def record_delivery(*, session: Session, delivery: DeliveryCreate) -> DeliveryRecorded:
    """Record a delivery unless this provider + delivery id was recorded before.

    `created` is False for a redelivery, which then carries the first one's `pipeline_id`.
    An INSERT ... ON CONFLICT DO NOTHING: two concurrent copies of one delivery record one row
    (on PostgreSQL the second waits for the first's transaction, then sees its row).
    """
    values = _delivery_values(delivery)
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


def record_delivery_pipeline(
    *, session: Session, delivery: DeliveryCreate, pipeline: PipelineCreate | None, outcome: str
) -> tuple[DeliveryRecorded, PipelineRead | None]:
    """Record a delivery with its `outcome` and, when it is new and `pipeline` is given, that
    pipeline linked to it; a redelivery records nothing and carries the first one's pipeline
    and outcome (`DeliveryRecorded.created` False, no `PipelineRead`).

    On PostgreSQL one statement (one round trip, atomic without the caller's transaction): the
    delivery takes the pipeline's id from its sequence as it is inserted (ON CONFLICT DO NOTHING
    on provider + delivery id), and the pipeline is inserted from the delivery row that was
    made, so a copy of the delivery arriving meanwhile waits for the first, then finds the
    pipeline linked. Elsewhere (SQLite, one writer at a time) the same in three statements.
    """
    values = {**_delivery_values(delivery), "outcome": outcome, "received_at": utcnow()}
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql" and pipeline is not None and pipeline.plan is None:
        columns = _pipeline_values(pipeline)
        bound = {f"d_{name}": values[name] for name in _DELIVERY_COLUMNS}
        bound.update({f"p_{name}": columns[name] for name in _PIPELINE_COLUMNS})
        made = session.execute(_delivery_and_pipeline(), bound).one_or_none()
        if made is not None:
            row = dict(made._mapping)
            recorded = DeliveryRecorded(
                id=row.pop("delivery_row_id"), created=True, pipeline_id=row["id"]
            )
            return recorded, PipelineRead.model_validate(row)
    else:
        insert_row = postgresql.insert if dialect == "postgresql" else sqlite.insert
        new_id = session.execute(
            insert_row(WebhookDelivery)
            .values(**values)
            .on_conflict_do_nothing(index_elements=["provider", "delivery_id"])
            .returning(WebhookDelivery.id)
        ).scalar_one_or_none()
        if new_id is not None:
            if pipeline is None:
                return DeliveryRecorded(id=new_id, created=True, pipeline_id=None), None
            inserted = session.execute(
                insert(Pipeline).values(**_pipeline_values(pipeline)).returning(*_READ_COLUMNS)
            ).one()
            finish_delivery(session=session, id=new_id, outcome=outcome, pipeline_id=inserted.id)
            made_pipeline = PipelineRead.model_validate(dict(inserted._mapping))
            return DeliveryRecorded(id=new_id, created=True, pipeline_id=inserted.id), made_pipeline
    earlier = session.execute(
        select(WebhookDelivery.id, WebhookDelivery.pipeline_id, WebhookDelivery.outcome).where(
            WebhookDelivery.provider == delivery.provider.value,
            WebhookDelivery.delivery_id == delivery.delivery_id,
        )
    ).one()
    return (
        DeliveryRecorded(
            id=earlier.id, created=False, pipeline_id=earlier.pipeline_id, outcome=earlier.outcome
        ),
        None,
    )


_READ_COLUMNS = tuple(Pipeline.__table__.c[name] for name in PipelineRead.model_fields)


def _pipeline_values(pipeline: PipelineCreate) -> dict[str, Any]:
    values = pipeline.model_dump()
    if values["plan"] is None:
        del values["plan"]  # SQL NULL, as the ORM leaves an unset column
    return {**values, "lock_version": 0, "created_at": utcnow()}


_DELIVERY_COLUMNS = (
    "provider",
    "delivery_id",
    "event",
    "payload",
    "headers",
    "repository_id",
    "outcome",
    "received_at",
)
# a webhook's pipeline is recorded unplanned (its `plan` NULL)
_PIPELINE_COLUMNS = (
    *(name for name in PipelineCreate.model_fields if name != "plan"),
    "lock_version",
    "created_at",
)


@cache
def _delivery_and_pipeline() -> Any:
    """`WITH delivery AS (INSERT ... ON CONFLICT DO NOTHING RETURNING), made AS (INSERT INTO
    pipelines SELECT ... FROM delivery RETURNING ...) SELECT` the delivery row's id and the
    pipeline: no row when the delivery was recorded before. Made once (building it costs more
    than running it); the values are bound as `d_<column>` and `p_<column>`."""
    deliveries = WebhookDelivery.__table__
    pipelines = Pipeline.__table__
    next_id = func.nextval(func.pg_get_serial_sequence("pipelines", "id"))
    delivery = (
        postgresql.insert(WebhookDelivery)
        .values(
            {
                **{
                    name: bindparam(f"d_{name}", type_=deliveries.c[name].type)
                    for name in _DELIVERY_COLUMNS
                },
                "pipeline_id": next_id,
            }
        )
        .on_conflict_do_nothing(index_elements=["provider", "delivery_id"])
        .returning(deliveries.c.id, deliveries.c.pipeline_id)
        .cte("delivery")
    )
    made = (
        insert(Pipeline)
        .from_select(
            ["id", *_PIPELINE_COLUMNS],
            select(
                delivery.c.pipeline_id,
                *(
                    bindparam(f"p_{name}", type_=pipelines.c[name].type)
                    for name in _PIPELINE_COLUMNS
                ),
            ),
        )
        .returning(*_READ_COLUMNS)
        .cte("made")
    )
    return select(delivery.c.id.label("delivery_row_id"), *made.c).join_from(
        delivery, made, made.c.id == delivery.c.pipeline_id
    )


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
