"""The database's clock: the one time that web processes and workers on different machines share.

Times that one process writes and another compares (a worker's heartbeat against the sweeper's
cutoff, a job's queue time against the resend cutoff, a job's start against its finish) are taken
from PostgreSQL's `now()` so that machines whose clocks differ still agree. The embedded SQLite
database lives on one machine, whose clock serves.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import ColumnElement, func, literal, select
from sqlalchemy.orm import Session

from web.db.models import UTCDateTime, utcnow


def _shares_a_clock(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def database_now(session: Session) -> datetime:
    """The database's time now (on PostgreSQL, the start of the current transaction), aware, UTC."""
    if _shares_a_clock(session):
        moment: datetime | None = session.scalar(select(func.now()))
        if moment is not None:
            if moment.tzinfo is None:
                return moment.replace(tzinfo=UTC)
            return moment.astimezone(UTC)
    return utcnow()


def database_now_sql(session: Session) -> ColumnElement[datetime]:
    """The database's time as an SQL expression, for UPDATE values (no extra round trip)."""
    if _shares_a_clock(session):
        return func.now().cast(UTCDateTime())
    return literal(utcnow(), UTCDateTime())
