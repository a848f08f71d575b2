"""Jobs: who played a manual or delayed attempt (`played_by`), kept after its reason changes.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply this revision: add the column, filled from the reasons of attempts still pending."""
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("played_by", sa.Text(), nullable=True))
    jobs = sa.table("jobs", sa.column("reason", sa.Text()), sa.column("played_by", sa.Text()))
    op.execute(
        jobs.update()
        .where(jobs.c.reason.like("played by %"))
        .values(played_by=sa.func.substr(jobs.c.reason, len("played by ") + 1))
    )


def downgrade() -> None:
    """Revert this revision."""
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("played_by")
