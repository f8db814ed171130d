"""``rescan``: every stored SBOM against a folder of OSV advisories, the morning a new CVE lands.

The scan stage's offline matcher (:class:`~tfgov_ci.stages.scan.advisories.Database`) is given
each *distinct* PyPI and Debian package version the fleet holds, once (10,000 images of one base
share most of theirs), and what it finds is fanned out to the images holding that version. A
finding is new for an image when neither its pipeline's scan nor an earlier rescan recorded that
advisory (or an alias of it) for that package version there. ``window_days`` limits the rescan to
images built or deployed in that many days, as cloud registries limit theirs.

What is new is stored once per package version, not once per image (the first rescan of 10,000
images found 1.6 million new findings on 20,000 package versions): a row of ``rescan_findings``
per finding and package row, and a row of ``rescan_images`` per image the rescan found something
new in, with the rescan itself (the advisory database's folder, its content digest, the time), in
one transaction. Which images have a rescan's finding is then a question (:class:`History`): those
that hold its package row and that the rescan counted, but for a finding their scan or an earlier
rescan had already named, which is the rule the rescan itself decided "new" by; ``trace`` and the
report ask it the same way.
"""

from __future__ import annotations

import bisect
import datetime as dt
import functools
import hashlib
import itertools
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tfgov_ci import findings as findings_mod
from tfgov_ci._files import cache_dir
from tfgov_ci.findings import SEVERITIES, Finding, package_key
from tfgov_ci.inventory import tables
from tfgov_ci.inventory.ingest import finding_values, insert_tuples, no_cycle_collection
from tfgov_ci.pipeline import now
from tfgov_ci.stages.scan import advisories

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

VersionKey = tuple[str, str, str]  # type, the name as its ecosystem compares it, version


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
    """A rescan's outcome. The new findings, one per image and finding, most severe first, then
    by repository, digest and id (then as the matcher found them), are ``groups``: per severity
    and image, in order, ``severity * len(holders) + image`` and the findings new there, as
    indexes into ``holders`` (digest, repository, governed, in order) and ``found`` (sorted by
    severity, id, then as found); :attr:`new` makes them objects, on demand (1.6 million at
    10,000 images)."""

    folder: str
    digest: str
    files: int
    started: str
    images: int
    package_versions: int
    found: tuple[Finding, ...] = ()
    holders: tuple[tuple[str, str | None, bool], ...] = ()
    groups: Sequence[tuple[int, Sequence[int]]] = field(default=(), repr=False)
    warnings: tuple[str, ...] = ()

    @functools.cached_property
    def count(self) -> int:
        return sum(len(found) for _, found in self.groups)

    @functools.cached_property
    def new(self) -> tuple[NewFinding, ...]:
        return tuple(self._new(self.groups))

    def _new(self, groups: Iterable[tuple[int, Sequence[int]]]) -> list[NewFinding]:
        per_image = len(self.holders)
        return [
            NewFinding(*self.holders[key % per_image], self.found[finding])
            for key, found in groups
            for finding in found
        ]

    def at_or_above(self, level: str) -> list[NewFinding]:
        """The new findings at ``level`` or more severe: the first ones, in order."""
        limit = (findings_mod.rank(level) + 1) * len(self.holders)
        return self._new(self.groups[: bisect.bisect_left(self.groups, limit, key=lambda group: group[0])])

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


Images = frozenset[int] | set[int]


@dataclass
class Stored:
    """One stored rescan finding (a row of ``rescan_findings``, its package and its rescan)."""

    rescan_id: int
    package_id: int
    ids: frozenset[str]  # the advisory and its aliases
    row: dict[str, Any]


class History:
    """Which images have which rescan findings, decided as the rescans decided "new": a rescan's
    finding is new in an image when the image holds its package row, is in the rescan's scope (for
    a stored rescan, the images it counted), no id of it (advisory or alias) is known there for
    that package version, from the image's scan or an earlier rescan, and no finding before it in
    the same rescan named one of its ids on the same package row. Sets of images throughout, not a
    loop per image and finding."""

    def __init__(
        self,
        holders: Mapping[int, Images],
        version_of: Mapping[int, VersionKey],
        scanned: Mapping[VersionKey, Mapping[str, Images]],
    ) -> None:
        self.holders = holders  # package row -> the images holding it
        self.version_of = version_of
        # version -> advisory id -> the sets of images it is known in (shared, never changed)
        self.known: dict[VersionKey, dict[str, list[Images]]] = {
            version: {advisory: [images] for advisory, images in by_id.items()}
            for version, by_id in scanned.items()
        }

    def apply(self, rows: Sequence[tuple[int, frozenset[str]]], scope: Images | None) -> list[Images]:
        """One rescan's findings (package row, ids), in its order: the images each is new in
        (``scope`` None: every holder); what is new is then known to the rescans after it."""
        added: dict[int, dict[str, list[Images]]] = {}  # package row -> id -> sets of images
        out: list[Images] = []
        empty: frozenset[int] = frozenset()
        for package_id, ids in rows:
            held = self.holders.get(package_id, empty)
            base = held & scope if scope is not None else held
            if not base:
                out.append(empty)
                continue
            known = self.known.get(self.version_of[package_id])
            mine = added.get(package_id)
            blocked: list[Images] = []
            for advisory in ids:
                if known is not None and advisory in known:
                    blocked.extend(known[advisory])
                if mine is not None and advisory in mine:
                    blocked.extend(mine[advisory])
            new = base.difference(*blocked) if blocked else base
            out.append(new)
            if new:
                mine = added.setdefault(package_id, {}) if mine is None else mine
                for advisory in ids:
                    mine.setdefault(advisory, []).append(new)
        for package_id, by_id in added.items():
            known = self.known.setdefault(self.version_of[package_id], {})
            for advisory, sets in by_id.items():
                known.setdefault(advisory, []).extend(sets)
        return out

    def replay(self, stored: Sequence[Stored], scopes: dict[int, Images]) -> list[tuple[Stored, Images]]:
        """Stored rescans' findings (in rescan then row order), each rescan in its scope: each
        finding with the images it was new in."""
        out: list[tuple[Stored, Images]] = []
        start = 0
        while start < len(stored):
            rescan_id = stored[start].rescan_id
            end = start
            while end < len(stored) and stored[end].rescan_id == rescan_id:
                end += 1
            rows = stored[start:end]
            new = self.apply([(s.package_id, s.ids) for s in rows], scopes.get(rescan_id, frozenset()))
            out.extend(zip(rows, new, strict=True))
            start = end
        return out


def _ids(advisory: str, aliases: str, decoded: dict[tuple[str, str], frozenset[str]]) -> frozenset[str]:
    named = decoded.get((advisory, aliases))
    if named is None:  # the same advisory recorded for many packages: decoded once
        named = decoded[(advisory, aliases)] = frozenset({advisory, *json.loads(aliases)})
    return named


def stored_findings(
    conn: Connection,
    condition: Any,
    decoded: dict[tuple[str, str], frozenset[str]],
    params: Mapping[str, Any] | None = None,
    *,
    query: Any = None,
) -> list[Stored]:
    """The stored rescan findings ``condition`` selects (or ``query``, a :func:`stored_query`
    made before), with their package and rescan, in order; ``params``: its bound values."""
    return [
        Stored(row["rescan_id"], row["package_id"], _ids(row["advisory"], row["aliases"], decoded), dict(row))
        for row in conn.execute(stored_query(condition) if query is None else query, params or {}).mappings()
    ]


def stored_query(condition: Any) -> Any:
    from sqlalchemy import select

    rf, p, r = tables.rescan_findings, tables.packages, tables.rescans
    return (
        select(rf, p.c.type, p.c.name, p.c.key, p.c.version, r.c.started, r.c.advisory_db,
               r.c.advisory_db_digest)
        .join(p, p.c.id == rf.c.package_id)
        .join(r, r.c.id == rf.c.rescan_id)
        .where(condition)
        .order_by(rf.c.rescan_id, rf.c.id)
    )  # fmt: skip


def _concatenated(
    conn: Connection, table: Any, key: str, value: str, keys: Sequence[int]
) -> dict[int, set[int]]:
    """``value`` of each ``key`` in ``table``, as sets: one row per key (the values joined by the
    database), not a row per pair (a million links of the affected versions at 10,000 images)."""
    from sqlalchemy import String, cast, func, select

    column = table.c[value]
    if conn.dialect.name == "postgresql":
        joined = func.string_agg(cast(column, String), ",")
    else:
        joined = func.group_concat(column, ",")
    out: dict[int, set[int]] = {}
    for start in range(0, len(keys), 500):
        query = (
            select(table.c[key], joined)
            .where(table.c[key].in_(keys[start : start + 500]))
            .group_by(table.c[key])
        )
        for k, text in conn.execute(query):
            out[int(k)] = set(map(int, text.split(",")))
    return out


def history(
    conn: Connection, versions: Iterable[VersionKey], package_ids: Iterable[int]
) -> tuple[History, list[Stored], dict[int, Images]]:
    """What the store knows of these package versions: the stored rescan findings on them, the
    images holding their package rows (and those of ``package_ids``), each rescan's scope, and
    the advisories the images' scans named for them."""
    from sqlalchemy import select, true

    wanted = set(versions)
    decoded: dict[tuple[str, str], frozenset[str]] = {}
    stored = [
        s
        for s in stored_findings(conn, true(), decoded)
        if (s.row["type"], s.row["key"], s.row["version"]) in wanted
    ]
    ids = sorted({*package_ids, *(s.package_id for s in stored)})
    holders: dict[int, Images] = dict(
        _concatenated(conn, tables.image_packages, "package_id", "image_id", ids)
    )
    scopes: dict[int, Images] = dict(
        _concatenated(
            conn, tables.rescan_images, "rescan_id", "image_id", sorted({s.rescan_id for s in stored})
        )
    )
    p, f = tables.packages, tables.findings
    version_of: dict[int, VersionKey] = {}
    for start in range(0, len(ids), 500):
        query = select(p.c.id, p.c.type, p.c.key, p.c.version).where(p.c.id.in_(ids[start : start + 500]))
        version_of.update({row.id: (row.type, row.key, row.version) for row in conn.execute(query)})
    scanned: dict[VersionKey, dict[str, set[int]]] = {}
    scans = select(f.c.image_id, p.c.type, p.c.key, p.c.version, f.c.advisory, f.c.aliases).join(
        p, p.c.id == f.c.package_id
    )  # a pipeline's trivy writes its own purl: the version, not the row, is what was scanned
    for image_id, kind, key, version, advisory, aliases in conn.execute(scans.where(f.c.origin == "scan")):
        if (kind, key, version) in wanted:
            by_id = scanned.setdefault((kind, key, version), {})
            for named in _ids(advisory, aliases, decoded):
                by_id.setdefault(named, set()).add(image_id)
    return History(holders, version_of, scanned), stored, scopes


def rescan(conn: Connection, folder: Path, window_days: int | None = None) -> Rescan:
    """Match, store what is new, and record the rescan (inside the caller's write transaction)."""
    with no_cycle_collection():
        return _rescan(conn, folder, window_days)


def _rescan(conn: Connection, folder: Path, window_days: int | None) -> Rescan:
    from sqlalchemy import insert, select

    db = advisories.Database.open(folder, cache_dir())
    digest = folder_digest(folder)
    started = now()
    window = _window(window_days)
    p, link, i = tables.packages, tables.image_packages, tables.images
    facts = {
        r.id: (r.digest, r.repository, bool(r.governed))
        for r in conn.execute(select(i.c.id, i.c.digest, i.c.repository, i.c.governed).where(window))
    }
    # a package row held in the window: probed per row by the links' (package_id, image_id)
    # index, not the set of every link's package made first (3 million links: 2 s on SQLite)
    held = select(link.c.image_id).where(link.c.package_id == p.c.id)
    if window_days is not None:
        held = held.join(i, i.c.id == link.c.image_id).where(window)
    distinct = select(p.c.id, p.c.type, p.c.name, p.c.version, p.c.purl, p.c.source_name).where(
        p.c.type.in_(("pypi", "deb")), held.exists()
    )
    versions = {(r.type, r.name, r.version, r.purl): r for r in conn.execute(distinct)}
    packages = [
        advisories.Package(r.name, r.version, r.type, r.purl, r.source_name) for r in versions.values()
    ]
    matched = [(versions[_identity(finding)].id, finding) for finding in db.match(packages)]
    keys = {(f.package_type, package_key(f.package_type, f.package), f.installed_version) for _, f in matched}
    known, stored, scopes = history(conn, keys, {package_id for package_id, _ in matched})
    known.replay(stored, scopes)
    new = known.apply(
        [(package_id, f.ids) for package_id, f in matched], set(facts) if window_days is not None else None
    )
    counted = sorted(set().union(*new)) if new else []
    # the rows, in the matcher's order (the order a later rescan reads them back in)
    rescan_id = conn.execute(
        insert(tables.rescans)
        .values(
            started=started,
            advisory_db=str(folder),
            advisory_db_digest=digest,
            advisory_files=db.files,
            window_days=window_days,
            package_versions=len(packages),
            new_findings=sum(map(len, new)),
        )
        .returning(tables.rescans.c.id)
    ).scalar_one()
    rows = [
        (rescan_id, package_id, *finding_values(finding), len(images))
        for (package_id, finding), images in zip(matched, new, strict=True)
        if images
    ]
    columns = ("rescan_id", "package_id", "advisory", "aliases", "severity", "fix_state", "fixed_versions",
               "cvss_score", "title", "scanners", "images")  # fmt: skip
    insert_tuples(conn, tables.rescan_findings, rows, columns)
    insert_tuples(conn, tables.rescan_images, [(rescan_id, image_id) for image_id in counted])
    found, holders, groups = _in_order(
        facts, counted, [(f, images) for (_, f), images in zip(matched, new, strict=True) if images]
    )
    return Rescan(
        str(folder), digest, db.files, started, len(facts), len(packages), found, holders, groups, db.warnings
    )


def _in_order(
    facts: dict[int, tuple[str, str | None, bool]],
    counted: Sequence[int],
    new: Sequence[tuple[Finding, Images]],
) -> tuple[tuple[Finding, ...], tuple[tuple[str, str | None, bool], ...], list[tuple[int, list[int]]]]:
    """The new findings in the order they are printed (see :class:`Rescan`). The findings new in
    the same set of images (a package version's advisories: one set object) are listed once, each
    image is given the lists of the sets holding it (1.1 million appends at 10,000 images, not 1.6
    million findings placed one by one), and each image's findings are then merged and cut by
    severity in C (chain, sort, bisect)."""
    images = sorted(counted, key=lambda image_id: (facts[image_id][1] or "", facts[image_id][0]))
    rank = {image_id: n for n, image_id in enumerate(images)}
    levels = [findings_mod.rank(finding.severity) for finding, _ in new]
    ranked = sorted(range(len(new)), key=lambda n: (levels[n], new[n][0].id, n))
    by_set: dict[int, tuple[Images, list[int]]] = {}
    for o, n in enumerate(ranked):  # o ascending: each set's list is sorted
        held = new[n][1]
        entry = by_set.get(id(held))
        if entry is None:
            by_set[id(held)] = (held, [o])
        else:
            entry[1].append(o)
    lists: list[list[list[int]]] = [[] for _ in images]
    for held, shared in by_set.values():
        for place in map(rank.__getitem__, held):
            lists[place].append(shared)
    starts = [
        bisect.bisect_left(ranked, level, key=levels.__getitem__) for level in range(len(SEVERITIES) + 1)
    ]
    groups: list[tuple[int, list[int]]] = []
    for image, sets in enumerate(lists):
        mine = sets[0] if len(sets) == 1 else sorted(itertools.chain.from_iterable(sets))
        for level in range(len(SEVERITIES)):
            low = bisect.bisect_left(mine, starts[level])
            high = bisect.bisect_left(mine, starts[level + 1], low)
            if high > low:
                groups.append((level * len(images) + image, mine[low:high]))
    groups.sort(key=lambda group: group[0])
    return tuple(new[n][0] for n in ranked), tuple(facts[image_id] for image_id in images), groups


def _identity(finding: Finding) -> tuple[str, str, str, str]:
    """The store's identity of the package version a matcher finding is about (the matcher keeps
    the SBOM's name, version and purl)."""
    return (finding.package_type, finding.package, finding.installed_version, finding.purl or "")


def render(result: Rescan) -> list[str]:
    """The rescan as text, to be joined by newlines: its first two lines, then the new findings,
    a line each, an image's lines of one severity as one string (1.6 million lines at 10,000
    images are 50,000 strings, each joined in C)."""
    lines = [
        f"rescanned {result.images} image{'s' if result.images != 1 else ''} "
        f"({result.package_versions} distinct PyPI and Debian package versions) against "
        f"{result.folder} ({result.files} advisories, {result.digest})",
        f"{result.count} new finding{'s' if result.count != 1 else ''} since the last rescan",
    ]
    found = []  # a finding's part of its lines and an image's, each made once
    for f in result.found:
        fixed = f"fixed in {', '.join(f.fixed_versions)}" if f.fixed_versions else "no fix yet"
        found.append(
            f"  {f.severity:<8} {f.id} {f.package_type}/{f.package} {f.installed_version} ({fixed}) in "
        )
    images = [f"{repository or '-'}@{digest}{'' if governed else ' UNGOVERNED'}"
              for digest, repository, governed in result.holders]  # fmt: skip
    per_image = len(images)
    for key, group in result.groups:
        image = images[key % per_image]
        lines.append(f"{image}\n".join(map(found.__getitem__, group)) + image)
    return lines
