"""The fleet questions on a real SQLite inventory: `trace`, `which`, `inventory mark-deployed` and
`inventory list`, over the real pipeline run of the model plus two images made from copies of its
out directory (test_inventory.py's `variant`): an older one (built in 2020) with TensorFlow 2.11 and
PyYAML 5.3.1 that the policy denied, and one in another repository holding log4j-core (a Java package)."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers import FIXTURES, CliResult, edit_json
from tests.integration.test_inventory import variant
from tests.services import PYYAML_ADVISORY, RecordedBuild
from tfgov_ci._cli import main

OLD = "sha256:" + f"{2:064x}"
JAVA = "sha256:" + f"{3:064x}"


def _add_component(out: Path, name: str, version: str, purl: str) -> None:
    sbom = out / "sbom" / "sbom.cdx.json"
    doc = json.loads(sbom.read_text())
    doc["components"].append({"type": "library", "name": name, "version": version, "purl": purl})
    sbom.write_text(json.dumps(doc))


@pytest.fixture(scope="module")
def fleet(recorded_build: RecordedBuild, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An inventory of three images (see the module's docstring); the database file."""
    folder = tmp_path_factory.mktemp("fleet")
    old = variant(recorded_build, folder, 2, pyyaml="5.3.1")
    _add_component(old, "tensorflow", "2.11.0", "pkg:pypi/tensorflow@2.11.0")

    def older(doc: dict[str, object]) -> None:
        doc["data"]["labels"]["io.tfgov.tensorflow.version"] = "2.11.0"  # type: ignore[index]

    edit_json(old / "build/result.json", older)
    edit_json(old / "policy/decision.json", lambda doc: doc.update(allow=False))
    edit_json(
        old / "record.json", lambda doc: doc.update(created="2020-01-02T03:04:05.000Z")
    )  # built long ago
    java = variant(recorded_build, folder, 3)
    _add_component(java, "log4j-core", "2.14.1", "pkg:maven/org.apache.logging.log4j/log4j-core@2.14.1")
    edit_json(
        java / "record.json",
        lambda doc: doc["image"].update(  # type: ignore[attr-defined]
            repository=doc["image"]["repository"].replace("ml/recorded", "ml/java")  # type: ignore[index]
        ),
    )
    db = folder / "inventory.sqlite"
    code = main(["inventory", "import", str(recorded_build.out), str(old), str(java), "--inventory", str(db)])
    assert code == 0
    return db


def test_trace_from_a_digest_alone_tells_commit_pipeline_base_lock_packages_findings_and_evidence(
    fleet: Path, recorded_build: RecordedBuild, cli: Callable[..., CliResult]
) -> None:
    done = cli("trace", recorded_build.digest, "--inventory", str(fleet))
    assert done.code == 0, done.err
    build = json.loads((recorded_build.out / "build/result.json").read_text())["data"]
    lines = done.out.splitlines()
    assert lines[0] == f"image        {build['refs'][0].rsplit(':', 1)[0]}@{recorded_build.digest}"
    assert f"commit       {recorded_build.sha} (branch main)" in lines
    assert f"base         {build['base']['ref']}" in lines and f"lock         {build['lock_digest']}" in lines
    assert "builder      native on " in done.out and "pipeline     tf-image on local: -" in lines
    assert "packages     34 (deb 32, generic 1, pypi 1)" in lines
    assert "findings     1: 1 medium" in lines
    assert any(line.startswith("  MEDIUM   PYSEC-2099-7 pyyaml 6.0.2 -> 6.0.3") for line in lines)
    assert (
        "decision     allow" in lines
        and f"signed       yes: {build['refs'][0].rsplit(':', 1)[0]}@" in done.out
    )
    assert sum(line.startswith("attested     ") for line in lines) == 5
    assert "deployed     not known" in done.out
    as_json = json.loads(
        cli("trace", recorded_build.digest, "--format", "json", "--inventory", str(fleet)).out
    )
    assert as_json["image"]["commit_sha"] == recorded_build.sha and as_json["packages"]["deb"] == 32
    assert as_json["findings"]["MEDIUM"] == 1 and as_json["findings"]["CRITICAL"] == 0
    # by REPO@DIGEST: the same; by a tag that moved (main, on both ml/recorded images): the image
    # built last under it
    repository = as_json["image"]["repository"]
    by_tag = json.loads(cli("trace", f"{repository}:main", "--format", "json", "--inventory", str(fleet)).out)
    assert by_tag["image"]["digest"] == recorded_build.digest
    assert cli("trace", f"{repository}@{recorded_build.digest}", "--inventory", str(fleet)).code == 0


def test_trace_of_an_unknown_digest_exits_1_suggesting_import_and_a_malformed_one_exits_2(
    fleet: Path, cli: Callable[..., CliResult]
) -> None:
    unknown = "sha256:" + "e" * 64
    done = cli("trace", unknown, "--inventory", str(fleet))
    assert done.code == 1 and done.out == ""
    assert (
        f"no image {unknown} in the inventory (hint: record it with `tfgov-ci inventory import`" in done.err
    )
    assert cli("trace", "sha256:123", "--inventory", str(fleet)).code == 2
    assert "name the image by digest" in cli("trace", "just-a-name", "--inventory", str(fleet)).err


def _which(cli: Callable[..., CliResult], fleet: Path, *args: str) -> dict[str, object]:
    done = cli("which", *args, "--format", "json", "--inventory", str(fleet))
    assert done.code == 0, done.err
    answer: dict[str, object] = json.loads(done.out)
    return answer


def _digests(answer: dict[str, object]) -> list[str]:
    return sorted({m["digest"] for m in answer["matches"]})  # type: ignore[attr-defined, index]


def test_which_finds_images_by_pep_440_range_by_name_any_version_and_by_debian_purl(
    fleet: Path, recorded_build: RecordedBuild, cli: Callable[..., CliResult]
) -> None:
    assert _digests(_which(cli, fleet, "tensorflow<2.12")) == [OLD]
    assert _digests(_which(cli, fleet, "tensorflow>=2.12")) == []
    assert _digests(_which(cli, fleet, "pyyaml>=5.1,<5.4")) == [OLD]
    assert _digests(_which(cli, fleet, "PyYAML>=6")) == sorted([recorded_build.digest, JAVA])  # PEP 503
    java = _which(cli, fleet, "log4j-core")  # any version, whatever the ecosystem
    assert _digests(java) == [JAVA]
    match = java["matches"][0]  # type: ignore[index]
    assert match["package"]["type"] == "maven" and match["repository"].endswith("/ml/java")
    assert match["governed"] is True and match["commit"] == recorded_build.sha and len(match["tags"]) == 3
    # Debian: the source package names its binaries (libssl3 is openssl's), dpkg ordering (a ~
    # version sorts before the release), and the purl form
    assert len(_digests(_which(cli, fleet, "--purl", "pkg:deb/debian/openssl"))) == 3
    assert len(_digests(_which(cli, fleet, "openssl<3.0.22-1"))) == 3  # 3.0.22-1~deb12u2 is earlier
    assert _digests(_which(cli, fleet, "openssl<3.0.22-1~deb12u2")) == []
    assert _digests(_which(cli, fleet, "--purl", "pkg:deb/ubuntu/openssl")) == []
    # a range over an ecosystem with no ordering here is undecided, not guessed
    undecided = _which(cli, fleet, "log4j-core<2.17")
    assert undecided["matches"] == [] and undecided["undecided"] == ["maven/log4j-core@2.14.1"]
    assert _digests(_which(cli, fleet, "log4j-core==2.14.1")) == [JAVA]


def test_which_writes_text_and_csv_with_tags_commit_governed_and_deployment(
    fleet: Path, cli: Callable[..., CliResult]
) -> None:
    text = cli("which", "tensorflow<2.12", "--inventory", str(fleet))
    assert text.code == 0 and text.out.startswith("1 image with tensorflow<2.12\n")
    assert "pypi/tensorflow 2.11.0" in text.out and "governed; decision deny" in text.out
    rows = list(
        csv.DictReader(io.StringIO(cli("which", "pyyaml", "--format", "csv", "--inventory", str(fleet)).out))
    )
    assert len(rows) == 3 and {r["version"] for r in rows} == {"6.0.2", "5.3.1"}
    assert set(rows[0]) >= {"repository", "digest", "tags", "commit", "governed", "deployments"}


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("pyyaml>=", "'>=' is not OP VERSION"),
        ("pyyaml=>5.1", "'=>5.1' is not OP VERSION"),
        ("pyyaml>=5.1;<5.4", "is not OP VERSION"),
        ("pyyaml~=5.1", "'~=5.1' is not OP VERSION"),
        ("<5.4", "malformed package range '<5.4'"),
        ("pyyaml>=5.x", "'5.x' is not a version of pyyaml's ecosystem (pypi: PEP 440)"),
    ],
)
def test_a_malformed_range_exits_2_saying_what_was_expected(
    fleet: Path, spec: str, says: str, cli: Callable[..., CliResult]
) -> None:
    done = cli("which", spec, "--inventory", str(fleet))
    assert done.code == 2 and says in done.err, done.err
    assert "expected NAME, or NAME then OP VERSION" in done.err and "Traceback" not in done.err


def test_which_needs_a_spec_or_a_purl_and_refuses_a_malformed_purl(
    fleet: Path, cli: Callable[..., CliResult]
) -> None:
    assert "give a SPEC or --purl PURL" in cli("which", "--inventory", str(fleet)).err
    done = cli("which", "--purl", "deb/openssl", "--inventory", str(fleet))
    assert done.code == 2 and "malformed purl 'deb/openssl'" in done.err


def test_mark_deployed_is_shown_by_trace_which_and_list_and_an_unknown_image_exits_1(
    fleet: Path, recorded_build: RecordedBuild, cli: Callable[..., CliResult], tmp_path: Path
) -> None:
    import shutil

    db = tmp_path / "inventory.sqlite"
    shutil.copyfile(fleet, db)  # the module's fleet stays undeployed for the other tests
    done = cli("inventory", "mark-deployed", OLD, "production", "--inventory", str(db))
    assert done.code == 0, done.err
    assert f"{OLD} ({OLD}) is deployed in production" in done.out
    assert (
        cli("inventory", "mark-deployed", OLD, "production", "--inventory", str(db)).code == 0
    )  # again: one row
    assert "deployed     production since 20" in cli("trace", OLD, "--inventory", str(db)).out
    match = _which(cli, db, "tensorflow<2.12")["matches"][0]  # type: ignore[index]
    assert match["deployments"] == ["production"]
    listed = json.loads(cli("inventory", "list", "--format", "json", "--inventory", str(db)).out)["images"]
    assert [m["deployments"] for m in listed if m["digest"] == OLD] == [["production"]]
    unknown = cli("inventory", "mark-deployed", "sha256:" + "f" * 64, "staging", "--inventory", str(db))
    assert unknown.code == 1 and "inventory import" in unknown.err
    bad = cli("inventory", "mark-deployed", OLD, "no spaces allowed", "--inventory", str(db))
    assert bad.code == 2 and "is not an environment name" in bad.err
    import sqlite3

    assert sqlite3.connect(db).execute("SELECT count(*) FROM deployments").fetchone() == (1,)


def test_inventory_list_filters_by_repository_governed_base_tensorflow_and_decision(
    fleet: Path, recorded_build: RecordedBuild, cli: Callable[..., CliResult]
) -> None:
    def listed(*args: str) -> list[str]:
        done = cli("inventory", "list", *args, "--format", "json", "--inventory", str(fleet))
        assert done.code == 0, done.err
        return sorted(m["digest"] for m in json.loads(done.out)["images"])

    everything = sorted([recorded_build.digest, OLD, JAVA])
    assert listed() == everything and listed("--governed") == everything and listed("--ungoverned") == []
    assert listed("--repository", "*/ml/java") == [JAVA]
    assert listed("--repository", "*/ml/recorded") == sorted([recorded_build.digest, OLD])
    assert listed("--tensorflow", "2.11.0") == [OLD] and listed("--tensorflow", "2.2*") == sorted(
        [recorded_build.digest, JAVA]
    )
    assert listed("--decision", "deny") == [OLD] and listed("--decision", "none") == []
    base = json.loads((recorded_build.out / "build/result.json").read_text())["data"]["base"]
    assert listed("--base", base["digest"]) == everything and listed("--base", base["ref"]) == everything
    assert listed("--base", "sha256:" + "0" * 64) == []
    assert listed("--decision", "allow", "--repository", "*/ml/java") == [JAVA]
    text = cli("inventory", "list", "--decision", "deny", "--inventory", str(fleet))
    assert text.out.startswith("1 image\n") and "tensorflow 2.11.0; decision deny" in text.out


@pytest.fixture(scope="module")
def pypa(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real PyPA advisory database (tests/fixtures/osv: a 2024 snapshot), unpacked."""
    import tarfile

    folder = tmp_path_factory.mktemp("pypa")
    with tarfile.open(FIXTURES / "osv" / "pypa-advisory-database.tar.gz") as archive:
        archive.extractall(folder, filter="data")
    return folder / "pypa-advisory-database" / "vulns"


NEW_HIGH = (
    PYYAML_ADVISORY.replace("PYSEC-2099-7", "PYSEC-2099-9")
    .replace("CVE-2099-7", "CVE-2099-9")
    .replace("MODERATE", "HIGH")
)


def _rows(db: Path, sql: str) -> list[tuple[object, ...]]:
    import sqlite3

    conn = sqlite3.connect(db)
    try:
        return [tuple(r) for r in conn.execute(sql)]
    finally:
        conn.close()


def test_rescan_stores_what_is_newly_affected_with_the_database_digest_and_time_once(
    fleet: Path, pypa: Path, recorded_build: RecordedBuild, tmp_path: Path, cli: Callable[..., CliResult]
) -> None:
    import shutil

    from tfgov_ci.inventory.rescan import folder_digest

    db = tmp_path / "inventory.sqlite"
    shutil.copyfile(fleet, db)
    first = cli("rescan", "--advisories", str(pypa), "--inventory", str(db))
    assert first.code == 0, first.err  # new, but the PyPA entry gives no severity: below the default HIGH
    assert "rescanned 3 images (35 distinct PyPI and Debian package versions)" in first.out
    assert f"(2661 advisories, {folder_digest(pypa)})" in first.out
    # PyYAML 5.3.1's CVE-2020-14343 (PYSEC-2021-142), in the old image only
    assert "1 new finding since the last rescan" in first.out
    assert "UNKNOWN  PYSEC-2021-142 pypi/pyyaml 5.3.1 (fixed in 5.4) in " in first.out
    assert first.out.rstrip().endswith(f"@{OLD}")
    # stored once for the package version, with the image the rescan found it new in
    query = "SELECT p.name, p.version, f.advisory, f.images, r.started FROM rescan_findings f"
    stored = _rows(db, f"{query} JOIN packages p ON p.id = f.package_id JOIN rescans r ON r.id = f.rescan_id")
    assert [(str(row[0]).lower(), *row[1:4]) for row in stored] == [("pyyaml", "5.3.1", "PYSEC-2021-142", 1)]
    assert str(stored[0][4]).startswith("20")
    assert _rows(db, "SELECT i.digest FROM rescan_images s JOIN images i ON i.id = s.image_id") == [(OLD,)]
    assert _rows(db, "SELECT count(*) FROM findings WHERE origin = 'rescan'") == [(0,)]
    assert _rows(db, "SELECT advisory_db_digest, advisory_files, new_findings FROM rescans") == [
        (folder_digest(pypa), 2661, 1)
    ]
    # the same database again: nothing new, so exit 0 even when any severity would fail it
    again = cli("rescan", "--advisories", str(pypa), "--fail-on", "UNKNOWN", "--inventory", str(db))
    assert again.code == 0 and "0 new findings since the last rescan" in again.out
    # what a pipeline's own scan found is not new: PYSEC-2099-7 is new only for the old image's
    # PyYAML 5.3.1, not for the two images whose scans reported it on their PyYAML 6.0.2
    mine = tmp_path / "advisories"
    mine.mkdir()
    (mine / "PYSEC-2099-7.yaml").write_text(PYYAML_ADVISORY)
    known = cli("rescan", "--advisories", str(mine), "--format", "json", "--inventory", str(db))
    assert known.code == 0  # MEDIUM: below the default HIGH
    assert [(n["digest"], n["id"]) for n in json.loads(known.out)["new_findings"]] == [(OLD, "PYSEC-2099-7")]
    # this morning's HIGH advisory is new in every image holding an affected PyYAML: exit 1
    (mine / "PYSEC-2099-9.yaml").write_text(NEW_HIGH)
    before = tmp_path / "before.sqlite"
    shutil.copyfile(db, before)
    failing = cli("rescan", "--advisories", str(mine), "--inventory", str(before))
    assert failing.code == 1 and "3 new findings since the last rescan" in failing.out
    critical_only = cli(
        "rescan",
        "--advisories",
        str(mine),
        "--fail-on",
        "CRITICAL",
        "--format",
        "json",
        "--inventory",
        str(db),
    )
    assert critical_only.code == 0  # HIGH is below --fail-on CRITICAL: stored, not failing
    new = json.loads(critical_only.out)["new_findings"]
    assert sorted(n["digest"] for n in new) == sorted([recorded_build.digest, JAVA, OLD])
    assert {(n["id"], n["severity"], n["governed"], tuple(n["fixed_versions"])) for n in new} == {
        ("PYSEC-2099-9", "HIGH", True, ("6.0.3",))
    }
    assert "  HIGH     PYSEC-2099-9 pyyaml 6.0.2 -> 6.0.3" in cli("trace", JAVA, "--inventory", str(db)).out


def test_a_finding_the_pipeline_reported_under_its_scanners_own_purl_is_not_new_to_rescan(
    recorded_build: RecordedBuild, tmp_path: Path, cli: Callable[..., CliResult]
) -> None:
    """trivy names packages by its own purls (qualifiers the SBOM's lack): the same package version
    under another purl is still what the pipeline's scan found."""
    import shutil

    out = tmp_path / "out"
    shutil.copytree(recorded_build.out, out, ignore=shutil.ignore_patterns("oci"))
    findings = out / "scan" / "findings.json"
    text = findings.read_text()
    assert "pkg:pypi/pyyaml@6.0.2" in text
    findings.write_text(text.replace("pkg:pypi/pyyaml@6.0.2", "pkg:pypi/pyyaml@6.0.2?repository_url=x"))
    db = str(tmp_path / "inventory.sqlite")
    assert cli("inventory", "import", str(out), "--inventory", db).code == 0
    mine = tmp_path / "advisories"
    mine.mkdir()
    (mine / "PYSEC-2099-7.yaml").write_text(PYYAML_ADVISORY)
    again = cli("rescan", "--advisories", str(mine), "--fail-on", "UNKNOWN", "--inventory", db)
    assert again.code == 0 and "0 new findings since the last rescan" in again.out, again.out


def test_rescan_with_a_window_skips_old_images_unless_they_are_deployed(
    fleet: Path, pypa: Path, tmp_path: Path, cli: Callable[..., CliResult]
) -> None:
    import shutil

    db = tmp_path / "inventory.sqlite"
    shutil.copyfile(fleet, db)
    argv = ("rescan", "--advisories", str(pypa), "--window", "30", "--fail-on", "UNKNOWN", "--format", "json")
    recent = cli(*argv, "--inventory", str(db))
    assert recent.code == 0 and json.loads(recent.out)["images"] == 2  # the 2020 image is outside
    assert json.loads(recent.out)["new_findings"] == []
    assert cli("inventory", "mark-deployed", OLD, "production", "--inventory", str(db)).code == 0
    deployed = cli(*argv, "--inventory", str(db))
    assert deployed.code == 1 and json.loads(deployed.out)["images"] == 3
    assert {n["digest"] for n in json.loads(deployed.out)["new_findings"]} == {OLD}
    # an image whose build time nobody knows (no created label) is inside any window
    unknown = tmp_path / "unknown.sqlite"
    shutil.copyfile(fleet, unknown)
    conn = sqlite3.connect(unknown)
    conn.execute("UPDATE images SET created = NULL WHERE digest = ?", (OLD,))
    conn.commit()
    conn.close()
    undated = cli(*argv, "--inventory", str(unknown))
    assert undated.code == 1 and json.loads(undated.out)["images"] == 3


def test_rescan_refuses_a_missing_folder_and_a_negative_window_storing_nothing(
    fleet: Path, tmp_path: Path, cli: Callable[..., CliResult]
) -> None:
    import shutil

    db = tmp_path / "inventory.sqlite"
    shutil.copyfile(fleet, db)
    missing = cli("rescan", "--advisories", str(tmp_path / "nowhere"), "--inventory", str(db))
    assert missing.code == 2 and "no such advisory folder" in missing.err
    negative = cli("rescan", "--advisories", str(tmp_path), "--window", "-1", "--inventory", str(db))
    assert negative.code == 2 and "--window -1" in negative.err
    assert _rows(db, "SELECT count(*) FROM rescans") == [(0,)]
