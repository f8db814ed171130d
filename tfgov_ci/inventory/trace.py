"""``trace``: where an image came from and what is known of it, from its digest alone if need be.

The answer a security lead needs for one running image: the commit and repository it was built
from, the pipeline and job, the builder, base and lock, its packages (counted by type), findings by
severity, the policy decision, what was signed and attested, and where it is deployed.
"""

from __future__ import annotations

import functools
import json
from collections import Counter
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from tfgov_ci.findings import SEVERITIES
from tfgov_ci.inventory import instances, refs, tables

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection


@dataclass(frozen=True)
class Trace:
    image: dict[str, Any]  # the images row, tools decoded
    tags: list[str]
    packages: dict[str, int]  # type -> count
    findings: dict[str, int]  # severity -> count (every level, zeros included)
    excepted: int
    finding_ids: list[dict[str, Any]]  # id, severity, package, version, fixed, origin
    exceptions: list[dict[str, Any]]
    attestations: list[dict[str, Any]]
    deployments: list[dict[str, Any]]
    instances: list[dict[str, Any]]  # where it runs or ran (inventory sync-prometheus), running first

    def to_json(self) -> dict[str, Any]:
        return {"schema_version": 1, **asdict(self)}


@functools.cache
def _statements() -> dict[str, Any]:
    """The statements a trace runs, of one image (``:image_id``), made once: a trace is a few
    milliseconds, and building them was a fifth of it."""
    from sqlalchemy import bindparam, func, select

    i, p, link, f = tables.images, tables.packages, tables.image_packages, tables.findings
    image: Any = bindparam("image_id")

    def of(table: Any, order: Any) -> Any:
        return select(table).where(table.c.image_id == image).order_by(order)

    return {
        "image": select(i).where(i.c.id == image),
        "tags": select(tables.image_tags.c.tag).where(tables.image_tags.c.image_id == image),
        "by_type": select(p.c.type, func.count(func.distinct(p.c.id)))
        .join(link, link.c.package_id == p.c.id)
        .where(link.c.image_id == image)
        .group_by(p.c.type)
        .order_by(p.c.type),
        "found": select(
            f.c.advisory.label("id"),
            f.c.severity,
            p.c.name.label("package"),
            p.c.type,
            p.c.version,
            f.c.fixed_versions,
            f.c.origin,
            f.c.excepted,
            f.c.advisory_db,
            f.c.found,
        )
        .join(p, p.c.id == f.c.package_id)
        .where(f.c.image_id == image, f.c.origin == "scan")
        .order_by(f.c.severity, f.c.advisory),
        "exceptions": of(tables.exceptions_used, tables.exceptions_used.c.finding),
        "attestations": of(tables.attestations, tables.attestations.c.predicate_type),
        "deployments": of(tables.deployments, tables.deployments.c.environment),
    }


def trace(conn: Connection, ref: str) -> Trace:
    image_id = refs.image_id(conn, ref)
    statements, params = _statements(), {"image_id": image_id}
    row = dict(conn.execute(statements["image"], params).mappings().one())
    row["tools"] = json.loads(row["tools"] or "{}")
    row.pop("id")
    tags = [t for (t,) in conn.execute(statements["tags"], params)]
    by_type = conn.execute(statements["by_type"], params).all()
    found = [dict(r) for r in conn.execute(statements["found"], params).mappings()]
    found.extend(_rescanned(conn, image_id))
    for entry in found:
        entry["fixed_versions"] = json.loads(entry["fixed_versions"])
    severities = Counter(entry["severity"] for entry in found if not entry["excepted"])
    found.sort(key=lambda e: (SEVERITIES.index(e["severity"]), e["id"]))

    def rows(name: str) -> list[dict[str, Any]]:
        return [
            {k: v for k, v in r.items() if k != "image_id"}
            for r in conn.execute(statements[name], params).mappings()
        ]

    return Trace(
        image=row,
        tags=tags,
        packages={t: n for t, n in by_type},
        findings={level: severities.get(level, 0) for level in SEVERITIES},
        excepted=sum(1 for e in found if e["excepted"]),
        finding_ids=found,
        exceptions=rows("exceptions"),
        attestations=rows("attestations"),
        deployments=rows("deployments"),
        instances=instances.where_running(conn, [row["digest"]]).get(row["digest"], []),
    )


@functools.cache
def _queries() -> tuple[Any, Any]:
    """What ``_rescanned`` asks, made once (a trace is a few milliseconds: building the
    statements was a fifth of it): the stored findings of the rescans that counted the image on
    the package rows it holds; the advisories its scan named."""
    from sqlalchemy import bindparam, select

    from tfgov_ci.inventory.rescan import stored_query

    f, p, link, scope = tables.findings, tables.packages, tables.image_packages, tables.rescan_images
    rf = tables.rescan_findings
    image: Any = bindparam("image_id")
    rescans = select(scope.c.rescan_id).where(scope.c.image_id == image)
    held = select(link.c.package_id).where(link.c.image_id == image)
    scans = (
        select(p.c.type, p.c.key, p.c.version, f.c.advisory, f.c.aliases)
        .join(p, p.c.id == f.c.package_id)
        .where(f.c.image_id == image, f.c.origin == "scan")
    )
    return stored_query(rf.c.rescan_id.in_(rescans) & rf.c.package_id.in_(held)), scans


def _rescanned(conn: Connection, image_id: int) -> list[dict[str, Any]]:
    """The rescans' findings this image has (see :class:`~tfgov_ci.inventory.rescan.History`): of
    the rescans that counted it, on the package rows it holds, but for those its scan or an earlier
    rescan had named."""
    from tfgov_ci.inventory.rescan import History, stored_findings

    query, scans = _queries()
    stored = stored_findings(conn, None, {}, {"image_id": image_id}, query=query)
    if not stored:
        return []
    me = frozenset({image_id})
    scanned: dict[tuple[str, str, str], dict[str, frozenset[int]]] = {}
    for kind, key, version, advisory, aliases in conn.execute(scans, {"image_id": image_id}):
        for named in {advisory, *json.loads(aliases)}:
            scanned.setdefault((kind, key, version), {})[named] = me
    history = History(
        {s.package_id: me for s in stored},
        {s.package_id: (s.row["type"], s.row["key"], s.row["version"]) for s in stored},
        scanned,
    )
    return [
        {
            "id": s.row["advisory"],
            "severity": s.row["severity"],
            "package": s.row["name"],
            "type": s.row["type"],
            "version": s.row["version"],
            "fixed_versions": s.row["fixed_versions"],
            "origin": "rescan",
            "excepted": False,
            "advisory_db": s.row["advisory_db"],
            "found": s.row["started"],
        }
        for s, images in history.replay(stored, {s.rescan_id: me for s in stored})
        if images
    ]


def _or(value: Any, absent: str = "-") -> str:
    return absent if value in (None, "") else str(value)


def render(t: Trace) -> list[str]:
    """The trace as aligned lines, most asked-about first."""
    i = t.image
    name = f"{i['repository']}@{i['digest']}" if i["repository"] else i["digest"]
    packages = ", ".join(f"{kind} {n}" for kind, n in t.packages.items())
    total = sum(t.findings.values())
    levels = ", ".join(f"{n} {level.lower()}" for level, n in t.findings.items() if n) or "none"
    lines = [
        f"image        {name}",
        f"tags         {', '.join(t.tags) or '-'}",
        f"governed     {'yes' if i['governed'] else 'no (no tfgov-ci record)'}; "
        f"record status {_or(i['status'])}; recorded {i['recorded']}",
        f"commit       {_or(i['commit_sha'])} (branch {_or(i['branch'])})",
        f"repository   {_or(i['repository_url'])}",
        f"pipeline     {_or(i['pipeline'])} on {_or(i['ci_provider'])}: {_or(i['pipeline_url'])}",
        f"job          {_or(i['job_url'])}",
        f"builder      {_or(i['builder'])} on {_or(i['runner_host'])} ({_or(i['runner_platform'])}), "
        f"tfgov-ci {_or(i['tfgov_ci_version'])}",
        f"base         {_or(i['base_ref'] or i['base_digest'])}",
        f"lock         {_or(i['lock_digest'])}",
        f"runtime      python {_or(i['python_version'])}, tensorflow {_or(i['tensorflow_version'])}",
        f"packages     {sum(t.packages.values())}{f' ({packages})' if packages else ''}",
        f"findings     {total}: {levels}" + (f"; {t.excepted} excepted" if t.excepted else ""),
        *(
            f"  {e['severity']:<8} {e['id']} {e['package']} {e['version']}"
            f"{' -> ' + ', '.join(e['fixed_versions']) if e['fixed_versions'] else ''}"
            f"{' (excepted)' if e['excepted'] else ''}"
            for e in t.finding_ids
        ),
        f"decision     {_or(i['decision'], 'none recorded')}",
        f"signed       {'yes: ' + _or(i['signature_ref']) if i['signed'] else 'no'}",
        *(
            f"attested     {a['predicate_type']} {_or(a['document_digest'], '')}".rstrip()
            for a in t.attestations
        ),
        *(
            f"exception    {e['finding']} {e['package']} (owner {e['owner']}, expires {e['expires']})"
            for e in t.exceptions
        ),
        *(
            [f"deployed     {d['environment']} since {d['deployed']} (as {d['ref']})" for d in t.deployments]
            or ["deployed     not known (`tfgov-ci inventory mark-deployed` records it)"]
        ),
        *(
            [
                f"{'running' if r['running'] else 'ran':<12} {r['cluster']} {r['namespace']}/{r['pod']}/"
                f"{r['container']} (first seen {r['first_seen']}, last seen {r['last_seen']})"
                for r in t.instances
            ]
            or ["running      not seen (`tfgov-ci inventory sync-prometheus` reads what clusters run)"]
        ),
    ]
    return lines
