"""Instances: what a cluster runs, from its own telemetry (``inventory sync-prometheus``).

kube-state-metrics exports one ``kube_pod_container_info`` series a running container, labelled
``namespace``, ``pod``, ``container``, ``image`` (as the pod spec names it) and ``image_id`` (what
the container runtime resolved it to). Through Prometheus' HTTP API, an instant query says what
runs now and a range query over ``since`` (``last_over_time`` over each step, so that a pod living
between two points is not missed) says when each instance was first and last seen, to a step
(``since / 60``, at least a second) late at most: an instance's last use is never put earlier than
it was. ``image_id`` is read for the manifest digest the registry and the inventory know
the image by:

- ``docker-pullable://REPO@sha256:...`` (Docker) and ``REPO@sha256:...`` (containerd, CRI-O): the
  repository digest, the manifest's;
- a bare ``sha256:...``: taken as a digest (containerd reports the image's own id when it knows
  no repository digest, which then matches nothing and is listed as unknown);
- ``docker://sha256:...``: Docker's local image id, the digest of the image *config*, not of the
  manifest: skipped, and said so;
- empty (a container still pulling) or anything else: skipped.

A series without those labels is skipped too; every skipped series is named with its labels and
counted, never guessed at. Each instance is stored once per cluster, namespace, pod, container and
digest (a restart is the same instance; a new image in the same pod is a new one), its first seen
kept and its last seen moved on; ``running`` says whether the cluster's newest sync saw it. A
container that has finished (``kube_pod_container_status_terminated`` is 1: a Job's pod that
completed, kept until it is deleted) still has its info series, but it ran, it does not run: it is
stored as seen then, not running.
Instances join images by digest when read, so an image imported after the sync is linked to its
instances at once. The running images the inventory does not hold, or holds as ungoverned, are the
answer a security lead wants first.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any

from tfgov_ci.errors import UsageError
from tfgov_ci.inventory import tables
from tfgov_ci.inventory.prometheus import Prometheus, PrometheusError, Series

if TYPE_CHECKING:
    from sqlalchemy import Select
    from sqlalchemy.engine import Connection

METRIC = "kube_pod_container_info"
TERMINATED = "kube_pod_container_status_terminated"
LABELS = ("namespace", "pod", "container", "image", "image_id")
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_DURATION = re.compile(r"^(\d+)([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
RANGE_POINTS = 60  # samples per series in the range query: first and last seen to since/60


def seconds(text: str, what: str = "--since") -> int:
    """``90s``, ``30m``, ``6h``, ``7d``, ``2w`` as seconds; :class:`UsageError` otherwise."""
    m = _DURATION.match(text.strip())
    if not m or int(m.group(1)) == 0:
        raise UsageError(f"{what} {text!r} is not a duration", "a number and s, m, h, d or w: 30m, 6h, 7d")
    return int(m.group(1)) * _UNITS[m.group(2)]


def iso(unix: float) -> str:
    """Unix seconds as the inventory's times (UTC, milliseconds, ``Z``)."""
    moment = dt.datetime.fromtimestamp(unix, dt.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def digest_of(image_id: str) -> tuple[str | None, str]:
    """The manifest digest an ``image_id`` label holds, or None and why not."""
    if not image_id:
        return None, "empty image_id (the container has not started: its image is still being pulled?)"
    if image_id.startswith("docker://"):
        return None, (
            "Docker's local image id (the config's digest), not the manifest digest the registry "
            "and the inventory know"
        )
    tail = image_id.removeprefix("docker-pullable://").rpartition("@")[2]
    if _DIGEST.fullmatch(tail):
        return tail, ""
    return None, "not a digest (sha256: and 64 hex digits, or REPO@sha256:...)"


@dataclass(frozen=True)
class Skipped:
    labels: Mapping[str, str]
    reason: str

    def render(self) -> str:
        # the labels that decide, not kube-state-metrics' uid and container_id or the scrape's job
        names = [k for k in LABELS if k in self.labels] or sorted(k for k in self.labels if k != "__name__")
        shown = ",".join(f'{k}="{self.labels[k]}"' for k in names)
        return f"{METRIC}{{{shown}}}: {self.reason}"


@dataclass(frozen=True)
class Instance:
    """One container that runs (or ran) an image, and what the inventory knows of that image."""

    cluster: str
    namespace: str
    pod: str
    container: str
    image: str
    image_id: str
    digest: str
    first_seen: str
    last_seen: str
    running: bool
    known: bool = False  # the inventory holds the digest
    governed: bool = False
    repository: str | None = None

    @property
    def where(self) -> str:
        return f"{self.namespace}/{self.pod}/{self.container}"

    @property
    def kind(self) -> str:
        return "governed" if self.governed else "UNGOVERNED" if self.known else "UNKNOWN"

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "kind": self.kind.lower()}


@dataclass(frozen=True)
class Synced:
    """One sync: what runs now (``running``), what was skipped, and how many stopped since the last."""

    cluster: str
    url: str
    synced: str
    since: str
    running: tuple[Instance, ...]
    skipped: tuple[Skipped, ...]
    earlier: tuple[Instance, ...] = ()  # seen over the range, not running now
    stopped: int = 0  # stored instances this sync marked as no longer running

    @property
    def unknown(self) -> tuple[Instance, ...]:
        return tuple(i for i in self.running if not i.known)

    @property
    def ungoverned(self) -> tuple[Instance, ...]:
        return tuple(i for i in self.running if i.known and not i.governed)

    def to_json(self) -> dict[str, Any]:
        return {
            "schema_version": 1,
            "cluster": self.cluster,
            "prometheus": self.url,
            "synced": self.synced,
            "since": self.since,
            "running": [i.to_json() for i in self.running],
            "images": len({i.digest for i in self.running}),
            "unknown": sorted({i.digest for i in self.unknown}),
            "ungoverned": sorted({i.digest for i in self.ungoverned}),
            "skipped": [{"labels": dict(s.labels), "reason": s.reason} for s in self.skipped],
            "ran_earlier": [i.to_json() for i in self.earlier],
            "stopped": self.stopped,
        }


def _key(labels: Mapping[str, str], digest: str) -> tuple[str, str, str, str]:
    return labels["namespace"], labels["pod"], labels["container"], digest


def own_labels(labels: Mapping[str, str]) -> Mapping[str, str]:
    """An exporter's own labels (kube-state-metrics', DCGM's): scraped without ``honor_labels``,
    its ``namespace``, ``pod`` and ``container`` clash with the target's and Prometheus keeps them
    as ``exported_*`` (the unprefixed ones then name the exporter's own pod)."""
    if not any(k.startswith("exported_") for k in labels):
        return labels
    out = dict(labels)
    for name in ("namespace", "pod", "container"):
        if f"exported_{name}" in labels:
            out[name] = labels[f"exported_{name}"]
    return out


def _read(series: Iterable[Series]) -> tuple[dict[tuple[str, ...], dict[str, Any]], dict[str, Skipped]]:
    """Series by instance (first and last sample, the labels), and the skipped ones by labels."""
    found: dict[tuple[str, ...], dict[str, Any]] = {}
    skipped: dict[str, Skipped] = {}
    for s in series:
        s = Series(own_labels(s.labels), s.samples)
        missing = [name for name in LABELS if name != "image_id" and not s.labels.get(name)]
        if missing:
            skip = Skipped(s.labels, f"no {', '.join(missing)} label (not kube-state-metrics' {METRIC}?)")
            skipped.setdefault(skip.render(), skip)
            continue
        digest, reason = digest_of(s.labels.get("image_id", ""))
        if digest is None:
            skip = Skipped(s.labels, reason)
            skipped.setdefault(skip.render(), skip)
            continue
        times = [t for t, _ in s.samples]
        if not times:
            continue
        entry = found.setdefault(
            _key(s.labels, digest),
            {"labels": s.labels, "digest": digest, "first": min(times), "last": max(times)},
        )
        entry["first"], entry["last"] = min(entry["first"], *times), max(entry["last"], *times)
    return found, skipped


def cluster_name(prometheus: Prometheus, given: str | None) -> str:
    from urllib.parse import urlsplit

    name = given or urlsplit(prometheus.url).netloc.rpartition("@")[2]
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._:/-]{0,199}", name):
        raise UsageError(f"{name!r} is not a cluster name", "letters, digits and . _ : / -, at most 200")
    return name


def observe(prometheus: Prometheus, cluster: str, since_s: int, at: float | None = None) -> Synced:
    """Ask Prometheus what runs (instant) and what ran over ``since_s`` (range); nothing stored."""
    t = time.time() if at is None else at
    now_series = prometheus.query(METRIC, at=t)
    if not now_series:  # a cluster runs something: no series is no kube-state-metrics, not "nothing"
        raise PrometheusError(
            f"Prometheus {prometheus.shown}: query {METRIC!r}: no series at all, so nothing is known "
            "to run (and nothing is marked stopped)",
            "is kube-state-metrics scraped by this Prometheus? `kube_pod_container_info` is its metric",
        )
    step = max(1, since_s // RANGE_POINTS)
    # each point covers the step before it, so a pod that lived between two points is not missed
    range_series = prometheus.query_range(f"last_over_time({METRIC}[{step}s])", t - since_s, t, step)
    finished = {
        (labels.get("namespace"), labels.get("pod"), labels.get("container"))
        for labels in (own_labels(s.labels) for s in prometheus.query(f"{TERMINATED} == 1", at=t))
    }
    now_found, skipped_now = _read(now_series)
    ranged, skipped_range = _read(range_series)
    running, earlier = [], []
    for key, entry in now_found.items():
        first = min(entry["first"], ranged.get(key, entry)["first"])
        if key[:3] in finished:  # completed: seen until now, running no more
            earlier.append(_instance(cluster, entry, first, t, running=False))
        else:
            running.append(_instance(cluster, entry, first, t, running=True))
    earlier += [
        _instance(cluster, entry, entry["first"], entry["last"], running=False)
        for key, entry in ranged.items()
        if key not in now_found
    ]
    skipped = {**skipped_range, **skipped_now}
    return Synced(
        cluster,
        prometheus.shown,
        iso(t),
        iso(t - since_s),
        tuple(sorted(running, key=lambda i: (i.namespace, i.pod, i.container))),
        tuple(skipped[k] for k in sorted(skipped)),
        tuple(earlier),
    )


def _instance(
    cluster: str, entry: Mapping[str, Any], first: float, last: float, *, running: bool
) -> Instance:
    labels = entry["labels"]
    return Instance(
        cluster,
        labels["namespace"],
        labels["pod"],
        labels["container"],
        labels.get("image", ""),
        labels.get("image_id", ""),
        entry["digest"],
        iso(first),
        iso(last),
        running,
    )


def _known(conn: Connection, digests: Iterable[str]) -> dict[str, tuple[bool, str | None]]:
    """governed and repository of each digest the inventory holds."""
    from sqlalchemy import select

    i = tables.images
    wanted = sorted(set(digests))
    out: dict[str, tuple[bool, str | None]] = {}
    for start in range(0, len(wanted), 500):
        query = select(i.c.digest, i.c.governed, i.c.repository).where(
            i.c.digest.in_(wanted[start : start + 500])
        )
        out.update({d: (bool(g), r) for d, g, r in conn.execute(query)})
    return out


def resolve(conn: Connection, found: Iterable[Instance]) -> list[Instance]:
    """Each instance with what the inventory knows of its digest."""
    found = list(found)
    known = _known(conn, (i.digest for i in found))
    return [
        replace(i, known=True, governed=known[i.digest][0], repository=known[i.digest][1])
        if i.digest in known
        else i
        for i in found
    ]


def store(conn: Connection, synced: Synced) -> Synced:
    """Write the sync (inside the caller's write transaction): every instance upserted (first seen
    the earliest, last seen the latest ever), the cluster's others marked as no longer running, and
    the sync's row; returns it with the inventory's knowledge of each running image."""
    from sqlalchemy import and_, func, select, update

    from tfgov_ci.inventory.ingest import insert

    table = tables.instances
    rows = [
        {
            "cluster": i.cluster,
            "namespace": i.namespace,
            "pod": i.pod,
            "container": i.container,
            "image": i.image,
            "image_id": i.image_id,
            "digest": i.digest,
            "first_seen": i.first_seen,
            "last_seen": i.last_seen,
            "running": i.running,
        }
        for i in (*synced.running, *synced.earlier)
    ]
    before = {
        (r.namespace, r.pod, r.container, r.digest)
        for r in conn.execute(
            select(table.c.namespace, table.c.pod, table.c.container, table.c.digest).where(
                table.c.cluster == synced.cluster, table.c.running.is_(True)
            )
        )
    }
    least, greatest = (
        (func.least, func.greatest) if conn.dialect.name == "postgresql" else (func.min, func.max)
    )
    for start in range(0, len(rows), 500):
        statement = insert(conn, table)
        statement = statement.on_conflict_do_update(
            index_elements=[
                table.c.cluster,
                table.c.namespace,
                table.c.pod,
                table.c.container,
                table.c.digest,
            ],
            set_={
                "image": statement.excluded.image,
                "image_id": statement.excluded.image_id,
                "first_seen": least(table.c.first_seen, statement.excluded.first_seen),
                "last_seen": greatest(table.c.last_seen, statement.excluded.last_seen),
                "running": statement.excluded.running,
            },
        )
        conn.execute(statement, rows[start : start + 500])
    conn.execute(
        update(table)
        .where(
            and_(
                table.c.cluster == synced.cluster,
                table.c.running.is_(True),
                table.c.last_seen < synced.synced,
            )
        )
        .values(running=False)
    )
    stopped = len(before - {(i.namespace, i.pod, i.container, i.digest) for i in synced.running})
    done = replace(synced, running=tuple(resolve(conn, synced.running)), stopped=stopped)
    conn.execute(
        tables.prometheus_syncs.insert().values(
            cluster=done.cluster,
            url=done.url,
            synced=done.synced,
            since=done.since,
            instances=len(done.running),
            unknown=len(done.unknown),
            ungoverned=len(done.ungoverned),
            skipped=len(done.skipped),
        )
    )
    return done


def sync(conn: Connection, prometheus: Prometheus, cluster: str, since_s: int) -> Synced:
    """Observe the cluster through Prometheus, then store what it said."""
    return store(conn, observe(prometheus, cluster, since_s))


def where_running(
    conn: Connection, digests: Iterable[str] | Select[Any], *, running_only: bool = False
) -> dict[str, list[dict[str, Any]]]:
    """The instances of each digest (cluster, namespace, pod, container, first and last seen,
    running), running ones first; of the digests given, or those a query selects (one statement)."""
    from sqlalchemy import Select, select

    t = tables.instances
    if isinstance(digests, Select):
        conditions = [t.c.digest.in_(digests)]
    else:
        wanted = sorted(set(digests))
        conditions = [t.c.digest.in_(wanted[start : start + 500]) for start in range(0, len(wanted), 500)]
    out: dict[str, list[dict[str, Any]]] = {}
    for condition in conditions:
        query = select(t).where(condition)
        if running_only:
            query = query.where(t.c.running.is_(True))
        for row in conn.execute(query).mappings():
            entry = {
                k: row[k] for k in ("cluster", "namespace", "pod", "container", "first_seen", "last_seen")
            }
            out.setdefault(row["digest"], []).append({**entry, "running": bool(row["running"])})
    for entries in out.values():
        entries.sort(key=lambda e: (not e["running"], e["cluster"], e["namespace"], e["pod"], e["container"]))
    return out


def render(synced: Synced) -> list[str]:
    images = {i.digest for i in synced.running}
    governed = {i.digest for i in synced.running if i.governed}
    lines = [
        f"cluster {synced.cluster} (Prometheus {synced.url}, {synced.synced}): "
        f"{len(synced.running)} running container{'s' if len(synced.running) != 1 else ''} of "
        f"{len(images)} image{'s' if len(images) != 1 else ''}: {len(governed)} governed, "
        f"{len({i.digest for i in synced.ungoverned})} UNGOVERNED, "
        f"{len({i.digest for i in synced.unknown})} UNKNOWN"
    ]
    for i in synced.running:
        if i.governed:
            continue
        why = "not in the inventory" if not i.known else "no verified tfgov-ci record"
        lines.append(f"  {i.kind:<10} {i.where}  {i.image} ({i.digest}): {why}")
    if synced.earlier or synced.stopped:
        lines.append(
            f"{len(synced.earlier)} container(s) ran since {synced.since} and no longer run; "
            f"{synced.stopped} stored instance(s) marked as stopped"
        )
    if synced.skipped:
        lines.append(f"skipped {len(synced.skipped)} series:")
        lines.extend(f"  {s.render()}" for s in synced.skipped[:20])
        if len(synced.skipped) > 20:
            lines.append(f"  ... and {len(synced.skipped) - 20} more (--format json lists them all)")
    return lines
