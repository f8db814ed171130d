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
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tfgov_ci import findings as findings_mod
from tfgov_ci._files import cache_dir
from tfgov_ci.findings import Finding, package_key
from tfgov_ci.inventory import tables
from tfgov_ci.inventory.ingest import FINDING_COLUMNS, finding_values, insert_fanned_out
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
    holders: dict[int, list[tuple[int, str, str | None, bool]]] = {}
    for start in range(0, len(ids), 500):
        held = (
            select(link.c.package_id, i.c.id, i.c.digest, i.c.repository, i.c.governed)
            .join(i, i.c.id == link.c.image_id)
            .where(link.c.package_id.in_(ids[start : start + 500]), window)
        )  # a version at two places in an image is two rows: the second finds its finding added
        for package_id, image_id, image_digest, repository, governed in conn.execute(held).all():
            holders.setdefault(package_id, []).append((image_id, image_digest, repository, bool(governed)))
    matched_versions = {versions[_identity(finding)] for finding in matched}
    known = _known(conn, window if window_days is not None else None, matched_versions)
    # The new findings are printed most severe first, then by repository, digest and id: one
    # integer key each, from ranks made once, not a tuple compared 160,000 times.
    images_in_order = sorted({(h[2] or "", h[1]) for found in holders.values() for h in found})
    image_rank = {image_digest: n for n, (_, image_digest) in enumerate(images_in_order)}
    id_rank = {advisory: n for n, advisory in enumerate(sorted({finding.id for finding in matched}))}
    added: dict[tuple[int, int], set[str]] = {}  # what this rescan found, per image and package row
    new: list[NewFinding] = []
    keys: list[int] = []
    where = str(folder)

    def fan_out() -> Iterator[tuple[tuple[Any, ...], list[int]]]:
        """Per matched finding, its row but the image and the images it is new for; made while
        PostgreSQL stores the ones before (COPY), so that the two overlap."""
        for finding in matched:
            version = versions[_identity(finding)]
            package_id = version.id
            named = finding.ids
            seen = (version.type, package_key(version.type, version.name), version.version)
            severity = findings_mod.rank(finding.severity) * len(image_rank)
            fanned: list[int] = []
            for image_id, image_digest, repository, governed in holders.get(package_id, ()):
                recorded = known.get((image_id, seen))
                if recorded is not None and recorded & named:
                    continue
                found = added.get((image_id, package_id))
                if found is None:
                    added[(image_id, package_id)] = set(named)
                elif found & named:
                    continue
                else:
                    found.update(named)
                fanned.append(image_id)
                new.append(NewFinding(image_digest, repository, governed, finding))
                keys.append((severity + image_rank[image_digest]) * len(id_rank) + id_rank[finding.id])
            if fanned:  # the finding's own columns, the same for every image: made once
                yield (package_id, *finding_values(finding), "rescan", where, digest, started, False), fanned

    insert_fanned_out(conn, f, FINDING_COLUMNS, fan_out())
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
    new = [new[n] for n in sorted(range(len(new)), key=keys.__getitem__)]  # stable: ties as found
    images = conn.execute(select(func.count()).select_from(i).where(window)).scalar_one()
    return Rescan(str(folder), digest, db.files, started, int(images), len(packages), tuple(new), db.warnings)


def _known(conn: Connection, window: Any | None, versions: Iterable[Any]) -> dict[tuple[int, Any], set[str]]:
    """The advisories (ids and aliases) recorded already for each image and package version (type,
    key, version), by a pipeline's scan or an earlier rescan, of the ``versions`` matched: read in
    one pass over the findings of the images in the window (not a join per chunk of versions). A
    pipeline's trivy writes its own purl (distro=debian-12.4, no upstream=), so the same version
    under another purl is another package row: the version, not the row, is what was scanned."""
    import json

    from sqlalchemy import select

    p, i, f = tables.packages, tables.images, tables.findings
    wanted = {(v.type, package_key(v.type, v.name), v.version) for v in versions}
    query = select(f.c.image_id, p.c.type, p.c.key, p.c.version, f.c.advisory, f.c.aliases).join(
        p, p.c.id == f.c.package_id
    )
    if window is not None:
        query = query.where(f.c.image_id.in_(select(i.c.id).where(window)))
    known: dict[tuple[int, Any], set[str]] = {}
    decoded: dict[tuple[str, str], frozenset[str]] = {}
    for image_id, kind, key, version, advisory, aliases in conn.execute(query).all():
        if (kind, key, version) not in wanted:
            continue
        named = decoded.get((advisory, aliases))
        if named is None:  # the same advisory recorded in many images: decoded once
            named = decoded[(advisory, aliases)] = frozenset({advisory, *json.loads(aliases)})
        known.setdefault((image_id, (kind, key, version)), set()).update(named)
    return known


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
    found: dict[int, str] = {}  # a finding's part of its lines, made once for all its images
    for n in result.new:
        f = n.finding
        text = found.get(id(f))
        if text is None:
            fixed = f"fixed in {', '.join(f.fixed_versions)}" if f.fixed_versions else "no fix yet"
            text = found[id(f)] = (
                f"  {f.severity:<8} {f.id} {f.package_type}/{f.package} {f.installed_version} ({fixed}) in "
            )
        lines.append(f"{text}{n.repository or '-'}@{n.digest}{'' if n.governed else ' UNGOVERNED'}")
    return lines
