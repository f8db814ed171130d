"""``inventory stale``: images nothing has used for N days, the archiving candidates.

An image's uses are what the inventory itself saw: its build (the record's time, or the build
stage's start), each deploy mark (``inventory mark-deployed``), and each running instance
(``inventory sync-prometheus``: its last seen). Its last use is the latest of them; it is stale
when that is more than ``days`` ago. Registry pull times are deliberately not a use: Harbor does
not update them on pulls by digest (how clusters pull governed images) and its own scans bump
them (goharbor/harbor 16230, 15810), so they would call a running image unused and an unused one
recent. Never a candidate, whatever its age: an image that runs now (in its cluster's newest sync)
and the newest image of its repository (what the next deploy would take). An image with no use
time at all (an ungoverned image without a ``created`` label, never deployed, never seen running)
is listed, marked as such, rather than hidden. Sizes are the build's (compressed layers); the space
archiving frees counts each layer once, and only layers no image that stays still holds.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from tfgov_ci.inventory import refs, tables
from tfgov_ci.inventory.instances import iso

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection


@dataclass(frozen=True)
class StaleImage:
    digest: str
    repository: str | None
    tags: tuple[str, ...]
    governed: bool
    size_bytes: int | None
    last_use: str | None  # None: no use time known at all
    last_use_kind: str  # built, deployed, running, or unknown
    built: str | None
    deployed: str | None
    last_running: str | None

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "tags": list(self.tags)}


@dataclass(frozen=True)
class Stale:
    days: int
    as_of: str
    cutoff: str
    images: tuple[StaleImage, ...]
    kept_running: int  # unused for that long by the other measures, but running now
    kept_newest: int  # the newest of their repository
    freed_bytes: int  # distinct layers only stale images hold

    def to_json(self) -> dict[str, Any]:
        return {
            "schema_version": 1,
            "days": self.days,
            "as_of": self.as_of,
            "cutoff": self.cutoff,
            "images": [i.to_json() for i in self.images],
            "size_bytes": sum(i.size_bytes or 0 for i in self.images),
            "freed_bytes": self.freed_bytes,
            "kept_running": self.kept_running,
            "kept_newest": self.kept_newest,
        }


def _latest(conn: Connection, column: Any, key: Any) -> dict[Any, str]:
    from sqlalchemy import func, select

    return {k: v for k, v in conn.execute(select(key, func.max(column)).group_by(key)) if v is not None}


def stale(conn: Connection, days: int, now: dt.datetime | None = None) -> Stale:
    from sqlalchemy import select

    moment = now or dt.datetime.now(dt.UTC)
    cutoff = iso((moment - dt.timedelta(days=days)).timestamp())
    i, b, inst = tables.images, tables.image_builds, tables.instances
    rows = list(
        conn.execute(
            select(i.c.id, i.c.digest, i.c.repository, i.c.governed, i.c.created, i.c.recorded,
                   b.c.started, b.c.size_bytes, b.c.layers)
            .select_from(i.outerjoin(b, b.c.image_id == i.c.id))
        ).mappings()
    )  # fmt: skip
    deployed = _latest(conn, tables.deployments.c.deployed, tables.deployments.c.image_id)
    last_running = _latest(conn, inst.c.last_seen, inst.c.digest)
    running_now = {
        d for (d,) in conn.execute(select(inst.c.digest).where(inst.c.running.is_(True)).distinct())
    }
    newest_ids = {r["id"] for r in tables.newest_of_each_repository(rows)}
    candidates, kept_running, kept_newest = [], 0, 0
    for r in rows:
        built = max(filter(None, (r["created"], r["started"])), default=None)
        uses = {"built": built, "deployed": deployed.get(r["id"]), "running": last_running.get(r["digest"])}
        known = {kind: t for kind, t in uses.items() if t}
        last_kind, last = max(known.items(), key=lambda kv: kv[1]) if known else ("unknown", None)
        if last is not None and last >= cutoff:
            continue
        if r["digest"] in running_now:
            kept_running += 1
            continue
        if r["id"] in newest_ids:
            kept_newest += 1
            continue
        candidates.append((r, last, last_kind, uses))
    stale_ids = {r["id"] for r, *_ in candidates}
    kept_layers = {
        layer for r in rows if r["id"] not in stale_ids for layer, *_ in json.loads(r["layers"] or "[]")
    }
    freed = {
        layer: size
        for r, *_ in candidates
        for layer, size, *_ in json.loads(r["layers"] or "[]")
        if layer not in kept_layers
    }
    tags = refs.by_image(conn, tables.image_tags, "tag", sorted(stale_ids))
    images = [
        StaleImage(
            r["digest"],
            r["repository"],
            tags.get(r["id"], ()),
            bool(r["governed"]),
            r["size_bytes"],
            last,
            kind,
            uses["built"],
            uses["deployed"],
            uses["running"],
        )
        for r, last, kind, uses in candidates
    ]
    images.sort(key=lambda s: (s.last_use or "", s.repository or "", s.digest))
    return Stale(
        days, iso(moment.timestamp()), cutoff, tuple(images), kept_running, kept_newest, sum(freed.values())
    )


def size(n: int | None) -> str:
    if n is None:
        return "size unknown"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def render(result: Stale) -> list[str]:
    n = len(result.images)
    total = sum(i.size_bytes or 0 for i in result.images)
    lines = [
        f"{n} stale image{'s' if n != 1 else ''}: not built, deployed or seen running since "
        f"{result.cutoff} ({result.days} days before {result.as_of}); {size(total)}, archiving frees "
        f"{size(result.freed_bytes)} of layers no other image holds"
    ]
    for s in result.images:
        name = f"{s.repository}@{s.digest}" if s.repository else s.digest
        last = f"last use {s.last_use} ({s.last_use_kind})" if s.last_use else "no use time known"
        lines.append(f"  {name}")
        lines.append(
            f"    {last}; {size(s.size_bytes)}; tags {', '.join(s.tags) or '-'}; "
            f"{'governed' if s.governed else 'UNGOVERNED'}"
        )
    if result.kept_running or result.kept_newest:
        lines.append(
            f"kept although unused as long: {result.kept_running} running now, "
            f"{result.kept_newest} the newest of their repository"
        )
    return lines
