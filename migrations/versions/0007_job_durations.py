"""The job run-time histogram as counters (`job_durations`), filled from the jobs that ran.

`/metrics` computed `kapal_job_duration_seconds` over the last 10,000 finished attempts at each
scrape: a histogram whose counts stopped growing once more jobs had run, read row by row. The
counters grow in the transaction that ends each attempt (`web.db.stats`); this revision makes
them and counts every attempt already ended after it started: finished, with a start and an
end time (the runs before this revision left no trace of the status they ended from). And a
partial index of the current attempts' statuses, from which `kapal_jobs` is counted.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# the buckets' upper bounds (seconds) as of this revision (`web.db.models.DURATION_BUCKETS`)
BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600)
FINISHED = ("success", "failed", "canceled", "skipped")


def upgrade() -> None:
    """Apply this revision: make the table, then count the attempts that ran and ended."""
    counters = [sa.Column(f"le_{bound}", sa.BigInteger(), nullable=False) for bound in BUCKETS]
    op.create_table(
        "job_durations",
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.Column("sum_seconds", sa.Float(), nullable=False),
        *counters,
        sa.PrimaryKeyConstraint("status", name=op.f("pk_job_durations")),
    )
    jobs = sa.table(
        "jobs",
        sa.column("status", sa.String()),
        sa.column("started_at", sa.DateTime(timezone=True)),
        sa.column("finished_at", sa.DateTime(timezone=True)),
    )
    span: sa.ColumnElement[Any]
    if op.get_bind().dialect.name == "postgresql":
        span = sa.extract("epoch", jobs.c.finished_at - jobs.c.started_at)
    else:  # SQLite keeps times as text julianday() reads, in days
        span = (sa.func.julianday(jobs.c.finished_at) - sa.func.julianday(jobs.c.started_at)) * (
            86400.0
        )
    seconds = sa.case((span > 0, span), else_=0.0)
    ran = (
        sa.select(
            jobs.c.status,
            sa.func.count().label("count"),
            sa.func.coalesce(sa.func.sum(seconds), 0.0).label("sum_seconds"),
            *(
                sa.func.sum(sa.case((seconds <= bound, 1), else_=0)).label(f"le_{bound}")
                for bound in BUCKETS
            ),
        )
        .where(
            jobs.c.status.in_(FINISHED),
            jobs.c.started_at.is_not(None),
            jobs.c.finished_at.is_not(None),
        )
        .group_by(jobs.c.status)
    )
    durations = sa.table(
        "job_durations",
        sa.column("status"),
        sa.column("count"),
        sa.column("sum_seconds"),
        *(sa.column(f"le_{bound}") for bound in BUCKETS),
    )
    names = ["status", "count", "sum_seconds", *(f"le_{bound}" for bound in BUCKETS)]
    op.execute(durations.insert().from_select(names, ran))
    # `kapal_jobs` (current attempts by status) from an index alone
    op.create_index(
        "ix_jobs_status_current",
        "jobs",
        ["status", "retried"],
        postgresql_where=sa.text("retried IS false"),
        sqlite_where=sa.text("retried IS 0"),
    )


def downgrade() -> None:
    """Revert this revision."""
    op.drop_index("ix_jobs_status_current", table_name="jobs")
    op.drop_table("job_durations")
