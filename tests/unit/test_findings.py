"""Scanner reports into normalised findings: the real trivy and grype reports, merging, bad input."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import jsonschema
import pytest

from tests.helpers import FIXTURES, ROOT, CliResult
from tfgov_ci import findings
from tfgov_ci.findings import Finding, ReportError
from tfgov_ci.stages.scan.interface import import_report

REPORTS = FIXTURES / "scanner-reports"
SCHEMA = json.loads((ROOT / "schemas/findings.schema.json").read_text())


def raw_matches(path: Path) -> set[tuple[str, str, str]]:
    """(id, package, version) of every finding the raw report holds: the independent answer."""
    doc = json.loads(path.read_text())
    if "SchemaVersion" in doc:
        return {
            (v["VulnerabilityID"], v["PkgName"], v["InstalledVersion"])
            for r in doc["Results"]
            for v in r.get("Vulnerabilities") or []
        }
    return {
        (m["vulnerability"]["id"], m["artifact"]["name"], m["artifact"]["version"]) for m in doc["matches"]
    }


@pytest.mark.parametrize("name", sorted(p.name for p in REPORTS.glob("*.json")))
def test_an_imported_report_loses_no_finding_and_matches_the_schema(name: str, tmp_path: Path) -> None:
    report = import_report(REPORTS / name)
    out = tmp_path / "findings.json"
    report.write(out)
    jsonschema.validate(json.loads(out.read_text()), SCHEMA)
    assert {(f.id, f.package, f.installed_version) for f in report.findings} == raw_matches(REPORTS / name)
    assert findings.load(out) == report


def test_trivy_fields_are_normalised() -> None:
    report = import_report(REPORTS / "trivy-debian-buster.image.json")
    by_id = {f.id: f for f in report.findings}
    libidn = by_id["CVE-2019-18224"]
    assert (libidn.package_type, libidn.severity, libidn.fix_state) == ("deb", "CRITICAL", "fixed")
    assert libidn.fixed_versions == ("2.0.5-1+deb10u1",) and libidn.aliases == ("DSA-4613-1",)
    assert libidn.locations[0][1] == "sha256:4a56a430b2bac33260d6449e162017e2b23076c6411a17b46db67f5b84dde2bd"
    bash = by_id["CVE-2019-18276"]
    assert (bash.severity, bash.fix_state, bash.fixed_versions) == ("LOW", "not-fixed", ())
    assert report.findings[0].id == "CVE-2019-18224"  # most severe first
    assert import_report(REPORTS / "trivy-pip.repo.json").findings[0].package_type == "pypi"


def test_grype_fields_are_normalised_and_its_duplicate_match_folds_into_one() -> None:
    path = REPORTS / "grype-0.28-debian10-deb+python.json"
    assert len(json.loads(path.read_text())["matches"]) == 6
    report = import_report(path)
    assert len(report.findings) == 5  # Django's advisory is matched twice in the report
    django = next(f for f in report.findings if f.package == "Django")
    assert (django.id, django.aliases, django.severity) == (
        "GHSA-v6rh-hp5x-86rv",
        ("CVE-2021-44420",),
        "HIGH",
    )
    assert (django.package_type, django.fix_state, django.fixed_versions) == ("pypi", "fixed", ("3.2.10",))
    krb5 = next(f for f in report.findings if f.package == "libgssapi-krb5-2")
    assert krb5.severity == "LOW"  # grype's "Negligible"
    assert report.scanners[0].version == "0.28.0" and report.scanners[0].database["schemaVersion"] == 3
    assert report.target == "vulnerable-image:latest"


def test_two_scanners_one_finding_when_an_id_is_the_others_alias() -> None:
    trivy = Finding(
        "CVE-2099-1",
        "PyYAML",
        "pypi",
        "6.0.2",
        severity="HIGH",
        fix_state="fixed",
        fixed_versions=("6.0.3",),
        scanners=("trivy",),
    )
    osv = Finding("PYSEC-2099-7", "pyyaml", "pypi", "6.0.2", aliases=("CVE-2099-1",), scanners=("osv",))
    other = Finding("PYSEC-2099-8", "pyyaml", "pypi", "6.0.2", scanners=("osv",))
    merged = findings.merge([trivy], [osv, other])
    assert len(merged) == 2
    one = next(f for f in merged if f.id == "CVE-2099-1")
    assert one.aliases == ("PYSEC-2099-7",) and one.scanners == ("trivy", "osv")
    assert (one.severity, one.fix_state) == ("HIGH", "fixed")


def test_severity_words_and_scores() -> None:
    assert [findings.severity(w) for w in ("Critical", "moderate", "Negligible", "", None, "weird")] == [
        "CRITICAL",
        "MEDIUM",
        "LOW",
        "UNKNOWN",
        "UNKNOWN",
        "UNKNOWN",
    ]
    assert [findings.severity_of_score(s) for s in (9.8, 7.0, 4.0, 0.1, None)] == [
        "CRITICAL",
        "HIGH",
        "MEDIUM",
        "LOW",
        "UNKNOWN",
    ]


def test_a_truncated_report_names_the_file_and_line_and_writes_nothing(
    tmp_path: Path, cli: Callable[..., CliResult]
) -> None:
    text = (REPORTS / "trivy-pip.repo.json").read_text()
    truncated = tmp_path / "trivy.json"
    truncated.write_text(text[: len(text) // 2])
    out = tmp_path / "findings.json"
    result = cli("scan", "import", str(truncated), "--out", str(out), cwd=tmp_path)
    assert result.code == 2
    assert f"{truncated}:" in result.err and "not valid JSON" in result.err
    assert "Traceback" not in result.err
    assert not out.exists()


def test_an_unknown_schema_version_or_a_wrong_shape_is_refused(tmp_path: Path) -> None:
    future = tmp_path / "future.json"
    future.write_text(json.dumps({"SchemaVersion": 3, "Results": []}))
    with pytest.raises(ReportError, match="SchemaVersion 3 is not one tfgov-ci reads"):
        import_report(future)
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({"SchemaVersion": 2, "Results": [{"Vulnerabilities": [{"PkgName": "x"}]}]}))
    with pytest.raises(ReportError, match="missing 'VulnerabilityID'"):
        import_report(broken)
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"hello": "world"}))
    with pytest.raises(ReportError, match="neither a trivy"):
        import_report(other)
    with pytest.raises(ReportError, match="looks like a trivy report"):
        import_report(REPORTS / "trivy-pip.repo.json", "grype")


def test_scan_import_from_the_cli(tmp_path: Path, cli: Callable[..., CliResult]) -> None:
    out = tmp_path / "findings.json"
    source = REPORTS / "grype-0.28-debian10-deb+python.json"
    result = cli("scan", "import", str(source), "--format", "grype", "--out", str(out), cwd=tmp_path)
    assert result.code == 0, result.err
    assert "5 findings (2 critical, 2 high, 1 low)" in result.out
    assert len(findings.load(out).findings) == 5


def test_a_findings_file_edited_into_nonsense_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "findings.json"
    import_report(REPORTS / "trivy-pip.repo.json").write(path)
    doc = json.loads(path.read_text())
    doc["findings"][0]["severity"] = "SEVERE"
    path.write_text(json.dumps(doc))
    with pytest.raises(ReportError, match="findings/0/severity"):
        findings.load(path)


REQUIRED = SCHEMA["$defs"]["finding"]["required"]


def _finding_schema() -> dict[str, object]:
    return {**SCHEMA["$defs"]["finding"], "$defs": SCHEMA["$defs"]}


MUTATIONS = [
    ("valid as written", lambda f: None),
    ("no title, no urls", lambda f: (f.pop("title"), f.pop("urls"))),
    ("with a source package", lambda f: f["package"].update(source_name="glibc")),
    ("null purl and score", lambda f: (f["package"].update(purl=None), f.update(cvss_score=None))),
    *[(f"no {key}", lambda f, key=key: f.pop(key)) for key in REQUIRED],
    ("an unknown key", lambda f: f.update(extra=1)),
    ("an empty id", lambda f: f.update(id="")),
    ("a duplicated alias", lambda f: f.update(aliases=["A", "A"])),
    ("a severity word", lambda f: f.update(severity="Severe")),
    ("a fix state word", lambda f: f.update(fix_state="patched")),
    ("no scanners", lambda f: f.update(scanners=[])),
    ("a score of 11", lambda f: f.update(cvss_score=11)),
    ("a score as text", lambda f: f.update(cvss_score="9.8")),
    ("a version as a number", lambda f: f.update(installed_version=1)),
    ("a package without a type", lambda f: f["package"].pop("type")),
    ("a package with an empty name", lambda f: f["package"].update(name="")),
    ("a location with a line", lambda f: f.update(locations=[{"path": "/x", "line": 3}])),
    ("a location as text", lambda f: f.update(locations=["/x"])),
    ("fixed versions as text", lambda f: f.update(fixed_versions="1.2")),
]  # fmt: skip


@pytest.mark.parametrize(("what", "mutate"), MUTATIONS, ids=[m[0] for m in MUTATIONS])
def test_the_fast_finding_check_agrees_with_the_schema(what: str, mutate: Callable[[dict], object]) -> None:
    row = import_report(REPORTS / "trivy-debian-buster.image.json").findings[0].to_json()
    mutate(row)
    schema_ok = jsonschema.Draft202012Validator(_finding_schema()).is_valid(row)
    assert (findings.check_finding(row) is None) == schema_ok, what
