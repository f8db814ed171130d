"""Writing an image into the store: idempotent, and whole or nothing.

:func:`save` runs inside one write transaction (:meth:`Store.writing`): the image row is upserted
by digest (the same image twice is one row), everything its record says is replaced, and packages
are inserted once per distinct version (``ON CONFLICT DO NOTHING``), then looked up. Two pipelines
recording at once into PostgreSQL cannot lose or duplicate a row: the unique constraints decide,
and each transaction inserts packages in one sorted order, so two never wait on each other in a
cycle. What deploy jobs and rescans added to an image (deployments, rescan findings) is kept.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tfgov_ci.inventory import builds, evidence, tables
from tfgov_ci.inventory.evidence import ImageEvidence
from tfgov_ci.inventory.sbom import Package
from tfgov_ci.pipeline import now
from tfgov_ci.stages.scan.advisories import source_name

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from tfgov_ci.findings import Finding
    from tfgov_ci.inventory.store import Store


def insert(conn: Connection, table: Any) -> Any:
    """The dialect's INSERT, which has ``on_conflict_do_nothing`` / ``on_conflict_do_update``."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table)
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(table)


def _finding_package(finding: Finding) -> Package:
    return Package(
        finding.package_type,
        finding.package,
        finding.installed_version,
        finding.purl or "",
        finding.source_package
        or (source_name(finding.purl or "") if finding.package_type == "deb" else None),
    )


Identity = tuple[str, str, str, str]
_CHUNK = 400  # identities a lookup asks at once: under SQLite's old limit of 999 bound parameters


class PackageIds:
    """The row ids of package versions an import has already stored or found, kept across its
    images: a package row is never changed or deleted, so an id seen committed stays right. Ids
    learnt inside a transaction are kept only once it has committed (:meth:`keep`)."""

    def __init__(self) -> None:
        self.committed: dict[Identity, int] = {}
        self.pending: dict[Identity, int] = {}

    def keep(self) -> None:
        self.committed.update(self.pending)
        self.pending.clear()


def package_ids(
    conn: Connection, packages: Iterable[Package], cache: PackageIds | None = None
) -> dict[Identity, int]:
    """The row id of each distinct package version, inserting those the store does not hold yet.

    Those ``cache`` knows are not asked again; the others are looked up by identity, the ones
    still missing inserted (one prepared statement, executemany, in sorted order) and looked up."""
    wanted = {(p.type, p.name, p.version, p.purl): p for p in packages}
    known = cache.committed if cache is not None else {}
    found = {identity: known[identity] for identity in wanted if identity in known}
    missing = sorted(identity for identity in wanted if identity not in found)
    if missing:
        _look_up(conn, missing, found)
        absent = [identity for identity in missing if identity not in found]
        if absent:
            rows = [
                {
                    "type": p.type,
                    "name": p.name,
                    "key": p.key,
                    "version": p.version,
                    "purl": p.purl,
                    "source_name": p.source_name,
                }
                for p in (wanted[identity] for identity in absent)
            ]
            conn.execute(insert(conn, tables.packages).on_conflict_do_nothing(), rows)
            _look_up(conn, absent, found)
        if cache is not None:
            cache.pending.update({identity: found[identity] for identity in missing})
    return found


def _look_up(conn: Connection, identities: Sequence[Identity], found: dict[Identity, int]) -> None:
    """Each identity's row id, where there is one. Asked as ``type = ? AND name IN (...) AND
    version IN (...)``, which walks the identity's unique index on both SQLite and PostgreSQL (a
    row-value ``IN`` makes SQLite scan the whole table), then keeps the exact identities."""
    from sqlalchemy import select

    table = tables.packages
    wanted = set(identities)
    by_type: dict[str, list[Identity]] = {}
    for identity in identities:
        by_type.setdefault(identity[0], []).append(identity)
    for kind, group in sorted(by_type.items()):
        for start in range(0, len(group), _CHUNK):
            chunk = group[start : start + _CHUNK]
            query = select(table.c.id, table.c.name, table.c.version, table.c.purl).where(
                table.c.type == kind,
                table.c.name.in_(sorted({i[1] for i in chunk})),
                table.c.version.in_(sorted({i[2] for i in chunk})),
            )
            for row in conn.execute(query):
                identity = (kind, row.name, row.version, row.purl)
                if identity in wanted:
                    found[identity] = row.id


def _image_row(image: ImageEvidence) -> dict[str, Any]:
    return {
        "digest": image.digest,
        "repository": image.repository,
        "governed": image.governed,
        "status": image.status,
        "pipeline": image.pipeline,
        "commit_sha": image.commit_sha,
        "branch": image.branch,
        "commit_time": image.commit_time,
        "repository_url": image.repository_url,
        "ci_provider": image.ci.get("provider"),
        "pipeline_id": image.ci.get("pipeline_id"),
        "pipeline_url": image.ci.get("pipeline_url"),
        "job_id": image.ci.get("job_id"),
        "job_url": image.ci.get("job_url"),
        "builder": image.builder,
        "runner_host": image.runner_host,
        "runner_platform": image.runner_platform,
        "tfgov_ci_version": image.tfgov_ci_version,
        "tools": json.dumps(dict(image.tools), sort_keys=True),
        "base_ref": image.base_ref,
        "base_digest": image.base_digest,
        "lock_digest": image.lock_digest,
        "python_version": image.python_version,
        "tensorflow_version": image.tensorflow_version,
        "decision": image.decision,
        "signed": image.signed,
        "signature_ref": image.signature_ref,
        "sbom_digest": image.sbom_digest,
        "record_digest": image.record_digest,
        "created": image.created,
        "recorded": now(),
    }


def save(conn: Connection, image: ImageEvidence, cache: PackageIds | None = None) -> int:
    """Store one image (inside the caller's transaction); returns its row id. ``cache``: the
    package ids an import has learnt so far (see :class:`PackageIds`)."""
    from sqlalchemy import delete

    ids = package_ids(conn, [*image.packages, *map(_finding_package, image.findings)], cache)
    row = _image_row(image)
    upsert = insert(conn, tables.images).values(row)
    upsert = upsert.on_conflict_do_update(
        index_elements=[tables.images.c.digest], set_={k: upsert.excluded[k] for k in row if k != "digest"}
    ).returning(tables.images.c.id)
    image_id = int(conn.execute(upsert).scalar_one())
    builds.save(conn, image_id, image.build)
    for table in (tables.image_tags, tables.image_packages, tables.exceptions_used, tables.attestations):
        conn.execute(delete(table).where(table.c.image_id == image_id))
    findings = tables.findings
    conn.execute(delete(findings).where(findings.c.image_id == image_id, findings.c.origin == "scan"))
    _insert_rows(conn, tables.image_tags, [{"image_id": image_id, "tag": tag} for tag in image.tags])
    links: dict[tuple[int, str], tuple[Any, ...]] = {}
    licences: dict[tuple[str, ...], str] = {}  # an image's packages share a few licence lists
    for p in image.packages:  # one link a package and place; the first entry of a duplicate wins
        package_id = ids[p.identity]
        if (package_id, p.location) not in links:
            text = licences.get(p.licenses)
            if text is None:
                text = licences[p.licenses] = json.dumps(list(p.licenses))
            links[(package_id, p.location)] = (image_id, package_id, p.location, p.layer, text)
    insert_tuples(conn, tables.image_packages, list(links.values()))
    found = now()
    rows: dict[tuple[int, str], dict[str, Any]] = {}
    for f in image.findings:
        package_id = ids[_finding_package(f).identity]
        row = finding_row(image_id, package_id, f, "scan", image.advisory_db, None, found)
        rows.setdefault((package_id, f.id), row)
        rows[(package_id, f.id)]["excepted"] = image.excepted(f)
    _insert_rows(conn, tables.findings, list(rows.values()))
    _insert_rows(
        conn,
        tables.exceptions_used,
        list(
            {
                (e.finding, e.package): {
                    "image_id": image_id,
                    "finding": e.finding,
                    "package": e.package,
                    "reason": e.reason,
                    "owner": e.owner,
                    "approved_by": e.approved_by,
                    "expires": e.expires,
                }
                for e in image.exceptions
            }.values()
        ),
    )
    _insert_rows(
        conn,
        tables.attestations,
        list(
            {
                a.predicate_type: {
                    "image_id": image_id,
                    "predicate_type": a.predicate_type,
                    "document_digest": a.document_digest,
                }
                for a in image.attestations
            }.values()
        ),
    )
    return image_id


def finding_row(
    image_id: int,
    package_id: int,
    finding: Finding,
    origin: str,
    advisory_db: str | None,
    advisory_db_digest: str | None,
    found: str,
) -> dict[str, Any]:
    return {
        "image_id": image_id,
        "package_id": package_id,
        "advisory": finding.id,
        "aliases": json.dumps(sorted(finding.aliases)),
        "severity": finding.severity,
        "fix_state": finding.fix_state,
        "fixed_versions": json.dumps(list(finding.fixed_versions)),
        "cvss_score": finding.cvss_score,
        "title": finding.title,
        "scanners": json.dumps(list(finding.scanners)),
        "origin": origin,
        "advisory_db": advisory_db,
        "advisory_db_digest": advisory_db_digest,
        "found": found,
        "excepted": False,
    }


def _insert_rows(conn: Connection, table: Any, rows: Sequence[dict[str, Any]]) -> None:
    from sqlalchemy import insert as core_insert

    if rows:
        conn.execute(core_insert(table), list(rows))


def insert_tuples(
    conn: Connection, table: Any, rows: Sequence[tuple[Any, ...]], columns: Sequence[str] | None = None
) -> None:
    """Rows as tuples (in the order of ``columns``, else every column of the table), straight
    to the driver's ``executemany``: the 300 links of an image, or a rescan's findings, without
    SQLAlchemy processing each row's parameters, which costs more than the insert itself."""
    if not rows:
        return
    names = list(columns) if columns is not None else [c.name for c in table.columns]
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    quoted = ", ".join(conn.dialect.identifier_preparer.quote(name) for name in names)
    marks = ", ".join(mark for _ in names)
    conn.exec_driver_sql(f"INSERT INTO {table.name} ({quoted}) VALUES ({marks})", list(rows))


@dataclass(frozen=True)
class Imported:
    """What one ``inventory import`` stored: per image, its digest, packages, findings."""

    images: tuple[ImageEvidence, ...]

    @property
    def warnings(self) -> tuple[str, ...]:
        return tuple(w for image in self.images for w in image.warnings)


def import_paths(store: Store, paths: Sequence[Path]) -> Imported:
    """Read every path first (a bad one stores nothing at all), then store each image in a
    transaction of its own."""
    images = [evidence.read(path) for path in paths]
    cache = PackageIds()
    for image in images:
        with store.writing() as conn:
            save(conn, image, cache)
        cache.keep()
    return Imported(tuple(images))
