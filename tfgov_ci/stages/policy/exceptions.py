"""Governed exceptions (tfgov-exceptions.yaml): accepted findings, each owned, approved and expiring.

An exception hides a finding from the gate only while it holds. Applying a file to the findings
of one image sorts every entry into what the policy and the reports need:

- ``used``: it matched findings, which are set aside as excepted;
- ``expired``: its date has passed; it excepts nothing and fails the gate, naming entry and owner;
- ``stale``: it matches no finding of this image (the package was upgraded or removed);
- ``outdated``: it matches a finding that now has a fix: upgrade instead of excepting.

``export`` writes the same decisions as OpenVEX or as trivy's ``.trivyignore.yaml``.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tfgov_ci import findings
from tfgov_ci._files import YamlDoc, load_yaml, schema_problems
from tfgov_ci.errors import ConfigError, Problem
from tfgov_ci.findings import Finding

DEFAULT_FILE = "tfgov-exceptions.yaml"
DEFAULT_MAX_DAYS = 90


@dataclass(frozen=True)
class Exception_:
    """One entry of the file (named with a trailing underscore: ``Exception`` is Python's)."""

    index: int
    id: str
    package: str
    scope: str
    reason: str
    owner: str
    approved_by: str
    expires: dt.date
    justification: str | None
    file: str
    line: int | None

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}" if self.line else self.file

    def expired(self, today: dt.date) -> bool:
        return today > self.expires

    def in_scope(self, image_names: Iterable[str]) -> bool:
        return any(fnmatch.fnmatchcase(name, self.scope) for name in image_names)

    def matches(self, finding: Finding) -> bool:
        if self.id not in finding.ids:
            return False
        if self.package.startswith("pkg:"):
            return bool(finding.purl) and fnmatch.fnmatchcase(str(finding.purl), self.package)
        name = findings.package_key(finding.package_type, finding.package)
        return fnmatch.fnmatchcase(name, findings.package_key(finding.package_type, self.package))

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "package": self.package,
            "scope": self.scope,
            "reason": self.reason,
            "owner": self.owner,
            "approved_by": self.approved_by,
            "expires": self.expires.isoformat(),
            "where": self.where,
        }


def today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


def _dates_as_text(value: Any) -> Any:
    """YAML reads 2026-12-01 as a date; the schema (and JSON) want the text."""
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _dates_as_text(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_dates_as_text(v) for v in value]
    return value


def load(path: Path, *, max_days: int = DEFAULT_MAX_DAYS, on: dt.date | None = None) -> list[Exception_]:
    """Every entry of an exceptions file, or :class:`ConfigError` with each problem's line.

    An entry expiring more than ``max_days`` after ``on`` (today) is refused: the platform team's
    limit on how long a risk may be accepted. An entry already expired is *not* an error here: it
    loads, and fails the gate of the images it applies to.
    """
    on = on or today()
    raw = load_yaml(path)
    doc = YamlDoc(raw.file, _dates_as_text(raw.data), raw.lines)
    problems = schema_problems(doc, "exceptions")
    if problems:
        raise ConfigError(problems)
    out = []
    limit = on + dt.timedelta(days=max_days)
    for index, entry in enumerate(doc.data["exceptions"]):
        line = doc.line_of(("exceptions", index))
        try:
            expires = dt.date.fromisoformat(entry["expires"])
        except ValueError:
            problems.append(
                Problem(
                    doc.file,
                    f"exceptions[{index}].expires",
                    f"{entry['expires']!r} is not a date",
                    None,
                    line,
                )
            )
            continue
        if expires > limit:
            problems.append(
                Problem(
                    doc.file,
                    f"exceptions[{index}].expires",
                    f"{entry['id']} expires {expires}, more than {max_days} days from {on}",
                    f"the longest an exception may run is {max_days} days: expire it by {limit}",
                    doc.line_of(("exceptions", index, "expires")),
                )
            )
            continue
        out.append(
            Exception_(
                index=index,
                id=entry["id"],
                package=entry["package"],
                scope=entry.get("scope", "*"),
                reason=entry["reason"],
                owner=entry["owner"],
                approved_by=entry["approved_by"],
                expires=expires,
                justification=entry.get("justification"),
                file=doc.file,
                line=line,
            )
        )
    if problems:
        raise ConfigError(problems)
    return out


@dataclass(frozen=True)
class Applied:
    """Findings of one image after the exceptions: what still counts, and what each entry did."""

    findings: tuple[Finding, ...]  # not excepted: what the gate sees
    excepted: tuple[tuple[Finding, Exception_], ...]
    used: tuple[Exception_, ...] = ()
    expired: tuple[Exception_, ...] = ()
    stale: tuple[Exception_, ...] = ()
    outdated: tuple[tuple[Exception_, Finding], ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "used": [e.to_json() for e in self.used],
            "expired": [e.to_json() for e in self.expired],
            "stale": [e.to_json() for e in self.stale],
            "outdated": [
                {**e.to_json(), "finding": f.id, "fixed_versions": list(f.fixed_versions)}
                for e, f in self.outdated
            ],
        }


def apply(
    entries: Sequence[Exception_], found: Sequence[Finding], image_names: Iterable[str], on: dt.date
) -> Applied:
    names = list(image_names)
    in_scope = [e for e in entries if e.in_scope(names)]
    active = [e for e in in_scope if not e.expired(on)]
    by_id: dict[str, list[Exception_]] = {}
    for entry in active:
        by_id.setdefault(entry.id, []).append(entry)
    kept: list[Finding] = []
    excepted: list[tuple[Finding, Exception_]] = []
    matched: dict[int, list[Finding]] = {}
    for finding in found:
        candidates = sorted({e.index: e for i in finding.ids for e in by_id.get(i, ())}.items())
        first = next((e for _, e in candidates if e.matches(finding)), None)  # the file's order decides
        if first is None:
            kept.append(finding)
            continue
        excepted.append((finding, first))
        matched.setdefault(first.index, []).append(finding)
    return Applied(
        findings=tuple(kept),
        excepted=tuple(excepted),
        used=tuple(e for e in active if e.index in matched),
        expired=tuple(e for e in in_scope if e.expired(on)),
        stale=tuple(e for e in active if e.index not in matched),
        outdated=tuple((e, f) for e in active for f in matched.get(e.index, []) if f.fixable),
    )


# --- the same decisions for other tools ------------------------------------------------------


def to_openvex(entries: Sequence[Exception_], *, author: str, timestamp: str, doc_id: str) -> dict[str, Any]:
    """OpenVEX v0.2.0. Only an entry with a ``justification`` says ``not_affected``; an accepted
    risk without one is ``affected``, its reason, owner and expiry as the action statement."""
    statements = []
    for entry in entries:
        statement: dict[str, Any] = {
            "vulnerability": {"name": entry.id},
            "products": [{"@id": entry.scope, "subcomponents": [{"@id": entry.package}]}],
        }
        if entry.justification:
            statement |= {
                "status": "not_affected",
                "justification": entry.justification,
                "impact_statement": entry.reason,
            }
        else:
            statement |= {
                "status": "affected",
                "action_statement": (
                    f"risk accepted until {entry.expires} by {entry.approved_by} "
                    f"(owner {entry.owner}): {entry.reason}"
                ),
            }
        statements.append(statement)
    return {
        "@context": "https://openvex.dev/ns/v0.2.0",
        "@id": doc_id,
        "author": author,
        "timestamp": timestamp,
        "version": 1,
        "statements": statements,
    }


def to_trivyignore(entries: Sequence[Exception_]) -> str:
    """trivy's ``.trivyignore.yaml``: id, expiry, statement; purls when the entry names one exactly."""
    rows = []
    for entry in entries:
        row: dict[str, Any] = {"id": entry.id}
        if entry.package.startswith("pkg:") and not any(c in entry.package for c in "*?["):
            row["purls"] = [entry.package]
        row["expired_at"] = entry.expires.isoformat()
        row["statement"] = f"{entry.reason} (owner {entry.owner}, approved by {entry.approved_by})"
        rows.append(row)
    header = (
        "# Written by `tfgov-ci exceptions export --format trivyignore` from the governed exceptions.\n"
        "# Entries that name a package by name (not an exact purl) apply to the id in every package here.\n"
    )
    return header + yaml.safe_dump({"vulnerabilities": rows}, sort_keys=False, allow_unicode=True)


def openvex_json(entries: Sequence[Exception_], author: str, timestamp: str, doc_id: str) -> str:
    return json.dumps(to_openvex(entries, author=author, timestamp=timestamp, doc_id=doc_id), indent=2) + "\n"


def count(applied: Applied) -> Mapping[str, int]:
    return {
        "used": len(applied.used),
        "expired": len(applied.expired),
        "stale": len(applied.stale),
        "outdated": len(applied.outdated),
        "excepted_findings": len(applied.excepted),
    }
