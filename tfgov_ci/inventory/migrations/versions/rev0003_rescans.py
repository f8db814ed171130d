"""Rescans: each `tfgov-ci rescan`, with the advisory database's digest and when, so that "new
since the last rescan" and "which database said so" stay answerable.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rescans",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("started", sa.String(32), nullable=False),
        sa.Column("advisory_db", sa.Text, nullable=False),
        sa.Column("advisory_db_digest", sa.String(100), nullable=False),
        sa.Column("advisory_files", sa.Integer, nullable=False),
        sa.Column("window_days", sa.Integer),
        sa.Column("package_versions", sa.Integer, nullable=False),
        sa.Column("new_findings", sa.Integer, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("rescans")
