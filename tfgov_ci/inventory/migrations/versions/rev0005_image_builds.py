"""Image builds: what each build cost (duration, peak memory, image and layer sizes), for
``inventory stale`` and ``inventory forecast``.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "image_builds",
        sa.Column("image_id", sa.Integer, sa.ForeignKey("images.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("started", sa.String(32)),
        sa.Column("duration_s", sa.Float),
        sa.Column("peak_memory_bytes", sa.BigInteger),
        sa.Column("size_bytes", sa.BigInteger),
        sa.Column("layers", sa.Text, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("image_builds")
