"""The links by package version with their image: ``which`` and ``rescan`` ask which images hold
a version, and the index answers it alone (covering), without reading each link row.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_image_packages_package_image", "image_packages", ["package_id", "image_id"])
    op.drop_index("ix_image_packages_package", table_name="image_packages")


def downgrade() -> None:
    op.create_index("ix_image_packages_package", "image_packages", ["package_id"])
    op.drop_index("ix_image_packages_package_image", table_name="image_packages")
