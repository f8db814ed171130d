"""``tfgov-ci scan import``: a trivy or grype report made elsewhere, as a findings file."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from tfgov_ci.commands import actions
from tfgov_ci.errors import EXIT_OK

if TYPE_CHECKING:
    from tfgov_ci.commands import Commands, Common


def add(commands: Commands, common: Common) -> None:
    scan = actions(
        commands,
        common,
        "scan",
        help="vulnerability reports made elsewhere",
        description="Work with vulnerability reports outside a pipeline run.",
    )
    imported = scan.add_parser(
        "import",
        parents=[common(out_dir=False)],  # its --out is the findings file
        help="normalise a trivy or grype JSON report into a findings file",
        description="Read a trivy (SchemaVersion 2) or grype JSON report, whole, and write its findings "
        "in tfgov-ci's normalised schema (schemas/findings.schema.json).",
    )
    imported.add_argument("report", type=Path, metavar="REPORT")
    imported.add_argument("--format", choices=("trivy", "grype"), help="report format (default: detected)")
    imported.add_argument(
        "--out", dest="findings_out", type=Path, required=True, metavar="FILE", help="findings file to write"
    )
    imported.set_defaults(handler=handle_import)


def handle_import(args: argparse.Namespace) -> int:
    from tfgov_ci.stages.scan.interface import import_report

    report = import_report(args.report, args.format)
    report.write(args.findings_out)
    counts = ", ".join(f"{n} {level.lower()}" for level, n in report.counts().items() if n) or "none"
    print(
        f"wrote {args.findings_out}: {len(report.findings)} findings ({counts}), "
        f"from {report.scanners[0].name}"
    )
    return EXIT_OK
