"""Artifact expiry: when a job attempt's artifacts expire (`artifacts_expire_at`, None: never)
and whether the expiry sweep removed them (`artifacts_expired`), with a partial index of the
attempts whose artifacts are still kept, which the sweep reads by expiry time.

Attempts finished before this revision keep their artifacts (None): as in GitLab, an expiry
setting applies to the artifacts made after it.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply this revision."""
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(
            sa.Column("artifacts_expire_at", sa.DateTime(timezone=True), nullable=True)
        )
        batch.add_column(
            sa.Column("artifacts_expired", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    op.create_index(
        "ix_jobs_artifacts_kept",
        "jobs",
        ["artifacts_expire_at"],
        postgresql_where=sa.text("artifacts_expired IS false AND artifacts_expire_at IS NOT NULL"),
        sqlite_where=sa.text("artifacts_expired IS 0 AND artifacts_expire_at IS NOT NULL"),
    )


def downgrade() -> None:
    """Revert this revision."""
    op.drop_index("ix_jobs_artifacts_kept", table_name="jobs")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("artifacts_expired")
        batch.drop_column("artifacts_expire_at")
