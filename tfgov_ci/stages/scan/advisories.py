"""An offline vulnerability matcher: SBOM packages against a folder of OSV advisories.

The folder is any OSV export: the PyPA advisory database (``vulns/<package>/PYSEC-*.yaml``), an
osv.dev ecosystem zip unpacked (``*.json``), or a site's own mirror. Two ecosystems are matched,
the two in our images: PyPI (PEP 440 versions, :mod:`packaging`) and Debian (dpkg versions,
:mod:`debian.debian_support`; an advisory names the *source* package, which syft records as the
purl's ``upstream`` qualifier).

A package is affected when its version is inside an ``ECOSYSTEM`` range (``introduced`` up to
``fixed``, exclusive, or ``last_affected``, inclusive) or listed in the advisory's ``versions``.
An advisory whose range does not parse is skipped with a warning naming its file: a bad entry
must not hide the good ones.

Parsing thousands of YAML files takes seconds, so the parsed folder is cached (keyed by every
file's name, size and mtime); matching itself is a dictionary lookup per package.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote

import yaml

from tfgov_ci import findings
from tfgov_ci._files import atomic_write_json
from tfgov_ci.errors import UsageError
from tfgov_ci.findings import Finding

INDEX_VERSION = 1


class AdvisoryError(UsageError):
    """The advisory folder cannot be used at all (exit 2)."""


# --- versions -----------------------------------------------------------------------------------


# Parsed once per distinct version string: a fleet's rescan or a big SBOM compares the same
# range bounds and installed versions thousands of times, and parsing is most of the matcher's
# time. The parsed versions are only ever compared, never changed.
@functools.lru_cache(maxsize=1 << 16)
def _pypi_key(version: str) -> Any:
    from packaging.version import Version

    return Version(version)


@functools.lru_cache(maxsize=1 << 16)
def _debian_key(version: str) -> Any:
    from debian.debian_support import Version

    return Version(version)


def _comparator(ecosystem: str) -> Callable[[str], Any] | None:
    if ecosystem == "PyPI":
        return _pypi_key
    if ecosystem.split(":", 1)[0] == "Debian":
        return _debian_key
    return None


def version_key(package_type: str) -> Callable[[str], Any] | None:
    """How a package type's versions order (PEP 440 for ``pypi``, dpkg for ``deb``), or None: the
    same ordering advisories are matched with, for the inventory's ``which``."""
    return _comparator({"pypi": "PyPI", "deb": "Debian"}.get(package_type, ""))


_TIE_ORDER = {"fixed": 0, "limit": 0, "introduced": 1, "last_affected": 2}


@dataclass(frozen=True)
class Range:
    events: tuple[tuple[str, str], ...]  # (kind, version): introduced, fixed, last_affected, limit

    def affects(self, installed: Any, key: Callable[[str], Any]) -> bool:
        """OSV's evaluation: walk the events in version order; "0" is before everything. At one
        version a ``fixed`` closes an interval before an ``introduced`` opens the next
        ([0.12.2, 0.13.0) then [0.13.0, 0.14.0rc1) leaves 0.13.0 affected), and ``last_affected``
        comes last (it includes its version)."""
        affected = False
        for kind, version in sorted(
            self.events,
            key=lambda e: (e[1] != "0", key(e[1]) if e[1] != "0" else 0, _TIE_ORDER.get(e[0], 0)),
        ):
            point = None if version == "0" else key(version)
            if kind == "introduced" and (point is None or installed >= point):
                affected = True
            elif (kind == "fixed" and installed >= point) or (kind == "last_affected" and installed > point):
                affected = False
            elif kind == "limit" and installed >= point:
                return affected
        return affected

    def check(self, key: Callable[[str], Any]) -> None:
        """Raise ValueError when an event's version does not parse in the ecosystem."""
        for _, version in self.events:
            if version != "0":
                key(version)


@dataclass(frozen=True)
class Advisory:
    id: str
    aliases: tuple[str, ...]
    ecosystem: str
    package: str  # as the ecosystem compares names
    ranges: tuple[Range, ...]
    versions: frozenset[str]
    severity: str
    cvss_score: float | None
    summary: str
    file: str

    def affects(self, version: str) -> bool:
        if version in self.versions:
            return True
        key = _comparator(self.ecosystem)
        if key is None or not self.ranges:
            return False
        try:
            installed = key(version)
        except ValueError:
            return False  # a version the ecosystem cannot order: only the explicit list can say
        return any(r.affects(installed, key) for r in self.ranges)

    def fixed_versions(self) -> tuple[str, ...]:
        return tuple(v for r in self.ranges for kind, v in r.events if kind == "fixed")


# --- CVSS v3 base score (FIRST's specification, section 7.1) -----------------------------------

_CVSS3 = {
    "AV": {"N": 0.85, "A": 0.62, "L": 0.55, "P": 0.2},
    "AC": {"L": 0.77, "H": 0.44},
    "UI": {"N": 0.85, "R": 0.62},
    "C": {"H": 0.56, "L": 0.22, "N": 0.0},
}
_PR = {"U": {"N": 0.85, "L": 0.62, "H": 0.27}, "C": {"N": 0.85, "L": 0.68, "H": 0.5}}


def _roundup(value: float) -> float:
    scaled = round(value * 100000)
    return scaled / 100000.0 if scaled % 10000 == 0 else (scaled // 10000 + 1) / 10.0


def cvss3_base_score(vector: str) -> float | None:
    """The base score of a ``CVSS:3.x/AV:../...`` vector, or None when it is not one."""
    parts = dict(p.split(":", 1) for p in vector.split("/")[1:] if ":" in p)
    if not vector.startswith("CVSS:3") or not {"AV", "AC", "PR", "UI", "S", "C", "I", "A"} <= parts.keys():
        return None
    try:
        scope = parts["S"]
        iss = 1 - (
            (1 - _CVSS3["C"][parts["C"]]) * (1 - _CVSS3["C"][parts["I"]]) * (1 - _CVSS3["C"][parts["A"]])
        )
        impact = 6.42 * iss if scope == "U" else 7.52 * (iss - 0.029) - 3.25 * (iss - 0.02) ** 15
        exploitability = (
            8.22
            * _CVSS3["AV"][parts["AV"]]
            * _CVSS3["AC"][parts["AC"]]
            * _PR[scope][parts["PR"]]
            * _CVSS3["UI"][parts["UI"]]
        )
    except KeyError:
        return None
    if impact <= 0:
        return 0.0
    if scope == "U":
        return _roundup(min(impact + exploitability, 10))
    return _roundup(min(1.08 * (impact + exploitability), 10))


# --- reading a folder of advisories -------------------------------------------------------------


def _severity(doc: Mapping[str, Any]) -> tuple[str, float | None]:
    scores = [
        s
        for entry in doc.get("severity") or []
        if str(entry.get("type", "")).startswith("CVSS_V3")
        and (s := cvss3_base_score(str(entry.get("score", "")))) is not None
    ]
    if scores:
        return findings.severity_of_score(max(scores)), max(scores)
    word = (doc.get("database_specific") or {}).get("severity")
    return findings.severity(word if isinstance(word, str) else None), None


def parse_advisory(doc: Mapping[str, Any], file: str) -> list[Advisory]:
    """The PyPI and Debian entries of one OSV document; ValueError when a range is unusable."""
    if not isinstance(doc, Mapping) or not isinstance(doc.get("id"), str):
        raise ValueError("not an OSV advisory (no id)")
    if doc.get("withdrawn"):
        return []  # withdrawn by its publisher: it affects nothing
    level, score = _severity(doc)
    out = []
    for affected in doc.get("affected") or []:
        package = affected.get("package") or {}
        ecosystem, name = str(package.get("ecosystem", "")), package.get("name")
        key = _comparator(ecosystem)
        if key is None or not isinstance(name, str):
            continue
        ranges = []
        for entry in affected.get("ranges") or []:
            if entry.get("type") not in ("ECOSYSTEM", "SEMVER"):
                continue  # GIT ranges name commits, not releases
            events = tuple(
                (kind, str(version)) for event in entry.get("events") or [] for kind, version in event.items()
            )
            if not any(kind == "introduced" for kind, _ in events):
                raise ValueError(f"{name}: a range without an 'introduced' event")
            candidate = Range(events)
            try:
                candidate.check(key)
            except ValueError as exc:
                raise ValueError(f"{name}: a range with a version {ecosystem} cannot order ({exc})") from None
            ranges.append(candidate)
        type_ = "pypi" if ecosystem == "PyPI" else "deb"
        out.append(
            Advisory(
                id=doc["id"],
                aliases=tuple(str(a) for a in doc.get("aliases") or ()),
                ecosystem=ecosystem,
                package=findings.package_key(type_, name),
                ranges=tuple(ranges),
                versions=frozenset(str(v) for v in affected.get("versions") or ()),
                severity=level,
                cvss_score=score,
                summary=str(doc.get("summary") or doc.get("details") or "")[:200],
                file=file,
            )
        )
    return out


def _advisory_files(folder: Path) -> list[Path]:
    suffixes = {".json", ".yaml", ".yml"}
    return sorted(
        Path(root) / name
        for root, _, names in os.walk(folder)
        for name in names
        if Path(name).suffix in suffixes
    )


def _fingerprint(folder: Path, files: list[Path]) -> str:
    digest = hashlib.sha256(f"{INDEX_VERSION}\0{folder.resolve()}".encode())
    for path in files:
        stat = path.stat()
        digest.update(f"{path.relative_to(folder)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _load_document(path: Path) -> Any:
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        return json.loads(text)
    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


@dataclass(frozen=True)
class Database:
    """Advisories by (ecosystem family, package key); the warnings of skipped files."""

    folder: Path
    files: int
    by_package: Mapping[tuple[str, str], tuple[Advisory, ...]]
    warnings: tuple[str, ...]

    @classmethod
    def open(cls, folder: Path, cache: Path | None = None) -> Database:
        if not folder.is_dir():
            raise AdvisoryError(
                f"{folder}: no such advisory folder",
                "set stages.scan.options.advisories to a folder of OSV advisories "
                "(e.g. the PyPA advisory database's vulns/)",
            )
        files = _advisory_files(folder)
        if not files:
            raise AdvisoryError(f"{folder}: no OSV advisories (*.json, *.yaml) in it")
        index_file = cache / "osv" / f"{_fingerprint(folder, files)}.json" if cache else None
        if index_file is not None and index_file.is_file():
            try:
                return cls._from_index(folder, json.loads(index_file.read_text(encoding="utf-8")))
            except (ValueError, KeyError, TypeError):
                index_file.unlink(missing_ok=True)  # a damaged cache entry is rebuilt, not trusted
        advisories: list[Advisory] = []
        warnings: list[str] = []
        for path in files:
            shown = str(path.relative_to(folder))
            try:
                advisories += parse_advisory(_load_document(path), shown)
            except (ValueError, yaml.YAMLError, UnicodeDecodeError) as exc:
                reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                warnings.append(f"{folder / shown}: skipped: {reason}")
        db = cls._build(folder, len(files), advisories, warnings)
        if index_file is not None:
            atomic_write_json(index_file, db._to_index())
        return db

    @classmethod
    def _build(
        cls, folder: Path, files: int, advisories: Iterable[Advisory], warnings: list[str]
    ) -> Database:
        table: dict[tuple[str, str], list[Advisory]] = {}
        for advisory in advisories:
            table.setdefault((advisory.ecosystem.split(":", 1)[0], advisory.package), []).append(advisory)
        return cls(folder, files, {k: tuple(v) for k, v in table.items()}, tuple(warnings))

    def _to_index(self) -> dict[str, Any]:
        return {
            "version": INDEX_VERSION,
            "files": self.files,
            "warnings": list(self.warnings),
            "advisories": [
                [
                    a.id,
                    list(a.aliases),
                    a.ecosystem,
                    a.package,
                    [list(map(list, r.events)) for r in a.ranges],
                    sorted(a.versions),
                    a.severity,
                    a.cvss_score,
                    a.summary,
                    a.file,
                ]
                for group in self.by_package.values()
                for a in group
            ],
        }

    @classmethod
    def _from_index(cls, folder: Path, index: Mapping[str, Any]) -> Database:
        if index["version"] != INDEX_VERSION:
            raise ValueError("index version")
        advisories = [
            Advisory(
                row[0],
                tuple(row[1]),
                row[2],
                row[3],
                tuple(Range(tuple((k, v) for k, v in events)) for events in row[4]),
                frozenset(row[5]),
                row[6],
                row[7],
                row[8],
                row[9],
            )
            for row in index["advisories"]
        ]
        return cls._build(folder, index["files"], advisories, list(index["warnings"]))

    def match(self, packages: Iterable[Package]) -> list[Finding]:
        out = []
        for package in packages:
            family = "PyPI" if package.type == "pypi" else "Debian"
            for advisory in self.by_package.get((family, package.advisory_name), ()):
                if advisory.affects(package.version):
                    out.append(_finding(advisory, package))
        return findings.merge(out)


@dataclass(frozen=True)
class Package:
    """A package of an SBOM that advisories can name."""

    name: str
    version: str
    type: str  # pypi or deb
    purl: str
    source_name: str | None = None
    path: str | None = None  # where the SBOM found it

    @property
    def advisory_name(self) -> str:
        """The name advisories use: PEP 503 for Python; the source package for Debian."""
        return findings.package_key(self.type, self.source_name or self.name)


_PURL = re.compile(r"^pkg:(?P<type>[a-z]+)/(?:(?P<namespace>[^/@?]+)/)?(?P<name>[^/@?]+)@(?P<version>[^?#]+)")


def source_name(purl: str) -> str | None:
    """A Debian purl's source package, from its ``upstream`` qualifier without a version: syft
    writes ``upstream=bzip2%401.0.8-5`` (a source whose version differs from the binary's),
    ``upstream=glibc``, or ``upstream=glibc 2.36``."""
    if "upstream=" not in purl:
        return None  # most packages: no qualifier to parse (and parsing is what costs)
    upstream = parse_qs(purl.partition("?")[2]).get("upstream", [""])[0]
    return upstream.split("@", 1)[0].split(" ", 1)[0] or None


def sbom_packages(cyclonedx: Mapping[str, Any]) -> list[Package]:
    """The PyPI and Debian packages of a CycloneDX SBOM (syft's), with Debian source names."""
    out = []
    for component in cyclonedx.get("components") or []:
        purl = str(component.get("purl") or "")
        m = _PURL.match(purl)
        if not m or m["type"] not in ("pypi", "deb"):
            continue
        source = source_name(purl)
        paths = [
            str(p["value"])
            for p in component.get("properties") or []
            if p.get("name") == "syft:location:0:path" and p.get("value")
        ]
        out.append(
            Package(
                name=str(component.get("name") or unquote(m["name"])),
                version=str(component.get("version") or unquote(m["version"])),
                type=m["type"],
                purl=purl,
                source_name=source,
                path=paths[0] if paths else None,
            )
        )
    return out


def _finding(advisory: Advisory, package: Package) -> Finding:
    fixed = advisory.fixed_versions()
    key = _comparator(advisory.ecosystem)
    later = []
    for version in fixed:
        try:
            if key is not None and key(version) > key(package.version):
                later.append(version)
        except ValueError:
            continue
    return Finding(
        id=advisory.id,
        package=package.name,
        package_type=package.type,
        installed_version=package.version,
        purl=package.purl,
        source_package=package.source_name,
        aliases=advisory.aliases,
        fixed_versions=tuple(later),
        severity=advisory.severity,
        fix_state="fixed" if later else "not-fixed",
        cvss_score=advisory.cvss_score,
        title=advisory.summary,
        urls=(f"https://osv.dev/vulnerability/{advisory.id}",),
        scanners=("osv",),
        locations=((package.path, None),) if package.path else (),
    )
