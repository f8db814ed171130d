"""``inventory report``: the fleet on one static page, for a security or platform lead.

One HTML file with everything inside it: the styles inline and the charts drawn by matplotlib as
inline SVG, no script and nothing fetched, so that it opens the same from a CI artifact, GitLab
Pages or a laptop with no network. Its panels: images per base and per TensorFlow version,
governed against ungoverned, findings by severity over time (by when they were found: the
pipelines' scans and each rescan), running instances per namespace (from the newest syncs), stale
images, snowflake groups, and the newest rescan's new findings. :func:`gather` is the data (also
``--format json``); :func:`html` draws it. An empty inventory gives a page that says so.
"""

from __future__ import annotations

import datetime as dt
import html as html_mod
import io
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from tfgov_ci.findings import SEVERITIES
from tfgov_ci.inventory import duplicates as duplicates_mod
from tfgov_ci.inventory import stale as stale_mod
from tfgov_ci.inventory import tables
from tfgov_ci.inventory.instances import iso

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

TOP = 15  # bars per chart: the rest is summed as "other"
ROWS = 50  # rows per table on the page (the JSON has them all)
SEVERITY_COLOURS = {"CRITICAL": "#7b1fa2", "HIGH": "#d32f2f", "MEDIUM": "#f57c00", "LOW": "#fbc02d",
                    "UNKNOWN": "#9e9e9e"}  # fmt: skip
KIND_COLOURS = {"governed": "#2e7d32", "ungoverned": "#d32f2f", "unknown": "#6d4c41"}


def gather(conn: Connection, *, days: int = 90, threshold: float = 0.8, shown: str = "") -> dict[str, Any]:
    """Every panel's data, as plain JSON-able values."""
    from sqlalchemy import func, select

    i, f, inst = tables.images, tables.findings, tables.instances
    images = list(conn.execute(select(i.c.digest, i.c.governed, i.c.base_ref, i.c.base_digest,
                                      i.c.tensorflow_version, i.c.repository)).mappings())  # fmt: skip
    bases = Counter(r["base_ref"] or r["base_digest"] or "(not known)" for r in images)
    tensorflow = Counter(r["tensorflow_version"] or "(not known)" for r in images)
    governed = {d: bool(g) for d, g in ((r["digest"], r["governed"]) for r in images)}
    day = func.substr(f.c.found, 1, 10).label("day")  # one expression: PostgreSQL groups by it
    found = conn.execute(
        select(day, f.c.severity, func.count()).where(f.c.excepted.is_(False)).group_by(day, f.c.severity)
    ).all()
    rs, rf = tables.rescans, tables.rescan_findings
    rescanned = func.substr(rs.c.started, 1, 10).label("day")  # as each rescan counted them
    found = [
        *found,
        *conn.execute(
            select(rescanned, rf.c.severity, func.sum(rf.c.images))
            .join(rs, rs.c.id == rf.c.rescan_id)
            .group_by(rescanned, rf.c.severity)
        ).all(),
    ]
    over_time: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(SEVERITIES, 0))
    for day, severity, n in found:
        over_time[day][severity if severity in SEVERITIES else "UNKNOWN"] += int(n)
    namespaces: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(KIND_COLOURS, 0))
    running = conn.execute(
        select(
            inst.c.cluster, inst.c.namespace, inst.c.pod, inst.c.container, inst.c.image, inst.c.digest
        ).where(inst.c.running.is_(True))
    ).mappings()
    unwatched = []
    for r in running:
        kind = (
            "unknown"
            if r["digest"] not in governed
            else "governed"
            if governed[r["digest"]]
            else "ungoverned"
        )
        namespaces[f"{r['cluster']}/{r['namespace']}"][kind] += 1
        if kind != "governed":
            unwatched.append({**dict(r), "kind": kind})
    syncs = [dict(r) for r in conn.execute(
        select(tables.prometheus_syncs).order_by(tables.prometheus_syncs.c.synced.desc()).limit(5)
    ).mappings()]  # fmt: skip
    stale = stale_mod.stale(conn, days)
    dupes = duplicates_mod.duplicates(conn, threshold)
    return {
        "schema_version": 1,
        "generated": iso(dt.datetime.now(dt.UTC).timestamp()),
        "inventory": shown,
        "images": len(images),
        "repositories": len({r["repository"] for r in images if r["repository"]}),
        "governed": sum(governed.values()),
        "ungoverned": len(images) - sum(governed.values()),
        "per_base": dict(bases.most_common()),
        "per_tensorflow": dict(sorted(tensorflow.items())),
        "findings_over_time": {day: over_time[day] for day in sorted(over_time)},
        "instances_per_namespace": {ns: namespaces[ns] for ns in sorted(namespaces)},
        "running_not_governed": sorted(unwatched, key=lambda r: (r["kind"], r["namespace"], r["pod"])),
        "syncs": syncs,
        "stale": stale.to_json(),
        "duplicates": dupes.to_json(),
        "rescan": _newest_rescan(conn),
    }


def _newest_rescan(conn: Connection) -> dict[str, Any] | None:
    from sqlalchemy import select

    from tfgov_ci.inventory.rescan import history

    r, rf, p, i = tables.rescans, tables.rescan_findings, tables.packages, tables.images
    newest = conn.execute(select(r).order_by(r.c.started.desc(), r.c.id.desc()).limit(1)).mappings().first()
    if newest is None:
        return None
    versions = conn.execute(
        select(p.c.id, p.c.type, p.c.key, p.c.version)
        .where(p.c.id.in_(select(rf.c.package_id).where(rf.c.rescan_id == newest["id"])))
    ).all()  # fmt: skip
    known, stored, scopes = history(
        conn, [(v.type, v.key, v.version) for v in versions], [v.id for v in versions]
    )
    applied = [(s, images) for s, images in known.replay(stored, scopes) if s.rescan_id == newest["id"]]
    wanted = sorted(set().union(*(images for _, images in applied)))
    facts: dict[int, Any] = {}
    for start in range(0, len(wanted), 500):
        query = select(i.c.id, i.c.digest, i.c.repository, i.c.governed).where(
            i.c.id.in_(wanted[start : start + 500])
        )
        facts.update({row.id: row for row in conn.execute(query)})
    found = sorted(
        (
            {
                "advisory": s.row["advisory"],
                "severity": s.row["severity"],
                "name": s.row["name"],
                "version": s.row["version"],
                "fixed_versions": s.row["fixed_versions"],
                "digest": facts[image_id].digest,
                "repository": facts[image_id].repository,
                "governed": facts[image_id].governed,
            }
            for s, images in applied
            for image_id in sorted(images)
        ),
        key=lambda e: (SEVERITIES.index(e["severity"]) if e["severity"] in SEVERITIES else 9, e["advisory"]),
    )
    return {**dict(newest), "findings": found}


# --- the page ----------------------------------------------------------------------------------


def _svg(figure: Any) -> str:
    """A matplotlib figure as inline SVG (text kept as text: small, and searchable in the page)."""
    import matplotlib.pyplot as plt

    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    plt.close(figure)
    text = buffer.getvalue()
    return text[text.index("<svg") :]


def _top(counts: Mapping[str, int]) -> dict[str, int]:
    items = sorted(counts.items(), key=lambda kv: -kv[1])
    shown = dict(items[:TOP])
    if len(items) > TOP:
        shown[f"other ({len(items) - TOP})"] = sum(n for _, n in items[TOP:])
    return shown


def _label(text: str) -> str:
    """A bar's label, short enough to read: a digest cut to 12 hex digits, a registry host dropped."""
    name, at, digest = text.partition("@sha256:")
    if at:
        text = (
            f"{name.split('/', 1)[-1] if '/' in name else name}@{digest[:12]}"
            if name
            else f"sha256:{digest[:12]}"
        )
    elif text.startswith("sha256:"):
        text = text[:19]
    return text if len(text) <= 48 else "…" + text[-47:]


def _labels(texts: Sequence[str]) -> list[str]:
    """Short labels that stay distinct: matplotlib draws bars of the same label as one bar."""
    short = [_label(t) for t in texts]
    counts = Counter(short)
    out = [  # a short label two texts share: the text itself (its end), then numbered
        s if counts[s] == 1 else (t if len(t) <= 48 else "…" + t[-47:])
        for s, t in zip(short, texts, strict=True)
    ]
    seen: Counter[str] = Counter()
    for n, label in enumerate(out):
        seen[label] += 1
        if seen[label] > 1:
            out[n] = f"{label} ({seen[label]})"
    return out


def _axes(axes: Any) -> None:
    for side in ("top", "right"):
        axes.spines[side].set_visible(False)


def _bars(counts: Mapping[str, int], xlabel: str, colour: str = "#1565c0") -> str:
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    shown = _top(counts)
    labels = _labels(list(shown))
    figure, axes = plt.subplots(figsize=(6, 0.7 + 0.3 * max(2, len(shown))))
    axes.barh(labels[::-1], list(shown.values())[::-1], color=colour, height=0.6)
    axes.set_xlabel(xlabel)
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    _axes(axes)
    return _svg(figure)


def _stacked(rows: Mapping[str, Mapping[str, int]], colours: Mapping[str, str], xlabel: str,
             *, horizontal: bool) -> str:  # fmt: skip
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    if horizontal:  # the largest rows first (the caller says how many more there are)
        ranked = sorted(rows, key=lambda n: -sum(rows[n].values()))
        rows = {n: rows[n] for n in ranked[:TOP]}
    names = list(rows) if horizontal else list(rows)[-60:]  # the newest 60 days
    size = (6, 0.7 + 0.3 * max(2, len(names))) if horizontal else (6, 2.8)
    figure, axes = plt.subplots(figsize=size)
    base = [0] * len(names)
    for key, colour in colours.items():
        values = [rows[n].get(key, 0) for n in names]
        if not any(values):
            continue
        if horizontal:
            labels = _labels(names)
            axes.barh(
                labels[::-1], values[::-1], left=base[::-1], color=colour, label=key.lower(), height=0.6
            )
        else:
            axes.bar(names, values, bottom=base, color=colour, label=key.lower(), width=0.6)
        base = [b + v for b, v in zip(base, values, strict=True)]
    (axes.set_xlabel if horizontal else axes.set_ylabel)(xlabel)
    (axes.xaxis if horizontal else axes.yaxis).set_major_locator(MaxNLocator(integer=True))
    if not horizontal:
        axes.tick_params(axis="x", labelrotation=45, labelsize=8)
        every = max(1, len(names) // 12)  # at most a dozen dates written under the bars
        for n, tick in enumerate(axes.get_xticklabels()):
            tick.set_visible(n % every == 0)
        axes.set_xlim(-0.8, max(len(names), 4) - 0.2)  # one day is a bar, not the whole width
    axes.legend(frameon=False, fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    _axes(axes)
    return _svg(figure)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'s' if n != 1 else ''}"


def _e(value: Any) -> str:
    return html_mod.escape("" if value is None else str(value))


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]], total: int | None = None) -> str:
    if not rows:
        return '<p class="none">None.</p>'
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>" for row in rows[:ROWS])
    more = total if total is not None else len(rows)
    note = f'<p class="more">{more - ROWS} more in the JSON (--format json).</p>' if more > ROWS else ""
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{note}"


def _short(digest: str) -> str:
    return digest[:19] + "…" if digest.startswith("sha256:") else digest


STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;margin:0;color:#212121;
background:#fafafa}
header{background:#263238;color:#fff;padding:16px 28px}header h1{margin:0;font-size:22px}
header p{margin:4px 0 0;color:#cfd8dc;font-size:13px}
main{display:grid;grid-template-columns:repeat(auto-fit,minmax(560px,1fr));gap:18px;padding:18px 28px}
section{background:#fff;border:1px solid #e0e0e0;border-radius:6px;padding:14px 18px;overflow-x:auto}
section.wide{grid-column:1/-1}h2{font-size:16px;margin:0 0 10px}
.tiles{display:flex;gap:12px;flex-wrap:wrap}
.tile{border-radius:6px;padding:10px 16px;background:#eceff1;min-width:110px}
.tile b{display:block;font-size:24px}.tile.bad{background:#ffebee;color:#b71c1c}.tile.good{background:#e8f5e9}
table{border-collapse:collapse;font-size:12.5px;width:100%}th,td{text-align:left;padding:4px 8px;
border-bottom:1px solid #eee;vertical-align:top}th{background:#f5f5f5}td{font-family:ui-monospace,monospace}
.none,.more{color:#757575;font-size:13px}svg{max-width:100%;height:auto}
.empty{grid-column:1/-1;font-size:18px;padding:40px;text-align:center}
"""
# nothing may be fetched: the page must open the same with no network (a CI artifact, Pages)
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"


def _section(title: str, content: str, *, wide: bool = False, note: str = "") -> str:
    kind = ' class="wide"' if wide else ""
    said = f'<p class="more">{note}</p>' if note else ""
    return f"<section{kind}><h2>{_e(title)}</h2>{said}{content}</section>"


def _tiles(data: Mapping[str, Any]) -> str:
    namespaces = data["instances_per_namespace"].values()
    unknown = sum(v["unknown"] for v in namespaces)
    ungoverned = sum(v["ungoverned"] for v in namespaces)
    tiles = [
        ("images", data["images"], ""),
        ("governed", data["governed"], "good"),
        ("ungoverned", data["ungoverned"], "bad" if data["ungoverned"] else ""),
        ("running, ungoverned", ungoverned, "bad" if ungoverned else ""),
        ("running, unknown", unknown, "bad" if unknown else ""),
        ("stale", len(data["stale"]["images"]), ""),
        ("snowflake groups", len(data["duplicates"]["groups"]), ""),
    ]
    cells = "".join(f'<div class="tile {c}"><b>{n}</b>{_e(label)}</div>' for label, n, c in tiles)
    return f'<div class="tiles">{cells}</div>'


def _running(data: Mapping[str, Any]) -> str:
    if data["instances_per_namespace"]:
        per = data["instances_per_namespace"]
        chart = _stacked(per, KIND_COLOURS, "running containers", horizontal=True)
        if len(per) > TOP:
            ranked = sorted(per.values(), key=lambda kinds: -sum(kinds.values()))[TOP:]
            chart += (
                f'<p class="more">The {TOP} namespaces running the most containers; '
                f"{len(ranked)} more run {sum(sum(k.values()) for k in ranked)} (--format json).</p>"
            )
    else:
        chart = '<p class="none">No instances: run <code>tfgov-ci inventory sync-prometheus</code>.</p>'
    rows = [
        [r["kind"].upper(), r["cluster"], f"{r['namespace']}/{r['pod']}/{r['container']}", r["image"],
         _short(r["digest"])]
        for r in data["running_not_governed"]
    ]  # fmt: skip
    table = _table(["kind", "cluster", "namespace/pod/container", "image", "digest"], rows)
    return f"{chart}<h2>Running, not governed</h2>{table}"


def _stale(stale: Mapping[str, Any]) -> str:
    rows = [
        [s["repository"], _short(s["digest"]),
         f"{s['last_use']} ({s['last_use_kind']})" if s["last_use"] else "no use time known",
         stale_mod.size(s["size_bytes"]), "yes" if s["governed"] else "NO"]
        for s in stale["images"]
    ]  # fmt: skip
    return _table(["repository", "digest", "last use", "size", "governed"], rows)


def _groups(dupes: Mapping[str, Any]) -> str:
    rows = [
        [n, len(g["members"]), f"{g['similarity']['min']:.2f}–{g['similarity']['max']:.2f}", len(g["shared"]),
         ", ".join(m["repository"] or _short(m["digest"]) for m in g["members"])]
        for n, g in enumerate(dupes["groups"], 1)
    ]  # fmt: skip
    return _table(["group", "images", "similarity", "shared packages", "repositories"], rows)


def _rescan(rescan: Mapping[str, Any] | None) -> str:
    if rescan is None:
        return '<p class="none">No rescan yet (<code>tfgov-ci rescan --advisories DIR</code>).</p>'
    rows = [
        [r["severity"], r["advisory"], f"{r['name']} {r['version']}",
         f"{r['repository'] or ''}@{_short(r['digest'])}", "yes" if r["governed"] else "NO"]
        for r in rescan["findings"]
    ]  # fmt: skip
    said = (
        f'<p class="more">{_e(rescan["started"])}, advisory database {_e(rescan["advisory_db_digest"])}: '
        f"{len(rescan['findings'])} new findings.</p>"
    )
    return said + _table(["severity", "advisory", "package", "image", "governed"], rows)


def html(data: Mapping[str, Any]) -> str:
    """The page: valid HTML5, self-contained."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # text.parse_math off: a label is an image's name or label, never mathtext ("$x$" stays "$x$")
    plt.rcParams.update(
        {"svg.fonttype": "none", "font.family": "DejaVu Sans", "font.size": 9, "text.parse_math": False}
    )
    title = "tfgov-ci fleet"
    header = (
        f"<header><h1>{title}</h1><p>{_e(data['inventory'])} · generated {_e(data['generated'])} · "
        f"{data['images']} images in {data['repositories']} repositories</p></header>"
    )
    if not data["images"]:
        empty = "The inventory is empty: no images recorded yet (<code>tfgov-ci inventory import</code>)."
        return _page(title, f'{header}<main><section class="empty">{empty}</section></main>')
    stale, dupes = data["stale"], data["duplicates"]
    governance = {"images": {"governed": data["governed"], "ungoverned": data["ungoverned"]}}
    findings = '<p class="none">No findings recorded.</p>'
    if data["findings_over_time"]:
        findings = _stacked(data["findings_over_time"], SEVERITY_COLOURS, "findings found that day",
                            horizontal=False)  # fmt: skip
    synced = ", ".join(f"{s['cluster']} at {s['synced']}" for s in data["syncs"][:3]) or "never"
    sections = [
        _section("At a glance", _tiles(data), wide=True),
        _section("Images per base", _bars(data["per_base"], "images")),
        _section("Images per TensorFlow version",
                 _bars(data["per_tensorflow"], "images", "#6a1b9a")),
        _section("Governed and ungoverned",
                 _stacked(governance, KIND_COLOURS, "images", horizontal=True)),
        _section("Findings by severity over time", findings),
        _section("Running instances per namespace", _running(data), wide=True,
                 note=f"Last syncs: {_e(synced)}"),
        _section(f"Stale images (no use for {stale['days']} days)", _stale(stale), wide=True,
                 note=f"{_plural(len(stale['images']), 'image')}, "
                 f"{_e(stale_mod.size(stale['size_bytes']))}; archiving "
                 f"frees {_e(stale_mod.size(stale['freed_bytes']))}. Never listed: images running now or "
                 "the newest of their repository."),
        _section(f"Snowflakes: near-copies (Jaccard ≥ {dupes['threshold']:g}, {dupes['method']})",
                 _groups(dupes), wide=True, note="Each group's shared packages are a candidate team base."),
        _section("Newest rescan: new findings", _rescan(data["rescan"]), wide=True),
    ]  # fmt: skip
    return _page(title, f"{header}<main>{''.join(sections)}</main>")


def _page(title: str, body: str) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        f"<title>{_e(title)}</title><style>{STYLE}</style></head><body>{body}</body></html>\n"
    )
