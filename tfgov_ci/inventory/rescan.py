"""``rescan``: every stored SBOM against a folder of OSV advisories, the morning a new CVE lands.

The scan stage's offline matcher (:class:`~tfgov_ci.stages.scan.advisories.Database`) is given
each *distinct* PyPI and Debian package version the fleet holds, once (10,000 images of one base
share most of theirs), and what it finds is fanned out to the images holding that version. A
finding is new for an image when neither its pipeline's scan nor an earlier rescan recorded that
advisory (or an alias of it) for that package there. New findings are stored (origin ``rescan``)
with the advisory database's folder, its content digest and the time, and the rescan itself is a
row of ``rescans``, all in one transaction. ``window_days`` limits the rescan to images built
or deployed in that many days, as cloud registries limit theirs.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tfgov_ci import findings as findings_mod
from tfgov_ci._files import cache_dir
from tfgov_ci.findings import Finding
from tfgov_ci.inventory import tables
from tfgov_ci.inventory.ingest import finding_row, insert_tuples
from tfgov_ci.pipeline import now
from tfgov_ci.stages.scan import advisories

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection


@dataclass(frozen=True)
class NewFinding:
    digest: str
    repository: str | None
    governed: bool
    finding: Finding

    def to_json(self) -> dict[str, Any]:
        f = self.finding
        return {
            "digest": self.digest,
            "repository": self.repository,
            "governed": self.governed,
            "id": f.id,
            "aliases": sorted(f.aliases),
            "severity": f.severity,
            "package": {"name": f.package, "type": f.package_type, "version": f.installed_version},
            "fixed_versions": list(f.fixed_versions),
            "title": f.title,
        }


@dataclass(frozen=True)
class Rescan:
    folder: str
    digest: str
    files: int
    started: str
    images: int
    package_versions: int
    new: tuple[NewFinding, ...]
    warnings: tuple[str, ...]

    def at_or_above(self, level: str) -> list[NewFinding]:
        return [n for n in self.new if findings_mod.rank(n.finding.severity) <= findings_mod.rank(level)]

    def to_json(self) -> dict[str, Any]:
        return {
            "schema_version": 1,
            "advisory_db": self.folder,
            "advisory_db_digest": self.digest,
            "advisory_files": self.files,
            "started": self.started,
            "images": self.images,
            "package_versions": self.package_versions,
            "new_findings": [n.to_json() for n in self.new],
        }


def folder_digest(folder: Path) -> str:
    """sha256 over every advisory file's path and contents, in order: which database said so."""
    digest = hashlib.sha256()
    for root, dirs, names in os.walk(folder):
        dirs.sort()
        for name in sorted(names):
            path = Path(root) / name
            if path.suffix in (".json", ".yaml", ".yml"):
                digest.update(f"{path.relative_to(folder)}\0".encode())
                digest.update(hashlib.sha256(path.read_bytes()).digest())
    return "sha256:" + digest.hexdigest()


def _window(window_days: int | None) -> Any:
    """The images built (the record's time) or deployed in the last ``window_days`` days, and those
    whose build time nobody knows (an ungoverned image without a `created` label: the forgotten
    image is the one to rescan), as a condition; when the inventory took a record in says nothing
    about the image."""
    from sqlalchemy import or_, select, true

    if window_days is None:
        return true()
    since = (dt.datetime.now(dt.UTC) - dt.timedelta(days=window_days)).isoformat(timespec="milliseconds")
    since = since.replace("+00:00", "Z")
    i, d = tables.images, tables.deployments
    deployed = select(d.c.image_id).where(d.c.deployed >= since)
    return or_(i.c.created >= since, i.c.created.is_(None), i.c.id.in_(deployed))


def rescan(conn: Connection, folder: Path, window_days: int | None = None) -> Rescan:
    """Match, store what is new, and record the rescan (inside the caller's write transaction)."""
    import json

    from sqlalchemy import func, insert, select

    db = advisories.Database.open(folder, cache_dir())
    digest = folder_digest(folder)
    started = now()
    window = _window(window_days)
    p, link, i, f = tables.packages, tables.image_packages, tables.images, tables.findings
    distinct = (
        select(p.c.id, p.c.type, p.c.name, p.c.version, p.c.purl, p.c.source_name)
        .where(p.c.type.in_(("pypi", "deb")))
        .where(p.c.id.in_(select(link.c.package_id).join(i, i.c.id == link.c.image_id).where(window)))
    )
    versions = {(r.type, r.name, r.version, r.purl): r for r in conn.execute(distinct)}
    packages = [
        advisories.Package(r.name, r.version, r.type, r.purl, r.source_name) for r in versions.values()
    ]
    matched = db.match(packages)
    ids = sorted({versions[_identity(finding)].id for finding in matched})
    holders: dict[int, list[Any]] = {}
    known: dict[tuple[int, int], set[str]] = {}
    decoded: dict[tuple[str, str], frozenset[str]] = {}
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        held = (
            select(link.c.package_id, i.c.id, i.c.digest, i.c.repository, i.c.governed)
            .join(i, i.c.id == link.c.image_id)
            .where(link.c.package_id.in_(chunk), window)
            .distinct()
            .order_by(i.c.id)
        )
        for row in conn.execute(held):
            holders.setdefault(row.package_id, []).append(row)
        # What is known already, on this package version however its finding named it: a
        # pipeline's trivy writes its own purl (distro=debian-12.4, no upstream=), so the same
        # version under another purl is another package row, and the SBOM's row is what matches.
        held_by = p.alias("sbom_package")
        seen = (
            select(f.c.image_id, held_by.c.id.label("package_id"), f.c.advisory, f.c.aliases)
            .select_from(f)
            .join(p, p.c.id == f.c.package_id)
            .join(
                held_by,
                (held_by.c.key == p.c.key)
                & (held_by.c.type == p.c.type)
                & (held_by.c.version == p.c.version),
            )
            .where(held_by.c.id.in_(chunk))
        )
        for image_id, package_id, advisory, aliases in conn.execute(seen):
            named = decoded.get((advisory, aliases))
            if named is None:  # the same advisory recorded in many images: decoded once
                named = decoded[(advisory, aliases)] = frozenset({advisory, *json.loads(aliases)})
            known.setdefault((image_id, package_id), set()).update(named)
    new: list[NewFinding] = []
    rows = []
    for finding in matched:
        package_id = versions[_identity(finding)].id
        for image in holders.get(package_id, []):
            if known.get((image.id, package_id), set()) & finding.ids:
                continue
            rows.append(finding_row(image.id, package_id, finding, "rescan", str(folder), digest, started))
            known.setdefault((image.id, package_id), set()).update(finding.ids)
            new.append(NewFinding(image.digest, image.repository, bool(image.governed), finding))
    columns = list(rows[0]) if rows else []
    insert_tuples(conn, f, [tuple(row[c] for c in columns) for row in rows], columns)
    conn.execute(
        insert(tables.rescans).values(
            started=started,
            advisory_db=str(folder),
            advisory_db_digest=digest,
            advisory_files=db.files,
            window_days=window_days,
            package_versions=len(packages),
            new_findings=len(new),
        )
    )
    new.sort(
        key=lambda n: (findings_mod.rank(n.finding.severity), n.repository or "", n.digest, n.finding.id)
    )
    images = conn.execute(select(func.count()).select_from(i).where(window)).scalar_one()
    return Rescan(str(folder), digest, db.files, started, int(images), len(packages), tuple(new), db.warnings)


def _identity(finding: Finding) -> tuple[str, str, str, str]:
    """The store's identity of the package version a matcher finding is about (the matcher keeps
    the SBOM's name, version and purl)."""
    return (finding.package_type, finding.package, finding.installed_version, finding.purl or "")


def render(result: Rescan) -> list[str]:
    lines = [
        f"rescanned {result.images} image{'s' if result.images != 1 else ''} "
        f"({result.package_versions} distinct PyPI and Debian package versions) against "
        f"{result.folder} ({result.files} advisories, {result.digest})",
        f"{len(result.new)} new finding{'s' if len(result.new) != 1 else ''} since the last rescan",
    ]
    for n in result.new:
        f = n.finding
        fixed = f"fixed in {', '.join(f.fixed_versions)}" if f.fixed_versions else "no fix yet"
        lines.append(
            f"  {f.severity:<8} {f.id} {f.package_type}/{f.package} {f.installed_version} ({fixed}) in "
            f"{n.repository or '-'}@{n.digest}{'' if n.governed else ' UNGOVERNED'}"
        )
    return lines
