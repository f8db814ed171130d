"""What a scan backend promises, and the part every scanner shares.

A scanner backend says which steps it would take (:meth:`ScanBackend.steps`) and turns the built
image into a :class:`~tfgov_ci.findings.ScanReport` (:meth:`ScanBackend.scan`). Writing the findings
file and the stage result is done here, once, for one scanner or several (``stages.scan.backend:
trivy+osv``: :class:`Combined`), whose findings are merged by package and id.

The scan stage reports; it does not judge. The policy stage is the gate.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from tfgov_ci import findings
from tfgov_ci.context import Context
from tfgov_ci.errors import ToolError
from tfgov_ci.findings import ReportError, ScanReport
from tfgov_ci.oci.registry import Access, access
from tfgov_ci.pipeline import STAGES, Clock, StagePlan, StageResult, Step, passed, read_result, result_path
from tfgov_ci.stages.handoff import BuiltImage, hands_off, pushed_at

FINDINGS_FILE = "findings.json"


class ScanError(ToolError):
    """The scanner could not run or could not read the image (exit 3)."""


@dataclass(frozen=True)
class Target:
    """The built image as the scanners see it: its OCI layout, or, where the build pushed it (the
    image is handed over through the registry: :mod:`tfgov_ci.stages.handoff`), the registry's
    ``registry/repository@digest``; its digest, name and SBOM."""

    layout: Path
    digest: str
    name: str  # repository@digest
    cyclonedx: Path
    pushed: str | None = None  # registry/repository@digest: scanners read the image from there

    @classmethod
    def planned(cls, ctx: Context) -> Target:
        return cls(
            layout=BuiltImage.layout_path(ctx),
            digest="<build digest>",
            name=f"{ctx.images().repository}@<build digest>",
            cyclonedx=result_path(ctx.out_dir, "sbom").parent / "sbom.cdx.json",
            pushed=str(pushed_at(ctx, "<build digest>")) if hands_off(ctx) else None,
        )

    @classmethod
    def built(cls, ctx: Context) -> Target:
        image, sbom = BuiltImage.read(ctx), read_result(ctx, "sbom")
        return cls(
            layout=image.layout,
            digest=image.digest,
            name=f"{ctx.images().repository}@{image.digest}",
            cyclonedx=Path(sbom.outputs["cyclonedx"]),
            pushed=image.pushed or None,
        )

    def access(self, ctx: Context) -> Access:
        """The credentials and CA for the registry the image was pushed to."""
        assert self.pushed is not None
        return access(self.pushed.split("/", 1)[0], ctx.config.registries, os.environ)


class ScanBackend(ABC):
    stage: ClassVar[str] = "scan"
    name: ClassVar[str]
    tools: ClassVar[tuple[str, ...]] = ()

    def __init__(self, options: Mapping[str, Any]) -> None:
        self.options = options

    @abstractmethod
    def steps(self, ctx: Context, target: Target) -> tuple[Step, ...]:
        """What this scanner would do to the target (for the plan; no side effects)."""

    @abstractmethod
    def scan(self, ctx: Context, target: Target) -> ScanReport:
        """Scan the target; every finding in the normalised shape."""

    # A scanner whose JSON report `tfgov-ci scan import` reads says so here: ``detect`` tells its
    # format from a parsed document, ``parse_report`` normalises it, whole or not at all.
    imports_reports: ClassVar[bool] = False

    @staticmethod
    def detect(doc: Any) -> bool:
        """Whether ``doc`` is a report in this scanner's own JSON format."""
        return False

    @staticmethod
    def parse_report(doc: Any, source: Path) -> ScanReport:
        raise NotImplementedError

    def plan(self, ctx: Context) -> StagePlan:
        return _plan(ctx, self.name, [self])

    def run(self, ctx: Context, plan: StagePlan) -> StageResult:
        return _run(ctx, self.name, [self])


class Combined:
    """Several scanners as one scan backend (``trivy+osv``): each runs, their findings merge."""

    stage: ClassVar[str] = "scan"

    def __init__(self, parts: Sequence[ScanBackend]) -> None:
        self.parts = list(parts)
        self.name = "+".join(part.name for part in parts)
        self.tools = tuple(dict.fromkeys(tool for part in parts for tool in part.tools))

    def plan(self, ctx: Context) -> StagePlan:
        return _plan(ctx, self.name, self.parts)

    def run(self, ctx: Context, plan: StagePlan) -> StageResult:
        return _run(ctx, self.name, self.parts)


def _plan(ctx: Context, name: str, scanners: Sequence[ScanBackend]) -> StagePlan:
    target = Target.planned(ctx)
    out = result_path(ctx.out_dir, "scan").parent
    steps = [step for scanner in scanners for step in scanner.steps(ctx, target)]
    if len(scanners) > 1:
        steps.append(Step("merge the scanners' findings by package and id"))
    return StagePlan(
        stage="scan",
        backend=name,
        available=True,
        summary=STAGES["scan"].summary,
        tools=tuple(dict.fromkeys(tool for scanner in scanners for tool in scanner.tools)),
        steps=tuple(steps),
        inputs=(str(result_path(ctx.out_dir, "build")), str(result_path(ctx.out_dir, "sbom"))),
        outputs=(str(out / FINDINGS_FILE), str(result_path(ctx.out_dir, "scan"))),
    )


def _run(ctx: Context, name: str, scanners: Sequence[ScanBackend]) -> StageResult:
    clock = Clock.start()
    target = Target.built(ctx)
    report = findings.combine(target.name, [scanner.scan(ctx, target) for scanner in scanners])
    out = result_path(ctx.out_dir, "scan").parent / FINDINGS_FILE
    report.write(out)
    counts = report.counts()
    fixable = sum(1 for f in report.findings if f.fixable)
    shown = ", ".join(f"{n} {level.lower()}" for level, n in counts.items() if n)
    return passed(
        ctx,
        "scan",
        name,
        clock,
        f"{len(report.findings)} findings ({shown or 'none'}); {fixable} with a fix",
        outputs={"findings": str(out)},
        data={
            "target": report.target,
            "total": len(report.findings),
            "by_severity": counts,
            "fixable": fixable,
            "scanners": [s.to_json() for s in report.scanners],
        },
    )


# --- reports made elsewhere: `tfgov-ci scan import` -------------------------------------------


def report_formats() -> dict[str, type[ScanBackend]]:
    """The scan backends whose reports `tfgov-ci scan import` reads, by name (plug-ins included)."""
    from tfgov_ci.pipeline import backend_choices, registered_backends

    found = registered_backends()["scan"]
    loaded = {name: found[name].load() for name in backend_choices("scan") if name in found}
    return {name: cls for name, cls in loaded.items() if getattr(cls, "imports_reports", False)}


def detect_format(doc: Any) -> str | None:
    """The scanner whose JSON report ``doc`` is (trivy: ``SchemaVersion``; grype: ``matches``)."""
    return next((name for name, cls in report_formats().items() if cls.detect(doc)), None)


def import_report(path: Path, fmt: str | None = None) -> ScanReport:
    """A trivy or grype JSON report, whole, as normalised findings; :class:`ReportError` if it is not."""
    doc = findings.read_json(path)
    formats = report_formats()
    detected = detect_format(doc)
    if fmt is None and detected is None:
        raise ReportError(
            f"{path}: neither {' nor '.join(f'a {name}' for name in formats)} JSON report "
            "(trivy's: SchemaVersion 2)",
            "pass --format trivy|grype, or produce it with `trivy ... --format json` / `grype -o json`",
        )
    chosen = fmt or detected
    assert chosen is not None
    if detected is not None and detected != chosen:
        raise ReportError(f"{path}: looks like a {detected} report, not {chosen}", f"use --format {detected}")
    return formats[chosen].parse_report(doc, path)
