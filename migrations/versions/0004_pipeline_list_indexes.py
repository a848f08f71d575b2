"""Indexes for the pipelines list's filters, each ending in the id it is sorted and paged by.

A branch without a repository, a source, and a repository's pipelines of one status each read
an index newest first and stop after one page, where before a rare value (`?source=api`, a
branch no repository has) read the whole table.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEXES = {
    "ix_pipelines_ref_id": ["ref", "id"],
    "ix_pipelines_source_id": ["source", "id"],
    "ix_pipelines_repository_status_id": ["repository_id", "status", "id"],
}


def upgrade() -> None:
    """Apply this revision."""
    for name, columns in INDEXES.items():
        op.create_index(name, "pipelines", columns)


def downgrade() -> None:
    """Revert this revision."""
    for name in reversed(INDEXES):
        op.drop_index(name, table_name="pipelines")
