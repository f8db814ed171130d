"""Instances: the containers a cluster runs, from kube-state-metrics through Prometheus
(``inventory sync-prometheus``), and each sync.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "instances",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("cluster", sa.String(200), nullable=False),
        sa.Column("namespace", sa.String(253), nullable=False),
        sa.Column("pod", sa.String(253), nullable=False),
        sa.Column("container", sa.String(253), nullable=False),
        sa.Column("image", sa.Text, nullable=False),
        sa.Column("image_id", sa.Text, nullable=False),
        sa.Column("digest", sa.String(100), nullable=False),
        sa.Column("first_seen", sa.String(32), nullable=False),
        sa.Column("last_seen", sa.String(32), nullable=False),
        sa.Column("running", sa.Boolean, nullable=False),
        sa.UniqueConstraint(
            "cluster", "namespace", "pod", "container", "digest", name="uq_instances_identity"
        ),
    )
    op.create_index("ix_instances_digest", "instances", ["digest"])
    op.create_table(
        "prometheus_syncs",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("cluster", sa.String(200), nullable=False),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("synced", sa.String(32), nullable=False),
        sa.Column("since", sa.String(32), nullable=False),
        sa.Column("instances", sa.Integer, nullable=False),
        sa.Column("unknown", sa.Integer, nullable=False),
        sa.Column("ungoverned", sa.Integer, nullable=False),
        sa.Column("skipped", sa.Integer, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("prometheus_syncs")
    op.drop_index("ix_instances_digest", "instances")
    op.drop_table("instances")
