"""Reports for humans and CI, all from one decision: Markdown summary, JUnit XML (one test case
per rule), and GitLab's container-scanning report (security report schema 15)."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping, Sequence
from typing import Any
from xml.etree import ElementTree as ET

from tfgov_ci import findings
from tfgov_ci.findings import Finding
from tfgov_ci.stages.policy.exceptions import Applied
from tfgov_ci.stages.policy.interface import Decision

TOP_FINDINGS = 15
GITLAB_REPORT_VERSION = "15.0.7"
_GITLAB_SEVERITY = {
    "CRITICAL": "Critical",
    "HIGH": "High",
    "MEDIUM": "Medium",
    "LOW": "Low",
    "UNKNOWN": "Unknown",
}


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def markdown(decision: Decision, image: str, applied: Applied, all_findings: Sequence[Finding]) -> str:
    verdict = "**allowed**" if decision.allow else "**denied**"
    counts = dict.fromkeys(findings.SEVERITIES, 0)
    for finding in applied.findings:
        counts[finding.severity] += 1
    lines = [
        f"## tfgov-ci policy: {verdict}",
        "",
        f"Image `{image}`, {len(all_findings)} findings "
        f"({', '.join(f'{n} {k.lower()}' for k, n in counts.items() if n) or 'none'} after exceptions; "
        f"{len(applied.excepted)} excepted). Engine: {decision.engine}.",
        "",
        "| rule | result | reasons |",
        "|---|---|---|",
    ]
    for rule in decision.rules:
        reasons = "; ".join([*rule.denials[:3], *([rule.error] if rule.error else [])])
        more = f" (+{len(rule.denials) - 3} more)" if len(rule.denials) > 3 else ""
        lines.append(f"| {rule.name} | {'pass' if rule.passed else 'DENY'} | {_cell(reasons)}{more} |")
    lines += [f"| engine | DENY | {_cell(error)} |" for error in decision.errors]
    top = applied.findings[:TOP_FINDINGS]
    if top:
        lines += ["", f"### Top findings ({len(top)} of {len(applied.findings)})", ""]
        lines += ["| severity | id | package | installed | fixed in |", "|---|---|---|---|---|"]
        lines += [
            f"| {f.severity} | {f.id} | {_cell(f.package)} | {_cell(f.installed_version)} "
            f"| {_cell(', '.join(f.fixed_versions) or '-')} |"
            for f in top
        ]
    outdated = [(e, f"{f.id} fixed in {', '.join(f.fixed_versions)}") for e, f in applied.outdated]
    sections = (
        ("Exceptions used", [(e, f"{n} findings") for e, n in _used(applied)]),
        ("Expired exceptions (the gate fails)", [(e, "expired") for e in applied.expired]),
        ("Stale exceptions (match nothing: remove them)", [(e, "stale") for e in applied.stale]),
        ("Outdated exceptions (a fix exists: upgrade)", outdated),
    )
    for title, rows in sections:
        if rows:
            lines += [
                "",
                f"### {title}",
                "",
                "| id | package | owner | expires | note |",
                "|---|---|---|---|---|",
            ]
            lines += [
                f"| {e.id} | {_cell(e.package)} | {_cell(e.owner)} | {e.expires} | {_cell(note)} |"
                for e, note in rows
            ]
    return "\n".join(lines) + "\n"


def _used(applied: Applied) -> list[tuple[Any, int]]:
    counts: dict[int, int] = {}
    for _, entry in applied.excepted:
        counts[entry.index] = counts.get(entry.index, 0) + 1
    return [(e, counts.get(e.index, 0)) for e in applied.used]


def junit(decision: Decision, image: str, duration_s: float) -> str:
    """One test case per rule; a denial or a fail-closed error is a failure with every reason."""
    cases = [(r.name, r.file, [*r.denials, *([r.error] if r.error else [])]) for r in decision.rules]
    cases += [("engine", "", [e]) for e in decision.errors]
    suite = ET.Element(
        "testsuite",
        name=f"tfgov-ci policy ({image})",
        tests=str(len(cases)),
        failures=str(sum(1 for _, _, reasons in cases if reasons)),
        errors="0",
        time=f"{duration_s:.3f}",
    )
    for name, file, reasons in cases:
        case = ET.SubElement(suite, "testcase", classname="tfgov.rules", name=name, file=file)
        if reasons:
            failure = ET.SubElement(case, "failure", message=reasons[0][:500], type="denied")
            failure.text = "\n".join(reasons)
    root = ET.Element("testsuites")
    root.append(suite)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _gitlab_time(stamp: dt.datetime) -> str:
    return stamp.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")


def gitlab_container_scanning(
    all_findings: Sequence[Finding],
    image: str,
    scanners: Sequence[Mapping[str, Any]],
    started: dt.datetime,
    finished: dt.datetime,
    operating_system: str = "Unknown",
) -> dict[str, Any]:
    """GitLab's container-scanning report; every finding, excepted or not (GitLab keeps its own
    dismissals; the tfgov-ci decision is in the JUnit report and the summary)."""
    names = "+".join(str(s.get("name")) for s in scanners) or "tfgov-ci"
    vendor = {"name": "tfgov-ci"}
    vulnerabilities = []
    for f in all_findings:
        ids = [f.id, *f.aliases]
        vulnerabilities.append(
            {
                "id": str(
                    uuid.uuid5(
                        uuid.NAMESPACE_URL, f"tfgov-ci:{image}:{f.package}:{f.installed_version}:{f.id}"
                    )
                ),
                "name": f.title or f.id,
                "description": f.title or f.id,
                "severity": _GITLAB_SEVERITY[f.severity],
                "solution": f"Upgrade {f.package} to {', '.join(f.fixed_versions)}"
                if f.fixed_versions
                else "No fix yet",
                "identifiers": [
                    {"type": i.split("-", 1)[0].lower(), "name": i, "value": i}
                    | ({"url": f.urls[0]} if f.urls and i == f.id else {})
                    for i in ids
                ],
                "links": [{"url": url} for url in f.urls],
                "location": {
                    "dependency": {"package": {"name": f.package}, "version": f.installed_version},
                    "operating_system": operating_system,
                    "image": image,
                },
            }
        )
    return {
        "version": GITLAB_REPORT_VERSION,
        "scan": {
            "analyzer": {"id": "tfgov-ci", "name": "tfgov-ci", "version": _version(), "vendor": vendor},
            "scanner": {"id": names, "name": names, "version": _version(), "vendor": vendor},
            "type": "container_scanning",
            "start_time": _gitlab_time(started),
            "end_time": _gitlab_time(finished),
            "status": "success",
        },
        "vulnerabilities": vulnerabilities,
    }


def _version() -> str:
    from tfgov_ci import __version__

    return __version__
