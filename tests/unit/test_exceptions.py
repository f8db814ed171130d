"""Governed exceptions: the file's rules, how entries apply to findings, and the exports."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from tests.helpers import FIXTURES, CliResult
from tfgov_ci.errors import ConfigError
from tfgov_ci.findings import Finding
from tfgov_ci.stages.policy import exceptions

TODAY = dt.date(2026, 11, 26)

GOOD = """version: 1
exceptions:
  - id: CVE-2099-0001
    package: pyyaml
    scope: hello
    reason: not reachable from the model server; upgrade planned with the next TF release
    owner: ml-platform@example.com
    approved_by: security@example.com
    expires: 2026-12-20
  - id: CVE-2099-0002
    package: "pkg:deb/debian/libc6*"
    reason: accepted until the base image is rebuilt on the next point release
    owner: platform@example.com
    approved_by: security@example.com
    expires: 2026-11-01
  - id: CVE-2099-0003
    package: numpy
    reason: numpy is no longer in the image but the entry was never removed
    owner: ml-platform@example.com
    approved_by: security@example.com
    expires: 2026-12-01
    justification: vulnerable_code_not_in_execute_path
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "tfgov-exceptions.yaml"
    path.write_text(text)
    return path


def finding(id_: str, package: str, type_: str, *, fixed: bool = False, purl: str | None = None) -> Finding:
    return Finding(
        id_,
        package,
        type_,
        "1.0",
        purl=purl,
        fix_state="fixed" if fixed else "not-fixed",
        fixed_versions=("2.0",) if fixed else (),
        severity="HIGH",
        scanners=("trivy",),
    )


def test_entries_load_with_their_lines(tmp_path: Path) -> None:
    entries = exceptions.load(write(tmp_path, GOOD), on=TODAY)
    assert [(e.id, e.scope, e.line) for e in entries] == [
        ("CVE-2099-0001", "hello", 3),
        ("CVE-2099-0002", "*", 10),
        ("CVE-2099-0003", "*", 16),
    ]
    assert entries[0].expires == dt.date(2026, 12, 20) and entries[0].where.endswith(
        "tfgov-exceptions.yaml:3"
    )


def test_an_entry_without_owner_or_expiry_is_refused_with_its_line(tmp_path: Path) -> None:
    text = GOOD.replace("    owner: ml-platform@example.com\n", "", 1).replace(
        "    expires: 2026-11-01\n", ""
    )
    with pytest.raises(ConfigError) as raised:
        exceptions.load(write(tmp_path, text), on=TODAY)
    rendered = [p.render() for p in raised.value.problems]
    assert any(":3: exceptions[0]: 'owner' is a required property" in r for r in rendered), rendered
    assert any("exceptions[1]: 'expires' is a required property" in r for r in rendered), rendered


def test_an_expiry_beyond_the_platform_limit_is_refused(tmp_path: Path) -> None:
    text = GOOD.replace("expires: 2026-12-20", "expires: 2027-06-01")
    with pytest.raises(ConfigError) as raised:
        exceptions.load(write(tmp_path, text), max_days=30, on=TODAY)
    (problem,) = raised.value.problems
    assert problem.line == 9 and problem.key == "exceptions[0].expires"
    assert "more than 30 days" in problem.message and "expire it by 2026-12-26" in (problem.hint or "")


def test_applying_sorts_entries_into_used_expired_stale_and_outdated(tmp_path: Path) -> None:
    entries = exceptions.load(write(tmp_path, GOOD), on=TODAY)
    found = [
        finding("CVE-2099-0001", "PyYAML", "pypi", fixed=True),  # excepted, but a fix exists
        finding("CVE-2099-0002", "libc6", "deb", purl="pkg:deb/debian/libc6@2.36?arch=amd64"),  # expired
        finding("CVE-2099-0009", "six", "pypi"),  # no exception
    ]
    applied = exceptions.apply(entries, found, ["hello", "127.0.0.1:5000/ml/hello"], TODAY)
    assert [f.id for f in applied.findings] == ["CVE-2099-0002", "CVE-2099-0009"]  # expired: counts again
    assert [(f.id, e.id) for f, e in applied.excepted] == [("CVE-2099-0001", "CVE-2099-0001")]
    assert [e.id for e in applied.used] == ["CVE-2099-0001"]
    assert [e.id for e in applied.expired] == ["CVE-2099-0002"]
    assert [e.id for e in applied.stale] == ["CVE-2099-0003"]
    assert [(e.id, f.fixed_versions) for e, f in applied.outdated] == [("CVE-2099-0001", ("2.0",))]
    # another image: the scoped entry does not apply there
    other = exceptions.apply(entries, found, ["other-model"], TODAY)
    assert "CVE-2099-0001" in [f.id for f in other.findings]


def test_an_alias_and_a_purl_pattern_match(tmp_path: Path) -> None:
    entries = exceptions.load(write(tmp_path, GOOD.replace("2026-11-01", "2026-12-01")), on=TODAY)
    by_alias = Finding(
        "PYSEC-2099-5", "pyyaml", "pypi", "6.0.2", aliases=("CVE-2099-0001",), scanners=("osv",)
    )
    libc = finding("CVE-2099-0002", "libc6", "deb", purl="pkg:deb/debian/libc6@2.36?arch=amd64")
    applied = exceptions.apply(entries, [by_alias, libc], ["hello"], TODAY)
    assert applied.findings == ()


def test_export_openvex_and_trivyignore(tmp_path: Path) -> None:
    entries = exceptions.load(write(tmp_path, GOOD), on=TODAY)
    vex = exceptions.to_openvex(entries, author="tfgov-ci", timestamp="2026-11-26T00:00:00Z", doc_id="urn:x")
    assert vex["@context"] == "https://openvex.dev/ns/v0.2.0"
    statuses = [(s["vulnerability"]["name"], s["status"]) for s in vex["statements"]]
    assert statuses == [
        ("CVE-2099-0001", "affected"),
        ("CVE-2099-0002", "affected"),
        ("CVE-2099-0003", "not_affected"),
    ]
    assert (
        "risk accepted until 2026-12-20 by security@example.com" in vex["statements"][0]["action_statement"]
    )
    assert vex["statements"][2]["justification"] == "vulnerable_code_not_in_execute_path"
    ignore = yaml.safe_load(exceptions.to_trivyignore(entries))
    # the same keys trivy's own example file uses
    example = yaml.safe_load((FIXTURES / "scanner-reports/example.trivyignore.yaml").read_text())
    trivy_keys = {k for entry in example["vulnerabilities"] for k in entry} | {"statement"}
    assert {k for entry in ignore["vulnerabilities"] for k in entry} <= trivy_keys
    assert ignore["vulnerabilities"][0] == {
        "id": "CVE-2099-0001",
        "expired_at": "2026-12-20",
        "statement": "not reachable from the model server; upgrade planned with the next TF release "
        "(owner ml-platform@example.com, approved by security@example.com)",
    }


def test_exceptions_check_and_export_from_the_cli(tmp_path: Path, cli: Callable[..., CliResult]) -> None:
    today = exceptions.today()
    dates = {"2026-12-20": today + dt.timedelta(days=20), "2026-11-01": today - dt.timedelta(days=3)}
    dates["2026-12-01"] = today  # each date replaced once: today - 3 may itself be one of them
    text = re.sub("|".join(dates), lambda m: str(dates[m.group()]), GOOD)
    write(tmp_path, text)
    checked = cli("exceptions", "check", cwd=tmp_path)
    assert checked.code == 1  # one entry expired
    assert "CVE-2099-0002 pkg:deb/debian/libc6* (scope *), owner platform@example.com: EXPIRED" in checked.out
    assert "3 exceptions, 1 expired (limit 90 days)" in checked.out
    out = tmp_path / "vex.json"
    exported = cli("exceptions", "export", "--format", "openvex", "--output", str(out), cwd=tmp_path)
    assert exported.code == 0, exported.err
    assert len(json.loads(out.read_text())["statements"]) == 3
    printed = cli("exceptions", "export", "--format", "trivyignore", cwd=tmp_path)
    assert yaml.safe_load(printed.out)["vulnerabilities"][1]["id"] == "CVE-2099-0002"
    missing = cli("exceptions", "check", "--file", str(tmp_path / "none.yaml"), cwd=tmp_path)
    assert missing.code == 2 and "file not found" in missing.err
