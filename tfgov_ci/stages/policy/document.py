"""The one input document every policy reads (schemas/policy-input.schema.json).

Built from the earlier stages' results on disk (build, sbom, scan) and the governed exceptions,
so that a CI job holding only the out directory can evaluate it, and written beside the decision
(``policy-input.json``) so that ``tfgov-ci policy eval --input`` can replay it anywhere.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from tfgov_ci import findings
from tfgov_ci.context import Context
from tfgov_ci.findings import Finding
from tfgov_ci.pipeline import describe, read_result
from tfgov_ci.stages.handoff import BuiltImage
from tfgov_ci.stages.policy import exceptions
from tfgov_ci.stages.policy.exceptions import Applied, Exception_

SCHEMA_VERSION = 1


def finding_row(finding: Finding) -> dict[str, Any]:
    """A finding as policies see it: what a rule decides on (titles and URLs stay in findings.json)."""
    return {
        "id": finding.id,
        "aliases": list(finding.aliases),
        "package": {"name": finding.package, "type": finding.package_type, "purl": finding.purl},
        "installed_version": finding.installed_version,
        "fixed_versions": list(finding.fixed_versions),
        "severity": finding.severity,
        "fix_state": finding.fix_state,
        "cvss_score": finding.cvss_score,
        "scanners": list(finding.scanners),
    }


def excepted_rows(applied: Applied) -> list[dict[str, Any]]:
    return [{**finding_row(f), "exception": e.to_json()} for f, e in applied.excepted]


def image_names(ctx: Context) -> list[str]:
    """What an exception's ``scope`` is matched against: the image name and its repository."""
    return [ctx.config.image.name, ctx.images().repository]


def build(
    ctx: Context, report: findings.ScanReport, entries: Iterable[Exception_], on: dt.date
) -> tuple[dict[str, Any], Applied]:
    """The input document for this commit and its scan report, and how the exceptions applied."""
    image = BuiltImage.read(ctx)
    sbom_result = read_result(ctx, "sbom")
    applied = exceptions.apply(list(entries), report.findings, image_names(ctx), on)
    source = image.source(ctx)  # the out directory's layout, or the registry the build pushed to
    manifest = source.read_json(image.digest)
    image_config = source.read_json(manifest["config"]["digest"])
    cyclonedx = json.loads(Path(sbom_result.outputs["cyclonedx"]).read_text(encoding="utf-8"))
    merged = json.loads(json.dumps(dict(ctx.config.merged), default=str))
    context = describe(ctx)
    context.pop("out_dir", None)
    document = {
        "schema_version": SCHEMA_VERSION,
        "config": merged,
        "context": context,
        "image": {
            "repository": ctx.images().repository,
            "digest": image.digest,
            "tags": list(image.tags),
            "labels": image.labels,
            "size": image.size,
            "config": image_config.get("config", {}),
            "base": image.base,
        },
        "sbom": {
            **{k: v for k, v in sbom_result.data.items() if k in ("packages", "by_type", "licenses")},
            "components": components(cyclonedx),
        },
        "drift": list(sbom_result.data.get("drift", {}).get("findings", [])),
        "vulnerabilities": [finding_row(f) for f in applied.findings],
        "excepted": excepted_rows(applied),
        "exceptions": applied.to_json(),
        "today": on.isoformat(),
    }
    return document, applied


def components(cyclonedx: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every package of the SBOM: name, version, purl type, purl."""
    out = []
    for component in cyclonedx.get("components") or []:
        purl = component.get("purl")
        if not purl:
            continue
        out.append(
            {
                "name": component.get("name", ""),
                "version": component.get("version", ""),
                "type": findings.purl_type(purl),
                "purl": purl,
            }
        )
    return out


def reapply(document: Mapping[str, Any], entries: Iterable[Exception_], on: dt.date) -> dict[str, Any]:
    """A saved input document with another exceptions file applied (``policy eval --exceptions``)."""
    rows = [*document.get("vulnerabilities", []), *document.get("excepted", [])]
    found = [
        Finding(
            id=row["id"],
            package=row["package"]["name"],
            package_type=row["package"]["type"],
            installed_version=row["installed_version"],
            purl=row["package"].get("purl"),
            aliases=tuple(row.get("aliases", ())),
            fixed_versions=tuple(row.get("fixed_versions", ())),
            severity=row["severity"],
            fix_state=row["fix_state"],
            cvss_score=row.get("cvss_score"),
            scanners=tuple(row.get("scanners", ())),
        )
        for row in rows
    ]
    image = document.get("image", {})
    names = [document.get("config", {}).get("image", {}).get("name", ""), image.get("repository", "")]
    applied = exceptions.apply(list(entries), found, names, on)
    return {
        **document,
        "vulnerabilities": [finding_row(f) for f in applied.findings],
        "excepted": excepted_rows(applied),
        "exceptions": applied.to_json(),
        "today": on.isoformat(),
    }
