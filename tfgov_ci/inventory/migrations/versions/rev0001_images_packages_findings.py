"""Images, their tags, packages (once per distinct version) linked to images, findings, the
exceptions used, attestations: what ``inventory import`` of a build record stores.

Revision ID: 0001
Revises: none
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "images",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("digest", sa.String(100), nullable=False, unique=True),
        sa.Column("repository", sa.Text),
        sa.Column("governed", sa.Boolean, nullable=False),
        sa.Column("status", sa.String(20)),
        sa.Column("pipeline", sa.String(200)),
        sa.Column("commit_sha", sa.String(40)),
        sa.Column("branch", sa.Text),
        sa.Column("commit_time", sa.BigInteger),
        sa.Column("repository_url", sa.Text),
        sa.Column("ci_provider", sa.String(20)),
        sa.Column("pipeline_id", sa.String(100)),
        sa.Column("pipeline_url", sa.Text),
        sa.Column("job_id", sa.String(100)),
        sa.Column("job_url", sa.Text),
        sa.Column("builder", sa.String(100)),
        sa.Column("runner_host", sa.Text),
        sa.Column("runner_platform", sa.String(100)),
        sa.Column("tfgov_ci_version", sa.String(50)),
        sa.Column("tools", sa.Text),
        sa.Column("base_ref", sa.Text),
        sa.Column("base_digest", sa.String(100)),
        sa.Column("lock_digest", sa.String(100)),
        sa.Column("python_version", sa.String(50)),
        sa.Column("tensorflow_version", sa.String(50)),
        sa.Column("decision", sa.String(10)),
        sa.Column("signed", sa.Boolean, nullable=False),
        sa.Column("signature_ref", sa.Text),
        sa.Column("sbom_digest", sa.String(100)),
        sa.Column("record_digest", sa.String(100)),
        sa.Column("created", sa.String(32)),
        sa.Column("recorded", sa.String(32), nullable=False),
    )
    op.create_index("ix_images_repository", "images", ["repository"])
    op.create_index("ix_images_base_digest", "images", ["base_digest"])
    op.create_table(
        "image_tags",
        sa.Column("image_id", sa.Integer, sa.ForeignKey("images.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("tag", sa.String(200), primary_key=True),
    )
    op.create_table(
        "packages",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("type", sa.String(50), nullable=False),
        sa.Column("name", sa.String(300), nullable=False),
        sa.Column("key", sa.String(300), nullable=False),
        sa.Column("version", sa.String(300), nullable=False),
        sa.Column("purl", sa.Text, nullable=False),
        sa.Column("source_name", sa.String(300)),
        sa.UniqueConstraint("type", "name", "version", "purl", name="uq_packages_identity"),
    )
    op.create_index("ix_packages_key", "packages", ["key"])
    op.create_index("ix_packages_source_name", "packages", ["source_name"])
    op.create_table(
        "image_packages",
        sa.Column("image_id", sa.Integer, sa.ForeignKey("images.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("package_id", sa.Integer, sa.ForeignKey("packages.id"), primary_key=True),
        sa.Column("location", sa.Text, primary_key=True),
        sa.Column("layer", sa.String(100), nullable=False),
        sa.Column("licenses", sa.Text, nullable=False),
    )
    op.create_index("ix_image_packages_package", "image_packages", ["package_id"])
    op.create_table(
        "findings",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("image_id", sa.Integer, sa.ForeignKey("images.id", ondelete="CASCADE"), nullable=False),
        sa.Column("package_id", sa.Integer, sa.ForeignKey("packages.id"), nullable=False),
        sa.Column("advisory", sa.String(200), nullable=False),
        sa.Column("aliases", sa.Text, nullable=False),
        sa.Column("severity", sa.String(10), nullable=False),
        sa.Column("fix_state", sa.String(20), nullable=False),
        sa.Column("fixed_versions", sa.Text, nullable=False),
        sa.Column("cvss_score", sa.Float),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("scanners", sa.Text, nullable=False),
        sa.Column("origin", sa.String(10), nullable=False),
        sa.Column("advisory_db", sa.Text),
        sa.Column("advisory_db_digest", sa.String(100)),
        sa.Column("found", sa.String(32), nullable=False),
        sa.Column("excepted", sa.Boolean, nullable=False),
        sa.UniqueConstraint("image_id", "package_id", "advisory", "origin", name="uq_findings_identity"),
    )
    op.create_table(
        "exceptions_used",
        sa.Column("image_id", sa.Integer, sa.ForeignKey("images.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("finding", sa.String(200), primary_key=True),
        sa.Column("package", sa.String(300), primary_key=True),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("owner", sa.Text, nullable=False),
        sa.Column("approved_by", sa.Text, nullable=False),
        sa.Column("expires", sa.String(32), nullable=False),
    )
    op.create_table(
        "attestations",
        sa.Column("image_id", sa.Integer, sa.ForeignKey("images.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("predicate_type", sa.String(200), primary_key=True),
        sa.Column("document_digest", sa.String(100)),
    )


def downgrade() -> None:
    for table in ("attestations", "exceptions_used", "findings", "image_packages", "packages"):
        op.drop_table(table)
    op.drop_table("image_tags")
    op.drop_table("images")
