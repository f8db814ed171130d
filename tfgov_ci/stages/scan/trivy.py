"""trivy: the scanner binary on the built image (default) or on its CycloneDX SBOM.

Options (``stages.scan.options``):
  ``trivy_target``: ``image`` (findings carry their layer: the image the build pushed, read from the
  registry, or without image.registry the OCI layout) or ``sbom``.
  ``cache_dir``: trivy's cache with its vulnerability database (relative to tfgov.yaml).
  ``skip_db_update``: true to use that database as it is (offline and air-gapped runners).
  ``db_repository``: an OCI mirror of trivy's database.

Its JSON (SchemaVersion 2) becomes normalised findings in :func:`parse_report`, which
``tfgov-ci scan import`` also uses for reports made elsewhere.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Any, ClassVar

from tfgov_ci import findings, tools
from tfgov_ci.context import Context
from tfgov_ci.findings import Finding, ReportError, Scanner, ScanReport
from tfgov_ci.pipeline import Step
from tfgov_ci.stages.scan.interface import ScanBackend, ScanError, Target

# trivy's Status -> our fix state; without a Status (old reports) a FixedVersion means "fixed".
_FIX_STATES = {
    "fixed": "fixed",
    "affected": "not-fixed",
    "under_investigation": "not-fixed",
    "will_not_fix": "wont-fix",
    "fix_deferred": "wont-fix",
    "end_of_life": "wont-fix",
}
# trivy's result Type -> purl type, for findings without a purl.
_TYPES = {"debian": "deb", "ubuntu": "deb", "pip": "pypi", "pipenv": "pypi", "poetry": "pypi"}
_TYPES |= {"python-pkg": "pypi", "uv": "pypi"}


class TrivyScanner(ScanBackend):
    name = "trivy"
    tools = ("trivy",)

    imports_reports: ClassVar[bool] = True

    @staticmethod
    def detect(doc: Any) -> bool:
        return isinstance(doc, dict) and "SchemaVersion" in doc

    @staticmethod
    def parse_report(doc: Any, source: Path) -> ScanReport:
        return parse_report(doc, source)

    def _argv(self, ctx: Context, target: Target, output: str) -> list[str]:
        argv = ["trivy"]
        if self.options.get("trivy_target", "image") == "sbom":
            argv += ["sbom", str(target.cyclonedx)]
        elif target.pushed:  # from the registry: trivy's cache keeps each layer's analysis by diff id
            argv += ["image", "--image-src", "remote", target.pushed]
            if not target.access(ctx).tls_verify:
                argv += ["--insecure"]
        else:
            argv += ["image", "--input", str(target.layout)]
        argv += ["--scanners", "vuln", "--format", "json", "--quiet", "--output", output]
        if "cache_dir" in self.options:
            argv += ["--cache-dir", str(ctx.config.project_dir / str(self.options["cache_dir"]))]
        if self.options.get("skip_db_update"):
            argv += ["--skip-db-update", "--skip-java-db-update", "--offline-scan"]
        if "db_repository" in self.options:
            argv += ["--db-repository", str(self.options["db_repository"])]
        return argv

    def steps(self, ctx: Context, target: Target) -> tuple[Step, ...]:
        argv = self._argv(ctx, target, "<findings.trivy.json>")
        return (
            Step("scan the image for vulnerable packages", tuple(argv), "trivy"),
            Step("normalise trivy's findings"),
        )

    def scan(self, ctx: Context, target: Target) -> ScanReport:
        with tempfile.TemporaryDirectory(prefix="tfgov-trivy.") as tmp:
            output = Path(tmp) / "trivy.json"
            argv = self._argv(ctx, target, str(output))
            with contextlib.ExitStack() as stack:
                env: dict[str, str] | None = None
                secrets: tuple[str, ...] = ()
                if target.pushed and argv[1] == "image":  # the registry's credentials and CA
                    access = target.access(ctx)
                    env = {**os.environ, **stack.enter_context(access.docker_config())}
                    secrets = access.secrets
                timeout = int(self.options.get("timeout", 1800))
                done = tools.run(argv, env=env, secrets=secrets, check=False, timeout=timeout)
            if done.returncode != 0:
                no_db = "vulnerability database" in done.stderr or "--skip-db-update" in done.stderr
                raise ScanError.of_run(
                    done,
                    "trivy could not scan the image",
                    "trivy has no vulnerability database here: let it download one, or point "
                    "stages.scan.options.cache_dir at a copy and set skip_db_update: true"
                    if no_db
                    else "see trivy's output below",
                )
            report = parse_report(findings.read_json(output), output)
        return ScanReport(target.name, report.scanners, report.findings)


def parse_report(doc: Any, source: Path) -> ScanReport:
    """trivy's JSON (SchemaVersion 2: ``trivy image|fs|sbom --format json``) as normalised findings."""
    if not isinstance(doc, dict) or "SchemaVersion" not in doc:
        raise ReportError(f"{source}: not a trivy JSON report (no SchemaVersion)")
    if doc["SchemaVersion"] != 2:
        raise ReportError(
            f"{source}: trivy report SchemaVersion {doc['SchemaVersion']!r} is not one tfgov-ci reads",
            "tfgov-ci reads SchemaVersion 2 (trivy 0.20 and later)",
        )
    out: list[Finding] = []
    try:
        for result in doc.get("Results") or []:
            for vuln in result.get("Vulnerabilities") or []:
                out.append(_finding(vuln, result.get("Type", "")))
    except (KeyError, TypeError, AttributeError) as exc:
        raise ReportError(f"{source}: a trivy result is missing {exc} or has the wrong shape") from None
    version = (doc.get("Trivy") or {}).get("Version")
    scanner = Scanner("trivy", version, str(source), {})
    return ScanReport(str(doc.get("ArtifactName", source)), (scanner,), tuple(findings.merge(out)))


def _finding(vuln: dict[str, Any], result_type: str) -> Finding:
    purl = (vuln.get("PkgIdentifier") or {}).get("PURL")
    fixed = [v.strip() for v in (vuln.get("FixedVersion") or "").split(",") if v.strip()]
    fix_state = _FIX_STATES.get(vuln.get("Status") or "") or ("fixed" if fixed else "unknown")
    scores = [
        float(entry["V3Score"])
        for entry in (vuln.get("CVSS") or {}).values()
        if entry.get("V3Score") is not None
    ]
    layer = vuln.get("Layer") or {}
    location = (vuln.get("PkgPath"), layer.get("Digest") or layer.get("DiffID"))
    type_ = findings.purl_type(purl)
    return Finding(
        id=vuln["VulnerabilityID"],
        package=vuln["PkgName"],
        package_type=_TYPES.get(result_type, result_type or "unknown") if type_ == "unknown" else type_,
        installed_version=vuln.get("InstalledVersion", ""),
        purl=purl,
        aliases=tuple(vuln.get("VendorIDs") or ()),
        fixed_versions=tuple(fixed),
        severity=findings.severity(vuln.get("Severity")),
        fix_state=fix_state,
        cvss_score=max(scores, default=None),
        title=vuln.get("Title", ""),
        urls=(vuln["PrimaryURL"],) if vuln.get("PrimaryURL") else (),
        scanners=("trivy",),
        locations=(location,) if any(location) else (),
    )
