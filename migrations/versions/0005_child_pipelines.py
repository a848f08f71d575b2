"""Child pipelines: a pipeline started by a `trigger:` job names that job (`parent_job_id`).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply this revision."""
    with op.batch_alter_table("pipelines") as batch:
        batch.add_column(sa.Column("parent_job_id", sa.Integer(), nullable=True))
        batch.create_foreign_key(
            op.f("fk_pipelines_parent_job_id_jobs"),
            "jobs",
            ["parent_job_id"],
            ["id"],
            ondelete="SET NULL",
        )
        batch.create_index(op.f("ix_pipelines_parent_job_id"), ["parent_job_id"])


def downgrade() -> None:
    """Revert this revision."""
    with op.batch_alter_table("pipelines") as batch:
        batch.drop_index(op.f("ix_pipelines_parent_job_id"))
        batch.drop_constraint(op.f("fk_pipelines_parent_job_id_jobs"), type_="foreignkey")
        batch.drop_column("parent_job_id")
