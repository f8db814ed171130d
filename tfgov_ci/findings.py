"""Vulnerability findings in one normalised shape (schemas/findings.schema.json), whatever found them.

trivy, grype and the offline OSV matcher each turn their own output into :class:`Finding` objects;
:func:`merge` folds the lists together: two findings are one when they are about the same package
at the same version and share an id or an alias (trivy says CVE-2023-1, OSV says PYSEC-2023-7 with
alias CVE-2023-1). A findings file is read back only whole and valid (:func:`load`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from tfgov_ci._files import atomic_write_json
from tfgov_ci.errors import UsageError
from tfgov_ci.wheels import normalise_name

SCHEMA_VERSION = 1
SEVERITIES = ("CRITICAL", "HIGH", "MEDIUM", "LOW", "UNKNOWN")
FIX_STATES = ("fixed", "not-fixed", "wont-fix", "unknown")

# What scanners and advisories call their levels, mapped onto the five above.
_SEVERITY_WORDS = {
    "critical": "CRITICAL",
    "high": "HIGH",
    "important": "HIGH",
    "medium": "MEDIUM",
    "moderate": "MEDIUM",
    "low": "LOW",
    "negligible": "LOW",
    "minor": "LOW",
}


class ReportError(UsageError):
    """A scanner report or findings file that cannot be read as what it claims to be (exit 2)."""


def severity(word: str | None) -> str:
    """A scanner's severity word as one of :data:`SEVERITIES` (UNKNOWN when it gives none we know)."""
    return _SEVERITY_WORDS.get((word or "").strip().lower(), "UNKNOWN")


def severity_of_score(score: float | None) -> str:
    """CVSS v3 qualitative rating of a base score."""
    if score is None:
        return "UNKNOWN"
    if score >= 9.0:
        return "CRITICAL"
    if score >= 7.0:
        return "HIGH"
    if score >= 4.0:
        return "MEDIUM"
    return "LOW" if score > 0 else "UNKNOWN"


def rank(level: str) -> int:
    """CRITICAL 0 ... UNKNOWN 4: for sorting, most severe first."""
    return SEVERITIES.index(level)


def package_key(type_: str, name: str) -> str:
    """Compare packages by name as their ecosystem does: PEP 503 for Python, exact for the rest."""
    return normalise_name(name) if type_ == "pypi" else name


def purl_type(purl: str | None) -> str:
    if purl and purl.startswith("pkg:") and "/" in purl:
        return purl[4:].split("/", 1)[0].lower()
    return "unknown"


@dataclass(frozen=True)
class Finding:
    id: str
    package: str
    package_type: str
    installed_version: str
    purl: str | None = None
    source_package: str | None = None
    aliases: tuple[str, ...] = ()
    fixed_versions: tuple[str, ...] = ()
    severity: str = "UNKNOWN"
    fix_state: str = "unknown"
    cvss_score: float | None = None
    title: str = ""
    urls: tuple[str, ...] = ()
    scanners: tuple[str, ...] = ()
    locations: tuple[tuple[str | None, str | None], ...] = ()  # (path, layer)

    @property
    def ids(self) -> frozenset[str]:
        return frozenset((self.id, *self.aliases))

    @property
    def fixable(self) -> bool:
        return self.fix_state == "fixed"

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.package_type, package_key(self.package_type, self.package), self.installed_version)

    def to_json(self) -> dict[str, Any]:
        package: dict[str, Any] = {"name": self.package, "type": self.package_type, "purl": self.purl}
        if self.source_package:
            package["source_name"] = self.source_package
        return {
            "id": self.id,
            "aliases": sorted(self.aliases),
            "package": package,
            "installed_version": self.installed_version,
            "fixed_versions": list(self.fixed_versions),
            "severity": self.severity,
            "fix_state": self.fix_state,
            "cvss_score": self.cvss_score,
            "title": self.title,
            "urls": list(self.urls),
            "scanners": list(self.scanners),
            "locations": [
                {k: v for k, v in (("path", path), ("layer", layer)) if v} for path, layer in self.locations
            ],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Finding:
        package = data["package"]
        return cls(
            id=data["id"],
            package=package["name"],
            package_type=package["type"],
            installed_version=data["installed_version"],
            purl=package.get("purl"),
            source_package=package.get("source_name"),
            aliases=tuple(data["aliases"]),
            fixed_versions=tuple(data["fixed_versions"]),
            severity=data["severity"],
            fix_state=data["fix_state"],
            cvss_score=data.get("cvss_score"),
            title=data.get("title", ""),
            urls=tuple(data.get("urls", ())),
            scanners=tuple(data["scanners"]),
            locations=tuple((loc.get("path"), loc.get("layer")) for loc in data["locations"]),
        )


def _union(*groups: Iterable[Any]) -> tuple[Any, ...]:
    return tuple(dict.fromkeys(item for group in groups for item in group))


def _combine(a: Finding, b: Finding) -> Finding:
    """One finding from two reports of it: the first one's id, everything either knows."""
    known = [s for s in (a.severity, b.severity) if s != "UNKNOWN"]
    states = {a.fix_state, b.fix_state}
    fix_state = next((s for s in FIX_STATES if s in states and s != "unknown"), "unknown")
    return replace(
        a,
        aliases=tuple(sorted((a.ids | b.ids) - {a.id})),
        purl=a.purl or b.purl,
        source_package=a.source_package or b.source_package,
        fixed_versions=_union(a.fixed_versions, b.fixed_versions),
        severity=min(known, key=rank) if known else "UNKNOWN",
        fix_state=fix_state,
        cvss_score=max((s for s in (a.cvss_score, b.cvss_score) if s is not None), default=None),
        title=a.title or b.title,
        urls=_union(a.urls, b.urls),
        scanners=_union(a.scanners, b.scanners),
        locations=_union(a.locations, b.locations),
    )


def merge(*lists: Iterable[Finding]) -> list[Finding]:
    """Fold findings from one or more scanners; sorted most severe first, then package, then id."""
    by_package: dict[tuple[str, str, str], list[Finding]] = {}
    for findings in lists:
        for finding in findings:
            group = by_package.setdefault(finding.key, [])
            for index, seen in enumerate(group):
                if seen.ids & finding.ids:
                    group[index] = _combine(seen, finding)
                    break
            else:
                group.append(finding)
    merged = [f for group in by_package.values() for f in group]
    return sorted(merged, key=lambda f: (rank(f.severity), f.package_type, f.key[1], f.id))


@dataclass(frozen=True)
class Scanner:
    name: str
    version: str | None
    source: str | None = None
    database: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "version": self.version}
        if self.source:
            out["source"] = self.source
        if self.database:
            out["database"] = dict(self.database)
        return out


@dataclass(frozen=True)
class ScanReport:
    """A findings file: what was scanned, by which scanners, and what they found."""

    target: str
    scanners: tuple[Scanner, ...]
    findings: tuple[Finding, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "target": self.target,
            "scanners": [s.to_json() for s in self.scanners],
            "findings": [f.to_json() for f in self.findings],
        }

    def write(self, path: Path) -> None:
        atomic_write_json(path, self.to_json())

    def counts(self) -> dict[str, int]:
        """Findings by severity, every level present (zeros included)."""
        out = dict.fromkeys(SEVERITIES, 0)
        for finding in self.findings:
            out[finding.severity] += 1
        return out


def combine(target: str, reports: Sequence[ScanReport]) -> ScanReport:
    """Several scanners' reports on one target as one report."""
    return ScanReport(
        target,
        tuple(s for r in reports for s in r.scanners),
        tuple(merge(*(r.findings for r in reports))),
    )


def load(path: Path) -> ScanReport:
    """A findings file, whole and valid against its schema, or :class:`ReportError`.

    The envelope is checked with jsonschema; the findings themselves by :func:`check_finding`,
    which holds each finding to the schema's ``$defs/finding`` about twenty times faster than
    jsonschema does (10,000 findings: 0.9 s with jsonschema). A test keeps the two in agreement.
    """
    import jsonschema

    from tfgov_ci import _resources

    data = read_json(path)
    schema = dict(_resources.schema("findings"))
    schema["properties"] = {**schema["properties"], "findings": {"type": "array"}}
    errors = sorted(
        jsonschema.Draft202012Validator(schema).iter_errors(data), key=lambda e: list(e.absolute_path)
    )
    problem = None
    if errors:
        where = "/".join(str(p) for p in errors[0].absolute_path) or "(top)"
        problem = f"{where}: {errors[0].message}"
    else:
        problem = next(
            (
                f"findings/{i}/{found}"
                for i, row in enumerate(data["findings"])
                if (found := check_finding(row))
            ),
            None,
        )
    if problem:
        raise ReportError(
            f"{path}: not a tfgov-ci findings file: {problem}",
            "findings files are written by `tfgov-ci run scan` or `tfgov-ci scan import`",
        )
    return ScanReport(
        data["target"],
        tuple(
            Scanner(s["name"], s["version"], s.get("source"), s.get("database", {})) for s in data["scanners"]
        ),
        tuple(Finding.from_json(f) for f in data["findings"]),
    )


_REQUIRED = (
    *("id", "aliases", "package", "installed_version", "fixed_versions"),
    *("severity", "fix_state", "scanners", "locations"),
)
_KNOWN = {*_REQUIRED, "cvss_score", "title", "urls"}
_PACKAGE_KEYS = {"name", "type", "purl", "source_name"}
_ONE_OF_SEVERITIES = f"one of {', '.join(SEVERITIES)}"
_ONE_OF_FIX_STATES = f"one of {', '.join(FIX_STATES)}"


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def check_finding(row: Any) -> str | None:
    """What is wrong with one finding (``key: message``) by schemas/findings.schema.json, or None."""
    if not isinstance(row, dict):
        return "not an object"
    for key in _REQUIRED:
        if key not in row:
            return f"{key!r} is a required property"
    if not _KNOWN.issuperset(row):
        return f"{sorted(set(row) - _KNOWN)[0]!r} is not a known property"
    package = row["package"]
    checks = (
        ("id", isinstance(row["id"], str) and row["id"] != "", "a non-empty string"),
        (
            "aliases",
            _strings(row["aliases"]) and len(set(row["aliases"])) == len(row["aliases"]),
            "unique strings",
        ),
        ("package", isinstance(package, dict), "an object"),
        ("installed_version", isinstance(row["installed_version"], str), "a string"),
        ("fixed_versions", _strings(row["fixed_versions"]), "a list of strings"),
        ("severity", row["severity"] in SEVERITIES, _ONE_OF_SEVERITIES),
        ("fix_state", row["fix_state"] in FIX_STATES, _ONE_OF_FIX_STATES),
        ("scanners", _strings(row["scanners"]) and len(row["scanners"]) > 0, "a non-empty list of strings"),
        ("locations", isinstance(row["locations"], list), "a list"),
        ("title", isinstance(row.get("title", ""), str), "a string"),
        ("urls", _strings(row.get("urls", [])), "a list of strings"),
    )
    for key, ok, wanted in checks:
        if not ok:
            return f"{key}: must be {wanted}"
    score = row.get("cvss_score")
    if score is not None and (
        not isinstance(score, int | float) or isinstance(score, bool) or not 0 <= score <= 10
    ):
        return "cvss_score: must be null or a number from 0 to 10"
    if not _PACKAGE_KEYS.issuperset(package) or not all(k in package for k in ("name", "type", "purl")):
        return "package: must have name, type and purl, and nothing else but source_name"
    if not (isinstance(package["name"], str) and package["name"] and isinstance(package["type"], str)):
        return "package: name must be a non-empty string, type a string"
    if not (package["purl"] is None or isinstance(package["purl"], str)):
        return "package.purl: must be a string or null"
    if not isinstance(package.get("source_name", ""), str):
        return "package.source_name: must be a string"
    for location in row["locations"]:
        if not isinstance(location, dict) or set(location) - {"path", "layer"}:
            return "locations: each is an object with path and layer only"
        if not all(isinstance(v, str) for v in location.values()):
            return "locations: path and layer are strings"
    return None


def read_json(path: Path) -> Any:
    """A JSON document, or :class:`ReportError` naming the file and where it broke."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ReportError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ReportError(f"{path}: cannot read it ({exc})") from None
    return parse_json(text, path)


def parse_json(text: str, source: Path | str) -> Any:
    """:func:`read_json` of text already read from ``source``."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ReportError(
            f"{source}:{exc.lineno}:{exc.colno}: not valid JSON ({exc.msg})",
            "a truncated or hand-edited report? produce it again with the scanner's JSON output",
        ) from None
