"""Deployments: where each image runs, as deploy jobs report it (``inventory mark-deployed``).

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "deployments",
        sa.Column("image_id", sa.Integer, sa.ForeignKey("images.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("environment", sa.String(200), primary_key=True),
        sa.Column("ref", sa.Text, nullable=False),
        sa.Column("deployed", sa.String(32), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("deployments")
