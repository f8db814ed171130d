"""The inventory's tables (SQLAlchemy Core), as the newest migration leaves them.

A package version is one row of ``packages`` however many images hold it (10,000 images x 300
packages is 3 million links of three integers, not 3 million copies of the same strings);
``image_packages`` links it to each image with where it was found and its licences. Everything
an image's build record and out directory say about it hangs off ``images`` and goes with it
(``ON DELETE CASCADE``). Times are UTC ISO 8601 text (``2026-01-02T03:04:05.000Z``), which sorts
as time does on both SQLite and PostgreSQL. The migrations under ``migrations/versions`` make
these tables; a test checks that the two agree.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()


def finding_columns() -> list[Column[Any]]:
    """A finding's own columns, the same in a scan's ``findings`` and a rescan's (new objects each
    call: a column belongs to one table)."""
    return [
        Column("advisory", String(200), nullable=False),  # the finding's id (CVE-..., PYSEC-...)
        Column("aliases", Text, nullable=False),  # JSON list
        Column("severity", String(10), nullable=False),
        Column("fix_state", String(20), nullable=False),
        Column("fixed_versions", Text, nullable=False),  # JSON list
        Column("cvss_score", Float),
        Column("title", Text, nullable=False),
        Column("scanners", Text, nullable=False),  # JSON list
    ]


images = Table(
    "images",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("digest", String(100), nullable=False, unique=True),
    Column("repository", Text),
    Column("governed", Boolean, nullable=False),
    Column("status", String(20)),  # the record's status when it was recorded
    Column("pipeline", String(200)),
    Column("commit_sha", String(40)),
    Column("branch", Text),
    Column("commit_time", BigInteger),
    Column("repository_url", Text),
    Column("ci_provider", String(20)),
    Column("pipeline_id", String(100)),
    Column("pipeline_url", Text),
    Column("job_id", String(100)),
    Column("job_url", Text),
    Column("builder", String(100)),  # the build stage's backend
    Column("runner_host", Text),
    Column("runner_platform", String(100)),
    Column("tfgov_ci_version", String(50)),
    Column("tools", Text),  # JSON: tool -> version line
    Column("base_ref", Text),
    Column("base_digest", String(100)),
    Column("lock_digest", String(100)),
    Column("python_version", String(50)),
    Column("tensorflow_version", String(50)),
    Column("decision", String(10)),  # allow, deny, or NULL (no policy decision)
    Column("signed", Boolean, nullable=False),
    Column("signature_ref", Text),
    Column("sbom_digest", String(100)),
    Column("record_digest", String(100)),
    Column("created", String(32)),  # the record's
    Column("recorded", String(32), nullable=False),  # when the inventory last took it in
    Index("ix_images_repository", "repository"),
    Index("ix_images_base_digest", "base_digest"),
)

image_tags = Table(
    "image_tags",
    metadata,
    Column("image_id", ForeignKey("images.id", ondelete="CASCADE"), primary_key=True),
    Column("tag", String(200), primary_key=True),
)

packages = Table(
    "packages",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("type", String(50), nullable=False),  # the purl type: pypi, deb, generic, ...
    Column("name", String(300), nullable=False),
    Column("key", String(300), nullable=False),  # the name as its ecosystem compares it
    Column("version", String(300), nullable=False),
    Column("purl", Text, nullable=False),  # '' when the SBOM gave none
    Column("source_name", String(300)),  # a Debian binary package's source package
    UniqueConstraint("type", "name", "version", "purl", name="uq_packages_identity"),
    Index("ix_packages_key", "key"),
    Index("ix_packages_source_name", "source_name"),
)

image_packages = Table(
    "image_packages",
    metadata,
    Column("image_id", ForeignKey("images.id", ondelete="CASCADE"), primary_key=True),
    Column("package_id", ForeignKey("packages.id"), primary_key=True),
    Column("location", Text, primary_key=True),  # the path the SBOM found it at ('' unknown)
    Column("layer", String(100), nullable=False),  # the layer's digest ('' unknown)
    Column("licenses", Text, nullable=False),  # JSON list of SPDX ids or names
    Index("ix_image_packages_package_image", "package_id", "image_id"),  # covering: who holds a version
)

findings = Table(
    "findings",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("image_id", ForeignKey("images.id", ondelete="CASCADE"), nullable=False),
    Column("package_id", ForeignKey("packages.id"), nullable=False),
    *finding_columns(),
    Column("origin", String(10), nullable=False),  # scan (the pipeline's); rescans': rescan_findings
    Column("advisory_db", Text),  # what the scanner matched against
    Column("advisory_db_digest", String(100)),
    Column("found", String(32), nullable=False),
    Column("excepted", Boolean, nullable=False),
    UniqueConstraint("image_id", "package_id", "advisory", "origin", name="uq_findings_identity"),
)

exceptions_used = Table(
    "exceptions_used",
    metadata,
    Column("image_id", ForeignKey("images.id", ondelete="CASCADE"), primary_key=True),
    Column("finding", String(200), primary_key=True),
    Column("package", String(300), primary_key=True),
    Column("reason", Text, nullable=False),
    Column("owner", Text, nullable=False),
    Column("approved_by", Text, nullable=False),
    Column("expires", String(32), nullable=False),
)

attestations = Table(
    "attestations",
    metadata,
    Column("image_id", ForeignKey("images.id", ondelete="CASCADE"), primary_key=True),
    Column("predicate_type", String(200), primary_key=True),
    Column("document_digest", String(100)),  # the attested document's sha256, when known
)

deployments = Table(
    "deployments",
    metadata,
    Column("image_id", ForeignKey("images.id", ondelete="CASCADE"), primary_key=True),
    Column("environment", String(200), primary_key=True),
    Column("ref", Text, nullable=False),  # as the deploy job named the image
    Column("deployed", String(32), nullable=False),
)

rescans = Table(
    "rescans",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("started", String(32), nullable=False),
    Column("advisory_db", Text, nullable=False),  # the folder
    Column("advisory_db_digest", String(100), nullable=False),  # sha256 over its files' contents
    Column("advisory_files", Integer, nullable=False),
    Column("window_days", Integer),  # None: every image
    Column("package_versions", Integer, nullable=False),  # distinct versions matched
    Column("new_findings", Integer, nullable=False),
)

# A rescan's findings, once per package version (the row the matcher found it on) and rescan: an
# image has one when it holds that package row, the rescan counted it (``rescan_images``: the
# images it found something new in), and neither the image's scan nor an earlier rescan had named
# that advisory or an alias of it for that version (see ``rescan.applied``). The advisory database
# and the time are the rescan's.
rescan_findings = Table(
    "rescan_findings",
    metadata,
    Column("id", Integer, primary_key=True),  # in the matcher's order within a rescan
    Column("rescan_id", ForeignKey("rescans.id", ondelete="CASCADE"), nullable=False),
    Column("package_id", ForeignKey("packages.id"), nullable=False),
    *finding_columns(),
    Column("images", Integer, nullable=False),  # the images it was new in, when the rescan ran
    UniqueConstraint("rescan_id", "package_id", "advisory", name="uq_rescan_findings_identity"),
    Index("ix_rescan_findings_package", "package_id"),
)

rescan_images = Table(
    "rescan_images",
    metadata,
    Column("rescan_id", ForeignKey("rescans.id", ondelete="CASCADE"), primary_key=True),
    Column("image_id", ForeignKey("images.id", ondelete="CASCADE"), primary_key=True),
    Index("ix_rescan_images_image", "image_id"),
)

instances = Table(
    "instances",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("cluster", String(200), nullable=False),  # --cluster, else the Prometheus URL's host
    Column("namespace", String(253), nullable=False),
    Column("pod", String(253), nullable=False),
    Column("container", String(253), nullable=False),
    Column("image", Text, nullable=False),  # as the cluster names it (kube-state-metrics' image)
    Column("image_id", Text, nullable=False),  # the runtime's image_id label, as it was
    # the manifest digest image_id holds: joined to images.digest when read, not a foreign key, so
    # that an instance of an image imported later is linked to it without a second sync
    Column("digest", String(100), nullable=False),
    Column("first_seen", String(32), nullable=False),
    Column("last_seen", String(32), nullable=False),
    Column("running", Boolean, nullable=False),  # in the cluster's newest sync
    UniqueConstraint("cluster", "namespace", "pod", "container", "digest", name="uq_instances_identity"),
    Index("ix_instances_digest", "digest"),
)

prometheus_syncs = Table(
    "prometheus_syncs",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("cluster", String(200), nullable=False),
    Column("url", Text, nullable=False),  # credentials masked
    Column("synced", String(32), nullable=False),  # the instant query's time
    Column("since", String(32), nullable=False),  # the range query's start
    Column("instances", Integer, nullable=False),  # running, with a digest
    Column("unknown", Integer, nullable=False),  # running images the inventory does not hold
    Column("ungoverned", Integer, nullable=False),
    Column("skipped", Integer, nullable=False),  # series without the labels or a digest
)

image_builds = Table(
    "image_builds",
    metadata,
    Column("image_id", ForeignKey("images.id", ondelete="CASCADE"), primary_key=True),
    Column("started", String(32)),  # the build stage's start
    Column("duration_s", Float),
    Column("peak_memory_bytes", BigInteger),  # None: not recorded (an older build, or a record alone)
    Column("size_bytes", BigInteger),  # the manifest's layers, compressed
    # JSON [[digest, size, diff_id], ...]: the image's own layers (diff_id '' when not recorded)
    Column("layers", Text, nullable=False),
)


def newest_first(row: Mapping[Any, Any]) -> tuple[str, str, int]:
    """An image's place in its repository's history, for "the newest image of a repository": the
    record's time, or when the inventory took it in where there is none (an image from the registry
    without a ``created`` label is as new as its import, not older than every built one); then when
    it was recorded, then its id."""
    return (row["created"] or row["recorded"] or "", row["recorded"] or "", row["id"])


def newest_of_each_repository(rows: Iterable[Mapping[Any, Any]]) -> list[Mapping[Any, Any]]:
    """The newest row (by :func:`newest_first`) of each repository; a row without one is its own."""
    newest: dict[str, Mapping[Any, Any]] = {}
    for r in rows:
        key = r["repository"] if r["repository"] is not None else f"\0{r['id']}"
        if key not in newest or newest_first(r) > newest_first(newest[key]):
            newest[key] = r
    return list(newest.values())
