"""osv: the offline matcher (:mod:`tfgov_ci.stages.scan.advisories`) on the image's CycloneDX SBOM.

Options (``stages.scan.options``): ``advisories``: a folder of OSV advisories (relative to
tfgov.yaml), e.g. a checkout of the PyPA advisory database; required. No network, no daemon:
for air-gapped sites, and for re-checking old SBOMs when a new advisory lands.
"""

from __future__ import annotations

import json
from pathlib import Path

from tfgov_ci._files import cache_dir
from tfgov_ci.context import Context
from tfgov_ci.errors import UsageError
from tfgov_ci.findings import Scanner, ScanReport
from tfgov_ci.pipeline import Step
from tfgov_ci.stages.scan import advisories
from tfgov_ci.stages.scan.interface import ScanBackend, Target


class OsvScanner(ScanBackend):
    name = "osv"

    def _folder(self, ctx: Context) -> Path:
        folder = self.options.get("advisories")
        if not folder:
            raise UsageError(
                "the osv scanner needs a folder of advisories",
                "set stages.scan.options.advisories to a folder of OSV advisories (JSON or YAML)",
            )
        return ctx.config.project_dir / str(folder)

    def steps(self, ctx: Context, target: Target) -> tuple[Step, ...]:
        return (Step(f"match the SBOM's PyPI and Debian packages against {self._folder(ctx)}"),)

    def scan(self, ctx: Context, target: Target) -> ScanReport:
        db = advisories.Database.open(self._folder(ctx), cache_dir())
        sbom = json.loads(target.cyclonedx.read_text(encoding="utf-8"))
        found = db.match(advisories.sbom_packages(sbom))
        database = {"files": db.files, "skipped": list(db.warnings)}
        return ScanReport(target.name, (Scanner("osv", None, str(db.folder), database),), tuple(found))
