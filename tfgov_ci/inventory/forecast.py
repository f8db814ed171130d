"""``inventory forecast REPOSITORY``: what the next build, and the model's containers, will need.

From the recorded history of the repository's builds (``image_builds``: the build stage's duration
and peak memory, the image's size and its largest own layer) and, with a Prometheus URL, from the
repository's running containers (the instances ``sync-prometheus`` stored and saw within the
window): cAdvisor's ``container_cpu_usage_seconds_total`` (``irate``: between a series' last two
samples, a sample of the usage itself) and ``container_memory_working_set_bytes`` and, where DCGM's
exporter runs, ``DCGM_FI_DEV_FB_USED`` (GPU memory, MiB), over a window. The window is read in 200
steps, each step the largest value within it (``max_over_time``, over a subquery for CPU), so a
peak between two steps is not missed: the percentiles are then of per-step peaks, on the safe
side. DCGM's labels are read as kube-state-metrics' are: its own ``exported_*`` ones where
Prometheus kept them so (scraped without ``honor_labels``).

The rule, the same for each measure: the **request** is the 95th percentile of what was seen
(linear interpolation between the samples) plus ``HEADROOM`` (20 %); the memory **limit** is the
largest value seen plus the same headroom, and never below the request (a memory limit below a
real peak is an OOM kill); CPU gets a request and no limit (a CPU limit throttles a model server
at its busiest for no gain to its neighbours, who are protected by requests); a container that
used GPU memory gets ``nvidia.com/gpu: 1`` (GPUs are whole devices to the scheduler) and its
GPU memory is reported. With fewer than ``MIN_HISTORY`` builds (or samples) the history is too
short for a percentile: the forecast then takes the largest value seen with twice the headroom,
and says so. Memory is rounded up to MiB, CPU to millicores, times to seconds.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tfgov_ci.inventory import tables
from tfgov_ci.inventory.refs import NotRecorded

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from tfgov_ci.inventory.prometheus import Prometheus

HEADROOM = 0.20
PERCENTILE = 95
MIN_HISTORY = 3
MIB = 1024 * 1024
CPU = "container_cpu_usage_seconds_total"
MEMORY = "container_memory_working_set_bytes"
GPU_MEMORY = "DCGM_FI_DEV_FB_USED"  # MiB, per GPU, with the pod it is assigned to


def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile, linear between the closest ranks (numpy's default)."""
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True)
class Estimate:
    """One measure's forecast: what was seen, and the request and limit it gives."""

    measure: str
    unit: str
    samples: int
    p95: float | None
    peak: float
    request: float
    limit: float | None
    assumed: str = ""  # how the forecast was made when the history is too short

    def to_json(self) -> dict[str, Any]:
        return {
            "measure": self.measure,
            "unit": self.unit,
            "samples": self.samples,
            "p95": self.p95,
            "peak": self.peak,
            "request": self.request,
            "limit": self.limit,
            "assumed": self.assumed or None,
        }


def estimate(measure: str, unit: str, values: Sequence[float], *, limit: bool = True) -> Estimate:
    if len(values) < MIN_HISTORY:
        peak = max(values)
        request = peak * (1 + 2 * HEADROOM)
        why = (
            f"only {len(values)} sample{'s' if len(values) != 1 else ''} (a percentile needs "
            f"{MIN_HISTORY}): the largest seen plus {2 * HEADROOM:.0%}"
        )
        return Estimate(measure, unit, len(values), None, peak, request, request if limit else None, why)
    p95 = percentile(values, PERCENTILE)
    peak = max(values)
    request = p95 * (1 + HEADROOM)
    return Estimate(
        measure, unit, len(values), p95, peak, request, max(request, peak * (1 + HEADROOM)) if limit else None
    )


@dataclass(frozen=True)
class Forecast:
    repository: str
    builds: int
    history: tuple[dict[str, Any], ...]  # each build: digest, started, duration, memory, sizes
    build: tuple[Estimate, ...]  # duration, peak memory, image size, largest own layer
    containers: tuple[str, ...] = ()  # NAMESPACE/POD/CONTAINER measured
    running: tuple[Estimate, ...] = ()  # cpu, memory, gpu memory
    prometheus: str | None = None
    window: str | None = None
    notes: tuple[str, ...] = field(default=())

    def _by(self, estimates: tuple[Estimate, ...], measure: str) -> Estimate | None:
        return next((e for e in estimates if e.measure == measure), None)

    def snippet(self, estimates: tuple[Estimate, ...]) -> list[str]:
        """A Kubernetes ``resources:`` block from the estimates (cpu, memory, GPU)."""
        cpu, memory = self._by(estimates, "cpu"), self._by(estimates, "memory")
        memory = memory or self._by(estimates, "peak memory")
        gpu = self._by(estimates, "gpu memory")
        requests, limits = [], []
        if cpu:
            requests.append(f"cpu: {math.ceil(cpu.request * 1000)}m")
        if memory:
            requests.append(f"memory: {math.ceil(memory.request / MIB)}Mi")
            if memory.limit is not None:
                limits.append(f"memory: {math.ceil(memory.limit / MIB)}Mi")
        if gpu:
            limits.append("nvidia.com/gpu: 1")
        lines = ["resources:"]
        if requests:
            lines += ["  requests:", *(f"    {r}" for r in requests)]
        if limits:
            lines += ["  limits:", *(f"    {r}" for r in limits)]
        return lines

    def to_json(self) -> dict[str, Any]:
        return {
            "schema_version": 1,
            "repository": self.repository,
            "builds": self.builds,
            "history": list(self.history),
            "build": [e.to_json() for e in self.build],
            "build_resources": "\n".join(self.snippet(self.build)) if self.build else None,
            "prometheus": self.prometheus,
            "window": self.window,
            "containers": list(self.containers),
            "running": [e.to_json() for e in self.running],
            "resources": "\n".join(self.snippet(self.running)) if self.running else None,
            "headroom": HEADROOM,
            "percentile": PERCENTILE,
            "notes": list(self.notes),
        }


def repository_of(conn: Connection, given: str) -> str:
    """The stored repository ``given`` names: exactly, or the one ending in ``/given``."""
    from sqlalchemy import select

    i = tables.images
    names = {r for (r,) in conn.execute(select(i.c.repository).distinct()) if r}
    if given in names:
        return given
    matches = sorted(n for n in names if n.endswith("/" + given.strip("/")))
    if len(matches) == 1:
        return str(matches[0])
    if matches:
        from tfgov_ci.errors import UsageError

        raise UsageError(
            f"{given} names {len(matches)} repositories: {', '.join(matches)}", "give the whole name"
        )
    raise NotRecorded(
        f"no images of {given} in the inventory", "`tfgov-ci inventory list` shows the repositories"
    )


def history(conn: Connection, repository: str) -> list[dict[str, Any]]:
    from sqlalchemy import select

    i, b = tables.images, tables.image_builds
    query = (
        select(i.c.digest, i.c.created, b.c.started, b.c.duration_s, b.c.peak_memory_bytes, b.c.size_bytes,
               b.c.layers)
        .join(b, b.c.image_id == i.c.id)
        .where(i.c.repository == repository)
        .order_by(b.c.started, i.c.created, i.c.id)
    )  # fmt: skip
    out = []
    for r in conn.execute(query).mappings():
        layers = json.loads(r["layers"] or "[]")
        out.append(
            {
                "digest": r["digest"],
                "started": r["started"] or r["created"],
                "duration_s": r["duration_s"],
                "peak_memory_bytes": r["peak_memory_bytes"],
                "size_bytes": r["size_bytes"],
                "largest_layer_bytes": max((int(layer[1]) for layer in layers), default=None),
            }
        )
    return out


def _build(builds: list[dict[str, Any]]) -> tuple[tuple[Estimate, ...], list[str]]:
    estimates, notes = [], []
    for key, measure, unit, limit in (
        ("duration_s", "duration", "s", False),
        ("peak_memory_bytes", "peak memory", "bytes", True),
        ("size_bytes", "image size", "bytes", False),
        ("largest_layer_bytes", "largest own layer", "bytes", False),
    ):
        values = [float(b[key]) for b in builds if b[key] is not None]
        if values:
            estimates.append(estimate(measure, unit, values, limit=limit))
        else:
            notes.append(f"no build recorded its {measure}: not forecast")
    return tuple(estimates), notes


def _selector(containers: Sequence[tuple[str, str, str]]) -> str:
    """A PromQL label matcher for these namespaces and pods (each then checked exactly)."""

    def literal(value: str) -> str:  # regex metacharacters escaped inside a PromQL string (Kubernetes
        # names are lower-case letters, digits, '-' and '.': only '.' needs it in practice)
        return "".join("\\\\" + c if c in ".+*?()[]{}|^$" else '\\"' if c == '"' else c for c in value)

    def alternatives(values: set[str]) -> str:
        return "|".join(sorted(literal(v) for v in values))

    return (
        f'namespace=~"{alternatives({c[0] for c in containers})}",'
        f'pod=~"{alternatives({c[1] for c in containers})}"'
    )


def _samples(prometheus: Prometheus, promql: str, containers: set[tuple[str, str, str]], start: float,
             end: float, step: float) -> tuple[list[float], set[str]]:  # fmt: skip
    """The samples of these containers' series, and which exported_* labels named them."""
    from tfgov_ci.inventory.instances import own_labels

    values: list[float] = []
    exported: set[str] = set()
    for series in prometheus.query_range(promql, start, end, step):
        labels = own_labels(series.labels)
        key = (labels.get("namespace", ""), labels.get("pod", ""), labels.get("container", ""))
        if key in containers:
            values.extend(v for _, v in series.samples if math.isfinite(v))
            exported |= {
                k for k in series.labels if k in ("exported_namespace", "exported_pod", "exported_container")
            }
    return values, exported


def forecast(
    conn: Connection, given: str, prometheus: Prometheus | None = None, window_s: int = 7 * 86400,
    window: str = "7d", at: float | None = None,
) -> Forecast:  # fmt: skip
    import time

    from tfgov_ci.inventory.instances import iso, where_running

    repository = repository_of(conn, given)
    builds = history(conn, repository)
    estimates, notes = _build(builds)
    if not builds:
        notes.append(f"no build of {repository} recorded its costs (only images from the registry?)")
    if prometheus is None:
        return Forecast(repository, len(builds), tuple(builds), estimates, notes=tuple(notes))
    from sqlalchemy import select

    i = tables.images
    digests = [d for (d,) in conn.execute(select(i.c.digest).where(i.c.repository == repository))]
    end = time.time() if at is None else at
    start = end - window_s
    stored = [r for entries in where_running(conn, digests).values() for r in entries]
    found = {(r["namespace"], r["pod"], r["container"]) for r in stored if r["last_seen"] >= iso(start)}
    running: list[Estimate] = []
    if not stored:
        notes.append(f"no instance of {repository} stored: run `tfgov-ci inventory sync-prometheus` first")
    elif not found:
        notes.append(f"no instance of {repository} seen in the last {window}: nothing to ask Prometheus")
    else:
        step = max(1, window_s // 200)
        peak = f"{max(step, 60)}s"  # at least a minute: a step shorter than a scrape would hold none
        selector = _selector(sorted(found))
        queries = (
            # irate: between a series' last two samples, a sample of the usage itself (rate over 5m
            # would smear a container's first minutes over the whole range)
            (
                "cpu",
                "cores",
                f'max_over_time(irate({CPU}{{{selector},container!=""}}[5m])[{peak}:])',
                1.0,
                False,
            ),
            ("memory", "bytes", f'max_over_time({MEMORY}{{{selector},container!=""}}[{peak}])', 1.0, True),
            ("gpu memory", "bytes", f"max_over_time({GPU_MEMORY}[{peak}])", float(MIB), True),
        )
        for measure, unit, promql, scale, limit in queries:
            values, exported = _samples(prometheus, promql, found, start, end, step)
            if values:
                running.append(estimate(measure, unit, [v * scale for v in values], limit=limit))
            elif measure != "gpu memory":
                notes.append(f"Prometheus has no {_metric(promql)} samples of these containers")
            if exported:
                notes.append(
                    f"{_metric(promql)}: read by its {' and '.join(sorted(exported))} labels (its "
                    "exporter is scraped without honor_labels)"
                )
    return Forecast(
        repository, len(builds), tuple(builds), estimates, tuple(f"{n}/{p}/{c}" for n, p, c in sorted(found)),
        tuple(running), prometheus.shown, window, tuple(notes),
    )  # fmt: skip


def _metric(promql: str) -> str:
    """The metric a query reads: ``max_over_time(irate(NAME{...}...))`` -> NAME."""
    return promql.split("{")[0].split("[")[0].rpartition("(")[2]


def _shown(e: Estimate, value: float | None) -> str:
    if value is None:
        return "-"
    if e.unit == "bytes":
        return f"{math.ceil(value / MIB)} MiB"
    if e.unit == "cores":
        return f"{math.ceil(value * 1000)}m"
    return f"{math.ceil(value)} s"


def render(f: Forecast) -> list[str]:
    lines = [
        f"forecast for {f.repository}: {f.builds} build{'s' if f.builds != 1 else ''} recorded; request = "
        f"p{PERCENTILE} + {HEADROOM:.0%}, memory limit = the peak + {HEADROOM:.0%} (at least the request)"
    ]

    def table(estimates: tuple[Estimate, ...]) -> None:
        for e in estimates:
            p95 = _shown(e, e.p95) if e.p95 is not None else "-"
            resource = e.measure in ("peak memory", "cpu", "memory", "gpu memory")
            line = (
                f"  {e.measure:<18} {e.samples:>5} samples  p95 {p95:>9}  peak {_shown(e, e.peak):>9}  "
                f"-> {'request' if resource else 'expect up to'} {_shown(e, e.request)}"
            )
            if e.limit is not None:
                line += f", limit {_shown(e, e.limit)}"
            lines.append(line)
            if e.assumed:
                lines.append(f"    too little history: {e.assumed}")

    if f.build:
        lines.append("next build:")
        table(f.build)
        lines.append("  # the build job's pod (a Kubernetes runner):")
        lines.extend(f"  {line}" for line in f.snippet(f.build))
    if f.running:
        lines.append(
            f"running containers ({', '.join(f.containers)}; Prometheus {f.prometheus}, {f.window}):"
        )
        table(f.running)
        lines.append("  # the model's containers:")
        lines.extend(f"  {line}" for line in f.snippet(f.running))
    lines.extend(f"note: {n}" for n in f.notes)
    return lines
