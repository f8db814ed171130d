"""grype: run it on the build's OCI layout when it is installed, or import a report it made.

Options (``stages.scan.options``): ``grype_report``: a grype JSON report made elsewhere (an
earlier CI job, another team's scanner) to import instead of running grype here.

grype's JSON (``grype -o json``) becomes normalised findings in :func:`parse_report`, which
``tfgov-ci scan import`` also uses.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, ClassVar

from tfgov_ci import findings, tools
from tfgov_ci.context import Context
from tfgov_ci.findings import Finding, ReportError, Scanner, ScanReport
from tfgov_ci.pipeline import Step
from tfgov_ci.stages.scan.interface import ScanBackend, ScanError, Target

# grype's artifact type -> purl type, for matches without a purl.
_TYPES = {"python": "pypi", "deb": "deb"}


class GrypeScanner(ScanBackend):
    name = "grype"
    tools = ("grype",)

    imports_reports: ClassVar[bool] = True

    @staticmethod
    def detect(doc: Any) -> bool:
        return isinstance(doc, dict) and "matches" in doc and "descriptor" in doc

    @staticmethod
    def parse_report(doc: Any, source: Path) -> ScanReport:
        return parse_report(doc, source)

    def _report(self, ctx: Context) -> Path | None:
        report = self.options.get("grype_report")
        return ctx.config.project_dir / str(report) if report else None

    def steps(self, ctx: Context, target: Target) -> tuple[Step, ...]:
        report = self._report(ctx)
        if report is not None:
            return (Step(f"import grype's report {report}"),)
        argv = ("grype", _source(target), "-o", "json", "--file", "<findings.grype.json>")
        return (
            Step("scan the image for vulnerable packages", argv, "grype"),
            Step("normalise grype's matches"),
        )

    def scan(self, ctx: Context, target: Target) -> ScanReport:
        report = self._report(ctx)
        if report is not None:
            imported = parse_report(findings.read_json(report), report)
            return ScanReport(target.name, imported.scanners, imported.findings)
        with tempfile.TemporaryDirectory(prefix="tfgov-grype.") as tmp:
            output = Path(tmp) / "grype.json"
            argv = ["grype", _source(target), "-o", "json", "--file", str(output)]
            reach = target.access(ctx) if target.pushed else None
            done = tools.run(
                argv,
                env={**os.environ, **reach.anchore_env("GRYPE")} if reach else None,
                secrets=reach.secrets if reach else (),
                check=False,
                timeout=int(self.options.get("timeout", 1800)),
            )
            if done.returncode != 0:
                raise ScanError.of_run(done, "grype could not scan the image")
            parsed = parse_report(findings.read_json(output), output)
        return ScanReport(target.name, parsed.scanners, parsed.findings)


def parse_report(doc: Any, source: Path) -> ScanReport:
    """grype's JSON (``matches``, ``descriptor``) as normalised findings."""
    if not isinstance(doc, dict) or not isinstance(doc.get("matches"), list):
        raise ReportError(f"{source}: not a grype JSON report (no matches list)")
    descriptor = doc.get("descriptor") or {}
    if descriptor.get("name", "grype") != "grype":
        raise ReportError(f"{source}: a report by {descriptor.get('name')!r}, not grype")
    out: list[Finding] = []
    try:
        for match in doc["matches"]:
            out.append(_finding(match))
    except (KeyError, TypeError, AttributeError) as exc:
        raise ReportError(f"{source}: a grype match is missing {exc} or has the wrong shape") from None
    db = descriptor.get("db") or {}
    database = {k: db[k] for k in ("built", "schemaVersion", "checksum") if k in db}
    scanner = Scanner("grype", descriptor.get("version"), str(source), database)
    target = (doc.get("source") or {}).get("target")
    name = target.get("userInput") if isinstance(target, dict) else target
    return ScanReport(str(name or source), (scanner,), tuple(findings.merge(out)))


def _finding(match: dict[str, Any]) -> Finding:
    vuln, artifact = match["vulnerability"], match["artifact"]
    fix = vuln.get("fix") or {}
    state = fix.get("state", "unknown")
    purl = artifact.get("purl") or None
    type_ = findings.purl_type(purl)
    related = [r["id"] for r in match.get("relatedVulnerabilities") or [] if r.get("id") != vuln["id"]]
    scores = [
        float(c["metrics"]["baseScore"])
        for entry in [vuln, *(match.get("relatedVulnerabilities") or [])]
        for c in entry.get("cvss") or []
        if str(c.get("version", "")).startswith("3") and "baseScore" in (c.get("metrics") or {})
    ]
    upstreams = [u.get("name") for u in artifact.get("upstreams") or [] if u.get("name")]
    return Finding(
        id=vuln["id"],
        package=artifact["name"],
        package_type=_TYPES.get(artifact.get("type", ""), artifact.get("type") or "unknown")
        if type_ == "unknown"
        else type_,
        installed_version=artifact.get("version", ""),
        purl=purl,
        source_package=upstreams[0] if upstreams else None,
        aliases=tuple(dict.fromkeys(related)),
        fixed_versions=tuple(fix.get("versions") or ()),
        severity=findings.severity(vuln.get("severity")),
        fix_state=state if state in findings.FIX_STATES else "unknown",
        cvss_score=max(scores, default=None),
        title=vuln.get("description", "")[:200],
        urls=tuple(vuln.get("urls") or ())[:1],
        scanners=("grype",),
        locations=tuple(
            (loc.get("path"), loc.get("layerID"))
            for loc in artifact.get("locations") or []
            if loc.get("path")
        ),
    )


def _source(target: Target) -> str:
    """The image the build pushed, from the registry; else its OCI layout."""
    return f"registry:{target.pushed}" if target.pushed else f"oci-dir:{target.layout}"
