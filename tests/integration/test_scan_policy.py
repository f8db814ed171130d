"""scan (real trivy with a small vulnerability DB made here, the osv matcher, both merged) and the
policy gate (regopy, default bundle) on an image the native builder made, end to end through the CLI.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from xml.etree import ElementTree as ET

import jsonschema
import pytest

from tests.helpers import ROOT, CliResult, git, make_repo, plan_is_what_ran, require_tools
from tests.integration.test_native_build import APP, OFFLINE_SCAN, locked_model, model_config
from tests.services import BuiltBase
from tfgov_ci.oci.layout import Layout
from tfgov_ci.testing.registry import LocalRegistry
from tfgov_ci.testing.trivy import Advisory, write_db

# What the test image holds: PyYAML 6.0.2 (locked) and Debian 12's libc6 and python3.11.
TRIVY_ADVISORIES = [
    Advisory("CVE-2099-1001", "pyyaml", "HIGH", fixed="6.0.3", vulnerable=("< 6.0.3",)),
    Advisory("CVE-2099-1002", "glibc", "MEDIUM", fixed="99.0-1", release="debian 12"),
    Advisory("CVE-2099-1003", "python3.11", "CRITICAL", release="debian 12"),  # no fix yet
]
OSV_PYYAML = """id: PYSEC-2099-2001
aliases: [CVE-2099-1001]
summary: test advisory for PyYAML, the same vulnerability trivy's database calls CVE-2099-1001
affected:
- package: {name: PyYAML, ecosystem: PyPI}
  ranges:
  - type: ECOSYSTEM
    events: [{introduced: "5.1"}, {fixed: "6.0.3"}]
"""
OSV_GLIBC = {
    "id": "DEBIAN-CVE-2099-1002",
    "aliases": ["CVE-2099-1002"],
    "affected": [
        {
            "package": {"name": "glibc", "ecosystem": "Debian:12"},
            "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "99.0-1"}]}],
        }
    ],
}
UP_TO_SCAN = ("validate", "lock", "build", "sbom", "scan")  # again after each commit
SCAN = (
    "  scan:\n    backend: trivy+osv\n"
    "    options: {{cache_dir: {db}, skip_db_update: true, advisories: advisories}}\n"
)


@pytest.fixture(scope="module")
def trivy_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require_tools("trivy", "go")
    return write_db(tmp_path_factory.mktemp("trivy") / "cache", TRIVY_ADVISORIES)


def stages(cli: Callable[..., CliResult], repo: Path, *names: str) -> None:
    for stage in names:
        result = cli("run", stage, cwd=repo)
        assert result.code == 0, f"{stage}: {result.err}"


@pytest.fixture
def governed(
    tmp_path: Path,
    small_base: BuiltBase,
    session_registry: LocalRegistry,
    trivy_db: Path,
    cli: Callable[..., CliResult],
) -> Path:
    """The test model, locked, built, with an SBOM: ready for scan and policy."""
    config = model_config(small_base.ref, session_registry.host).replace(
        "  scan:\n    backend: osv\n    options: {advisories: advisories}\n", SCAN.format(db=trivy_db)
    )
    advisories = {
        "advisories/pyyaml/PYSEC-2099-2001.yaml": OSV_PYYAML,
        "advisories/debian/DEBIAN-CVE-2099-1002.json": json.dumps(OSV_GLIBC),
    }
    repo = locked_model(cli, tmp_path / "hello", config, advisories)
    stages(cli, repo, *UP_TO_SCAN[:-1])
    return repo


def findings_of(repo: Path) -> list[dict[str, object]]:
    doc = json.loads((repo / ".tfgov/out/scan/findings.json").read_text())
    jsonschema.validate(doc, json.loads((ROOT / "schemas/findings.schema.json").read_text()))
    return doc["findings"]  # type: ignore[no-any-return]


def test_trivy_and_osv_findings_merge_by_package_and_id(
    governed: Path, cli: Callable[..., CliResult]
) -> None:
    stages(cli, governed, "scan")
    found = findings_of(governed)
    by_key = {(f["id"], f["package"]["name"]): f for f in found}  # type: ignore[index]
    pyyaml = by_key[("CVE-2099-1001", "PyYAML")]
    assert pyyaml["scanners"] == ["trivy", "osv"] and pyyaml["aliases"] == ["PYSEC-2099-2001"]
    assert (pyyaml["severity"], pyyaml["fix_state"], pyyaml["fixed_versions"]) == ("HIGH", "fixed", ["6.0.3"])
    assert pyyaml["locations"][0]["layer"].startswith("sha256:")  # type: ignore[index]
    libc = by_key[("CVE-2099-1002", "libc6")]
    assert libc["scanners"] == ["trivy", "osv"] and libc["package"]["type"] == "deb"  # type: ignore[index]
    python = [f for f in found if f["id"] == "CVE-2099-1003"]
    assert python and all(f["fix_state"] == "not-fixed" and f["scanners"] == ["trivy"] for f in python)
    result = json.loads((governed / ".tfgov/out/scan/result.json").read_text())
    assert result["backend"] == "trivy+osv"
    assert result["data"]["total"] == len(found) and result["data"]["fixable"] == 2
    assert [s["name"] for s in result["data"]["scanners"]] == ["trivy", "osv"]
    ran = plan_is_what_ran(governed, ["scan"])
    assert [c[:2] for c in ran["scan"]] == [["trivy", "image"]]  # osv matches in-process


def test_the_policy_denies_a_fixable_high_then_a_governed_exception_lets_it_through(
    governed: Path, cli: Callable[..., CliResult]
) -> None:
    stages(cli, governed, "scan")
    denied = cli("run", "policy", cwd=governed)
    assert denied.code == 1
    assert (
        "policy denied the image: vulnerabilities: HIGH CVE-2099-1001 in PyYAML 6.0.2 (fixed in 6.0.3)"
        in denied.err
    )
    out = governed / ".tfgov/out/policy"
    # the reports are written on a denial too: CI shows them
    suite = ET.parse(out / "junit.xml").getroot().find("testsuite")
    assert suite is not None and (suite.get("tests"), suite.get("failures")) == ("10", "1")
    failed = [c.get("name") for c in suite.iter("testcase") if c.find("failure") is not None]
    assert failed == ["vulnerabilities"]
    gitlab = json.loads((out / "gl-container-scanning-report.json").read_text())
    assert gitlab["scan"]["type"] == "container_scanning" and gitlab["version"].startswith("15.")
    assert len(gitlab["vulnerabilities"]) == len(findings_of(governed))
    assert {v["severity"] for v in gitlab["vulnerabilities"]} == {"High", "Medium", "Critical"}
    summary = (out / "summary.md").read_text()
    assert "## tfgov-ci policy: **denied**" in summary and "| vulnerabilities | DENY |" in summary
    document = json.loads((out / "policy-input.json").read_text())
    jsonschema.validate(document, json.loads((ROOT / "schemas/policy-input.schema.json").read_text()))
    assert json.loads((governed / ".tfgov/out/policy/result.json").read_text())["status"] == "failed"
    # the saved input replays to the same decision
    replay = cli("policy", "eval", "--input", str(out / "policy-input.json"), cwd=governed)
    assert replay.code == 1 and "HIGH CVE-2099-1001" in replay.out

    expires = (dt.datetime.now(dt.UTC).date() + dt.timedelta(days=30)).isoformat()
    (governed / "tfgov-exceptions.yaml").write_text(f"""version: 1
exceptions:
  - id: PYSEC-2099-2001
    package: pyyaml
    scope: hello
    reason: the YAML loader is never given untrusted input in this model server
    owner: ml-team@example.com
    approved_by: security@example.com
    expires: {expires}
""")
    git(governed, "add", "tfgov-exceptions.yaml")
    git(governed, "commit", "-qm", "accept CVE-2099-1001 for 30 days")
    stages(cli, governed, *UP_TO_SCAN)
    allowed = cli("run", "policy", cwd=governed)
    assert allowed.code == 0, allowed.err
    assert "outdated exception PYSEC-2099-2001 for pyyaml" in allowed.err  # a fix exists: upgrade
    result = json.loads((out / "result.json").read_text())
    assert result["data"]["exceptions"]["excepted_findings"] == 1
    assert "### Exceptions used" in (out / "summary.md").read_text()


def test_an_expired_exception_fails_the_gate_naming_the_entry_and_its_owner(
    governed: Path, cli: Callable[..., CliResult]
) -> None:
    (governed / "tfgov-exceptions.yaml").write_text("""version: 1
exceptions:
  - id: CVE-2099-1001
    package: pyyaml
    reason: the YAML loader is never given untrusted input in this model server
    owner: ml-team@example.com
    approved_by: security@example.com
    expires: 2026-01-31
""")
    git(governed, "add", "tfgov-exceptions.yaml")
    git(governed, "commit", "-qm", "an old exception")
    stages(cli, governed, *UP_TO_SCAN)
    result = cli("run", "policy", cwd=governed)
    assert result.code == 1
    decision = json.loads((governed / ".tfgov/out/policy/decision.json").read_text())
    messages = [d["message"] for d in decision["denials"]]
    assert any(
        "exception CVE-2099-1001 for pyyaml expired on 2026-01-31" in m and "owner ml-team@example.com" in m
        for m in messages
    ), messages
    assert any("HIGH CVE-2099-1001" in m for m in messages)  # expired: the finding counts again


def test_trivy_can_scan_the_sbom_instead_of_the_image(
    tmp_path: Path, small_base: BuiltBase, trivy_db: Path, cli: Callable[..., CliResult]
) -> None:
    config = model_config(small_base.ref, None).replace(
        "  scan:\n    backend: osv\n    options: {advisories: advisories}\n",
        "  scan:\n    backend: trivy\n"
        f"    options: {{cache_dir: {trivy_db}, skip_db_update: true, trivy_target: sbom}}\n",
    )
    repo = make_repo(
        tmp_path / "hello",
        {"tfgov.yaml": config, "requirements.txt": "PyYAML==6.0.2\n", "app.py": APP, "data/x": "x"},
    )
    assert cli("lock", cwd=repo).code == 0
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "lock")
    stages(cli, repo, *UP_TO_SCAN)
    found = {(f["id"], f["package"]["name"]) for f in findings_of(repo)}  # type: ignore[index]
    # trivy reads syft's CycloneDX for the Python packages (named as the SBOM's purl names them),
    # not for the Debian ones: the image (the default target) is what finds those (README: Scan)
    assert found == {("CVE-2099-1001", "pyyaml")}


def test_trivy_without_a_database_is_a_clear_tool_error(
    governed: Path, tmp_path: Path, cli: Callable[..., CliResult]
) -> None:
    text = (governed / "tfgov.yaml").read_text()
    start = text.index("cache_dir: ") + len("cache_dir: ")
    end = text.index(",", start)
    (governed / "tfgov.yaml").write_text(text[:start] + str(tmp_path / "empty-cache") + text[end:])
    git(governed, "commit", "-qam", "no database")
    stages(cli, governed, *UP_TO_SCAN[:-1])
    result = cli("run", "scan", cwd=governed)
    assert result.code == 3
    assert "trivy could not scan the image" in result.err and "skip_db_update" in result.err
    assert "Traceback" not in result.err


def test_grype_reports_are_imported_by_the_grype_backend_and_a_missing_grype_says_how_to_get_it(
    governed: Path, cli: Callable[..., CliResult]
) -> None:
    source = ROOT / "tests/fixtures/scanner-reports/grype-0.28-debian10-deb+python.json"
    (governed / "grype.json").write_text(source.read_text())
    text = (governed / "tfgov.yaml").read_text()
    start = text.index("  scan:\n")
    (governed / "tfgov.yaml").write_text(
        text[:start] + "  scan:\n    backend: grype\n    options: {grype_report: grype.json}\n"
    )
    git(governed, "add", "-A")
    git(governed, "commit", "-qm", "grype report")
    stages(cli, governed, *UP_TO_SCAN)
    assert len(findings_of(governed)) == 5
    assert plan_is_what_ran(governed, ["scan"]) == {"scan": []}  # an imported report: nothing runs
    (governed / "tfgov.yaml").write_text(text[:start] + "  scan:\n    backend: grype\n")
    git(governed, "commit", "-qam", "grype itself")
    stages(cli, governed, *UP_TO_SCAN[:-1])
    result = cli("run", "scan", cwd=governed)
    assert result.code == 3 and "grype is not installed" in result.err and "scan import" in result.err


def test_after_a_code_change_trivy_reads_only_the_new_layer_from_the_registry(
    tmp_path: Path, small_base: BuiltBase, trivy_db: Path, cli: Callable[..., CliResult]
) -> None:
    """trivy scans the image the build pushed (--image-src remote) and keeps each layer's analysis
    in its cache by diff id: the registry's access log shows which layers it downloaded."""
    cache = tmp_path / "trivy-cache"  # the database alone: no layer analysed yet
    shutil.copytree(trivy_db / "db", cache / "db")
    scan = f"  scan:\n    backend: trivy\n    options: {{cache_dir: {cache}, skip_db_update: true}}\n"
    with LocalRegistry(access_log=True) as registry:
        config = model_config(small_base.ref, registry.host).replace(OFFLINE_SCAN, scan)
        repo = locked_model(cli, tmp_path / "hello", config)

        def layers_trivy_downloaded() -> tuple[list[str], list[str]]:
            """The image's layers, and those among them the scan stage fetched from the registry."""
            stages(cli, repo, *UP_TO_SCAN[:-1])
            since = registry.log.stat().st_size
            stages(cli, repo, "scan")
            built = json.loads((repo / ".tfgov/out/build/result.json").read_text())["data"]["digest"]
            manifest = Layout.open(repo / ".tfgov/out/build/oci").read_json(built)
            layers = [layer["digest"] for layer in manifest["layers"]]
            fetched = {path.rsplit("/", 1)[1] for method, path in registry.requests(since) if method == "GET"}
            return layers, [layer for layer in layers if layer in fetched]

        layers, fetched = layers_trivy_downloaded()
        assert len(layers) > 2 and fetched == layers  # a cache with no layer analysed: every layer
        (repo / "app.py").write_text(APP + "# one more line\n")
        git(repo, "commit", "-qam", "change app.py")
        layers, fetched = layers_trivy_downloaded()
        assert fetched == [layers[-1]]  # the app layer, the one new layer
    # the unchanged layers' packages still found, from the analyses trivy kept
    assert {"PyYAML", "libc6"} <= {f["package"]["name"] for f in findings_of(repo)}  # type: ignore[index]
