"""Pipelines a webhook recorded whose plan request never reached a worker: the web process
stopped between recording the pipeline and sending the request (it is answered first and sends
from a thread, `web.tasks.PlanSender`), or the message went with a broker restarted empty.

A worker with a free slot looks for them (`web.heartbeats.Heartbeat.tend`): pipelines still
`created` and unplanned `older_than` seconds after they were recorded, whose delivery says
`pipeline`. Each is taken by one worker only (a compare-and-set on its delivery's outcome, to
`PLAN_SENT_AGAIN`: on PostgreSQL a second worker waits for the first's row, then finds it
changed; SQLite has one writer), its trigger read again from the recorded delivery, and its
plan request sent again: once. Should the first request turn up after all, planning twice is
harmless (`web.orchestration.plan_recorded_pipeline` records one plan).
"""

from __future__ import annotations

import dataclasses
import logging
from datetime import timedelta

from sqlalchemy import Text, cast, or_, select, update

from web.db.clock import database_now
from web.db.models import Pipeline, WebhookDelivery
from web.db.session import rowcount
from web.errors import WebhookError
from web.hooks import Trigger, parse_recorded
from web.orchestration import Services

log = logging.getLogger(__name__)

LOST_PLAN_AFTER = 15.0  # seconds a recorded pipeline waits for its plan before it is sent again
PLAN_SENT_AGAIN = "pipeline (its plan request sent again)"
SWEEP_LIMIT = 100  # pipelines sent again per look


def resend_lost_plans(*, services: Services, older_than: float = LOST_PLAN_AFTER) -> list[int]:
    """Send again the plan requests of the webhooks' pipelines that waited `older_than`
    seconds unplanned (each once, whichever worker looks first); returns their ids."""
    with services.database.transaction() as session:
        cutoff = database_now(session) - timedelta(seconds=older_than)
        rows = session.execute(
            select(
                Pipeline.id,
                WebhookDelivery.id.label("delivery_row_id"),
                WebhookDelivery.provider,
                WebhookDelivery.headers,
                WebhookDelivery.payload,
            )
            .join(WebhookDelivery, WebhookDelivery.pipeline_id == Pipeline.id)
            .where(
                Pipeline.status == "created",
                # unplanned: SQL NULL (the hook's insert) or JSON null (the ORM's)
                or_(Pipeline.plan.is_(None), cast(Pipeline.plan, Text) == "null"),
                Pipeline.created_at < cutoff,
                WebhookDelivery.outcome == "pipeline",
            )
            .order_by(Pipeline.id)
            .limit(SWEEP_LIMIT)
        ).all()
    resent = []
    for row in rows:
        with services.database.transaction() as session:
            taken = rowcount(
                session.execute(
                    update(WebhookDelivery)
                    .where(
                        WebhookDelivery.id == row.delivery_row_id,
                        WebhookDelivery.outcome == "pipeline",
                    )
                    .values(outcome=PLAN_SENT_AGAIN)
                )
            )
        if not taken:
            continue  # another worker sent it again
        try:
            trigger = parse_recorded(row.provider, row.headers, row.payload)
        except WebhookError as exc:  # it parsed when it was recorded
            log.error("pipeline %s: its recorded delivery no longer parses: %s", row.id, exc)
            continue
        if not isinstance(trigger, Trigger):
            continue
        request = {
            "trigger": dataclasses.asdict(trigger),
            "delivery_row_id": row.delivery_row_id,
            "variables": {},
            "source": None,
        }
        services.dispatcher.plan_pipeline(row.id, request)
        resent.append(row.id)
    if resent:
        log.warning(
            "pipelines %s waited %.0fs for their plan: request sent again", resent, older_than
        )
    return resent
