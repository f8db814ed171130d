"""A rescan's findings once per package version, not once per image: ``rescan_findings`` (the
finding, on the package row it was found on, of the rescan that found it) and ``rescan_images``
(the images each rescan found something new in). An image has a rescan's finding when it holds
that package version and the rescan found something new in it (see ``inventory/rescan.py``): the
first rescan of 10,000 images of one base stored 1.6 million rows, one per image, where 20,000
per version say the same. The rescan findings stored in ``findings`` (origin ``rescan``) move
there, each with its rescan (by the time both were stamped with); a finding whose rescan row is
missing gets one.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rescan_findings",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("rescan_id", sa.Integer, sa.ForeignKey("rescans.id", ondelete="CASCADE"), nullable=False),
        sa.Column("package_id", sa.Integer, sa.ForeignKey("packages.id"), nullable=False),
        sa.Column("advisory", sa.String(200), nullable=False),
        sa.Column("aliases", sa.Text, nullable=False),
        sa.Column("severity", sa.String(10), nullable=False),
        sa.Column("fix_state", sa.String(20), nullable=False),
        sa.Column("fixed_versions", sa.Text, nullable=False),
        sa.Column("cvss_score", sa.Float),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("scanners", sa.Text, nullable=False),
        sa.Column("images", sa.Integer, nullable=False),
        sa.UniqueConstraint("rescan_id", "package_id", "advisory", name="uq_rescan_findings_identity"),
    )
    op.create_index("ix_rescan_findings_package", "rescan_findings", ["package_id"])
    op.create_table(
        "rescan_images",
        sa.Column("rescan_id", sa.Integer, sa.ForeignKey("rescans.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("image_id", sa.Integer, sa.ForeignKey("images.id", ondelete="CASCADE"), primary_key=True),
    )
    op.create_index("ix_rescan_images_image", "rescan_images", ["image_id"])
    # A rescan stamped its findings' `found` with its own `started`; one without its row gets one.
    op.execute(
        "INSERT INTO rescans (started, advisory_db, advisory_db_digest, advisory_files, window_days,"
        " package_versions, new_findings)"
        " SELECT found, MIN(COALESCE(advisory_db, '')), MIN(COALESCE(advisory_db_digest, '')), 0, NULL, 0,"
        " COUNT(*) FROM findings WHERE origin = 'rescan'"
        " AND found NOT IN (SELECT started FROM rescans) GROUP BY found ORDER BY found"
    )
    by_time = "(SELECT MIN(id) AS id, started FROM rescans GROUP BY started) r"
    # in the order they were found (a rescan's findings in its matcher's order: readers keep it)
    op.execute(
        "INSERT INTO rescan_findings (rescan_id, package_id, advisory, aliases, severity, fix_state,"
        " fixed_versions, cvss_score, title, scanners, images)"
        " SELECT r.id, f.package_id, f.advisory, MIN(f.aliases), MIN(f.severity), MIN(f.fix_state),"
        " MIN(f.fixed_versions), MIN(f.cvss_score), MIN(f.title), MIN(f.scanners),"
        " COUNT(DISTINCT f.image_id)"
        f" FROM findings f JOIN {by_time} ON r.started = f.found WHERE f.origin = 'rescan'"
        " GROUP BY r.id, f.package_id, f.advisory ORDER BY MIN(f.id)"
    )
    op.execute(
        "INSERT INTO rescan_images (rescan_id, image_id)"
        f" SELECT DISTINCT r.id, f.image_id FROM findings f JOIN {by_time} ON r.started = f.found"
        " WHERE f.origin = 'rescan'"
    )
    op.execute("DELETE FROM findings WHERE origin = 'rescan'")


def downgrade() -> None:
    # every image holding the version and counted by its rescan (the upgrade's inverse but for a
    # finding an image already had from its scan, which the readers leave out)
    op.execute(
        "INSERT INTO findings (image_id, package_id, advisory, aliases, severity, fix_state,"
        " fixed_versions, cvss_score, title, scanners, origin, advisory_db, advisory_db_digest, found,"
        " excepted)"
        " SELECT DISTINCT s.image_id, f.package_id, f.advisory, f.aliases, f.severity, f.fix_state,"
        " f.fixed_versions, f.cvss_score, f.title, f.scanners, 'rescan', r.advisory_db,"
        " r.advisory_db_digest, r.started, false"
        " FROM rescan_findings f JOIN rescans r ON r.id = f.rescan_id"
        " JOIN rescan_images s ON s.rescan_id = f.rescan_id"
        " JOIN image_packages l ON l.image_id = s.image_id AND l.package_id = f.package_id"
    )
    op.drop_index("ix_rescan_images_image", table_name="rescan_images")
    op.drop_table("rescan_images")
    op.drop_index("ix_rescan_findings_package", table_name="rescan_findings")
    op.drop_table("rescan_findings")
