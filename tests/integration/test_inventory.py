"""The inventory's store and `inventory import`, on real SQLite and a real PostgreSQL 15 server
(started by a fixture on 127.0.0.1), with the out directory of a real pipeline run of the model.

Where a test needs a second image, it copies the real out directory and changes the digest (and
a package version) in the copy: a fleet of one build is not a fleet, and building more images
for real would only make the suite slower without testing anything else here.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import FIXTURES, CliResult, unavailable
from tests.services import RecordedBuild
from tfgov_ci.testing.postgres import PASSWORD, LocalPostgres, bin_dir


@pytest.fixture(scope="module")
def postgres() -> Iterator[LocalPostgres]:
    if bin_dir() is None:
        unavailable("the PostgreSQL server is not installed (make setup installs Debian's postgresql)")
    with LocalPostgres() as pg:
        yield pg


@pytest.fixture
def fresh_postgres(postgres: LocalPostgres) -> str:
    """The module's server with its inventory emptied: a URL to a database as new."""
    from sqlalchemy import create_engine

    engine = create_engine(postgres.url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    engine.dispose()
    return postgres.url


def variant(build: RecordedBuild, folder: Path, n: int, *, pyyaml: str | None = None) -> Path:
    """A copy of the real out directory as the record of another image (digest n; optionally
    another PyYAML version in its SBOM)."""
    out = folder / f"out-{n}"
    shutil.copytree(build.out, out, ignore=shutil.ignore_patterns("oci"))
    digest = "sha256:" + f"{n:064x}"
    for path in (out / "record.json", out / "build/result.json", out / "policy/decision.json"):
        path.write_text(path.read_text().replace(build.digest, digest))
    if pyyaml:
        sbom = out / "sbom/sbom.cdx.json"
        doc = json.loads(sbom.read_text())
        for component in doc["components"]:
            if component.get("purl", "").startswith("pkg:pypi/pyyaml@6.0.2"):
                component["version"] = pyyaml
                component["purl"] = component["purl"].replace("pyyaml@6.0.2", f"pyyaml@{pyyaml}")
        sbom.write_text(json.dumps(doc))
    return out


def counts(db: Path) -> dict[str, int]:
    conn = sqlite3.connect(db)
    try:
        return {
            table: conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            for table in ("images", "image_tags", "packages", "image_packages", "findings", "attestations")
        }
    finally:
        conn.close()


def test_an_out_directory_is_recorded_with_its_commit_base_lock_packages_findings_and_evidence(
    recorded_build: RecordedBuild, tmp_path: Path, cli: Callable[..., CliResult]
) -> None:
    db = tmp_path / "inventory.sqlite"
    done = cli("inventory", "import", str(recorded_build.out), "--inventory", str(db))
    assert done.code == 0, done.err
    assert f"ml/recorded@{recorded_build.digest}" in done.out
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    image = conn.execute("SELECT * FROM images").fetchone()
    build = json.loads((recorded_build.out / "build/result.json").read_text())["data"]
    assert image["digest"] == recorded_build.digest and image["commit_sha"] == recorded_build.sha
    assert image["repository"].endswith("/ml/recorded") and image["governed"] == 1
    assert image["base_digest"] == build["base"]["digest"] and image["lock_digest"] == build["lock_digest"]
    assert image["builder"] == "native" and image["ci_provider"] == "local"
    assert image["decision"] == "allow" and image["signed"] == 1
    assert image["tensorflow_version"] == "2.21.0" and json.loads(image["tools"])["syft"] == "syft 1.18.1"
    tags = {row[0] for row in conn.execute("SELECT tag FROM image_tags")}
    assert tags == {recorded_build.sha, recorded_build.sha[:8], "main"}
    # every SBOM package, with licences and where it was found
    sbom = json.loads((recorded_build.out / "sbom/sbom.cdx.json").read_text())
    with_purl = [c for c in sbom["components"] if c.get("purl")]
    assert conn.execute("SELECT count(*) FROM image_packages").fetchone()[0] == len(with_purl)
    pyyaml = conn.execute(
        "SELECT p.type, p.version, l.licenses, l.location FROM packages p JOIN image_packages l"
        " ON l.package_id = p.id WHERE p.key = 'pyyaml'"
    ).fetchone()
    assert tuple(pyyaml)[:3] == ("pypi", "6.0.2", '["MIT"]') and "yaml" in pyyaml[3].lower()
    libc = conn.execute("SELECT source_name FROM packages WHERE name = 'libc6'").fetchone()
    assert tuple(libc) == ("glibc",)  # a Debian package's source, from the purl's upstream qualifier
    # the scan's finding, with the advisory database it came from and when
    query = "SELECT advisory, severity, advisory_db, found, excepted FROM findings"
    finding = tuple(conn.execute(query).fetchone())
    assert finding[:2] == ("PYSEC-2099-7", "MEDIUM") and finding[2].endswith("/advisories")
    assert finding[3].startswith("20") and finding[4] == 0
    # the attestations, with the digest of each attested document
    attested = dict(conn.execute("SELECT predicate_type, document_digest FROM attestations").fetchall())
    assert len(attested) == 5 and attested["https://tfgov-ci.dev/attestations/record/v1"].startswith(
        "sha256:"
    )
    conn.close()


def test_the_same_image_twice_is_one_row_and_packages_are_stored_once_across_images(
    recorded_build: RecordedBuild, tmp_path: Path, cli: Callable[..., CliResult]
) -> None:
    db = tmp_path / "inventory.sqlite"
    assert cli("inventory", "import", str(recorded_build.out), "--inventory", str(db)).code == 0
    once = counts(db)
    again = cli("inventory", "import", str(recorded_build.out / "record.json"), "--inventory", str(db))
    assert again.code == 0, again.err
    assert counts(db) == once
    other = variant(recorded_build, tmp_path, 2)
    assert cli("inventory", "import", str(other), "--inventory", str(db)).code == 0
    twice = counts(db)
    assert twice["images"] == 2 and twice["packages"] == once["packages"]  # the same versions: shared
    assert twice["image_packages"] == 2 * once["image_packages"]
    newer = variant(recorded_build, tmp_path, 3, pyyaml="6.0.3")
    assert cli("inventory", "import", str(newer), "--inventory", str(db)).code == 0
    assert counts(db)["packages"] == once["packages"] + 1  # one new package version


def test_a_record_that_breaks_its_schema_is_rejected_naming_file_and_key_and_stops_the_import_there(
    recorded_build: RecordedBuild, tmp_path: Path, cli: Callable[..., CliResult]
) -> None:
    db = tmp_path / "inventory.sqlite"
    bad = variant(recorded_build, tmp_path, 4)
    record = json.loads((bad / "record.json").read_text())
    record["commit"]["sha"] = "not-a-sha"
    (bad / "record.json").write_text(json.dumps(record))
    done = cli("inventory", "import", str(recorded_build.out), str(bad), "--inventory", str(db))
    assert done.code == 2
    assert f"{bad / 'record.json'}: commit.sha: 'not-a-sha' does not match" in done.err
    assert "(hint: a tfgov-ci build record" in done.err and "Traceback" not in done.err
    assert "note: the image before it is stored, whole (of 2 paths)" in done.err
    assert counts(db)["images"] == 1  # the good one before it, whole; nothing of the bad one
    done = cli(
        "inventory", "import", str(bad), str(recorded_build.out), "--inventory", str(tmp_path / "b.db")
    )
    assert done.code == 2 and "note: nothing was stored (of 2 paths)" in done.err
    assert counts(tmp_path / "b.db")["images"] == 0  # nor after it
    # a record with no image digest, and a folder that is no out directory
    record["commit"]["sha"] = recorded_build.sha
    record["image"]["digest"] = None
    (bad / "record.json").write_text(json.dumps(record))
    done = cli("inventory", "import", str(bad), "--inventory", str(db))
    assert done.code == 2 and "image.digest: the record names no image digest" in done.err
    done = cli("inventory", "import", str(tmp_path), "--inventory", str(db))
    assert done.code == 2 and f"{tmp_path}: no record.json in this folder" in done.err
    (bad / "record.json").write_text('{"schema_version": 1,')
    done = cli("inventory", "import", str(bad), "--inventory", str(db))
    assert done.code == 2 and "record.json:1:" in done.err and "not valid JSON" in done.err
    assert counts(db)["images"] == 1  # the good one, from the first import; nothing since


def test_an_unreachable_database_exits_3_naming_the_url_with_its_password_masked(
    recorded_build: RecordedBuild, cli: Callable[..., CliResult]
) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens there once the socket closes
    url = f"postgresql://fleet:{PASSWORD}@127.0.0.1:{port}/inventory"
    done = cli("inventory", "import", str(recorded_build.out), "--inventory", url)
    assert done.code == 3, done.err
    assert f"cannot open the inventory: postgresql://***@127.0.0.1:{port}/inventory" in done.err
    assert "Connection refused" in done.err and "(hint: check that the database is up" in done.err
    assert PASSWORD not in done.out + done.err and "Traceback" not in done.err
    unsupported = cli(
        "inventory", "import", str(recorded_build.out), "--inventory", f"mysql://a:{PASSWORD}@h/db"
    )
    assert unsupported.code == 2 and "unsupported inventory database mysql://***@h/db" in unsupported.err
    assert PASSWORD not in unsupported.err


def test_a_database_made_by_the_first_schema_is_migrated_and_keeps_its_images(
    recorded_build: RecordedBuild, tmp_path: Path, cli: Callable[..., CliResult]
) -> None:
    from sqlalchemy import create_engine

    from tfgov_ci.inventory import store

    db = tmp_path / "old.sqlite"
    shutil.copyfile(FIXTURES / "inventory" / "rev0001.sqlite", db)
    assert sqlite3.connect(db).execute("SELECT version_num FROM alembic_version").fetchone() == ("0001",)
    done = cli("inventory", "import", str(recorded_build.out), "--inventory", str(db))
    assert done.code == 0, done.err
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT version_num FROM alembic_version").fetchone() == (store.head(),)
    assert store.head() != "0001"
    repositories = sorted(r[0].rsplit("/", 2)[-2] for r in conn.execute("SELECT repository FROM images"))
    assert repositories == ["ml", "ml"]  # the old image kept beside the new one
    assert conn.execute("SELECT count(*) FROM deployments").fetchone() == (0,)  # 0002: deployments
    assert conn.execute("SELECT count(*) FROM rescans").fetchone() == (0,)  # 0003: rescans
    conn.close()
    # and the migrated schema is the one the code declares
    engine = create_engine(f"sqlite:///{db}")
    with engine.connect() as connection:
        assert _schema_differences(connection) == []
    engine.dispose()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_rescan_findings_an_older_schema_stored_per_image_move_to_their_version_and_read_the_same(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest, cli: Callable[..., CliResult]
) -> None:
    """Revision 0007 stores a rescan's findings once per package version: those an older rescan
    stored per image are moved, and trace and the next rescan answer as they did."""
    from sqlalchemy import create_engine, insert

    from tests.services import PYYAML_ADVISORY
    from tfgov_ci.inventory import tables
    from tfgov_ci.inventory.store import migrate

    url = (
        request.getfixturevalue("fresh_postgres") if backend == "postgresql" else f"sqlite:///{tmp_path}/i.db"
    )
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    migrate(engine, "0006")
    rescanned, scanned = "sha256:" + "0a" * 32, "sha256:" + "0b" * 32
    then = "2026-11-01T00:00:00.000Z"
    finding = {
        "package_id": 1,
        "aliases": '["CVE-2099-7"]',
        "severity": "MEDIUM",
        "fix_state": "fixed",
        "fixed_versions": '["6.0.3"]',
        "title": "a moderate flaw",
        "scanners": '["osv"]',
        "excepted": False,
    }
    with engine.begin() as conn:
        conn.execute(
            insert(tables.images),
            [
                {
                    "id": n,
                    "digest": d,
                    "governed": True,
                    "signed": True,
                    "tools": "{}",
                    "recorded": then,
                    "created": then,
                }
                for n, d in ((1, rescanned), (2, scanned))
            ],
        )
        conn.execute(
            insert(tables.packages).values(
                id=1, type="pypi", name="PyYAML", key="pyyaml", version="5.3.1", purl="pkg:pypi/pyyaml@5.3.1"
            )
        )
        conn.execute(
            insert(tables.image_packages),
            [
                {"image_id": n, "package_id": 1, "location": "/site/yaml", "layer": "", "licenses": "[]"}
                for n in (1, 2)
            ],
        )
        conn.execute(
            insert(tables.rescans).values(
                id=1,
                started=then,
                advisory_db="/old",
                advisory_db_digest="sha256:1",
                advisory_files=1,
                package_versions=1,
                new_findings=1,
            )
        )
        # an old rescan found PYSEC-2099-7 new in one image; the other's scan had named it by its CVE
        conn.execute(
            insert(tables.findings).values(
                image_id=1,
                advisory="PYSEC-2099-7",
                origin="rescan",
                advisory_db="/old",
                advisory_db_digest="sha256:1",
                found=then,
                **finding,
            )
        )
        conn.execute(
            insert(tables.findings).values(
                image_id=2, advisory="CVE-2099-7", origin="scan", found=then, **{**finding, "aliases": "[]"}
            )
        )
        if backend == "postgresql":  # the ids given above: the sequences carry on after them
            for table in ("images", "packages", "rescans"):
                conn.exec_driver_sql(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), 9)")
    engine.dispose()
    before = cli("trace", rescanned, "--format", "json", "--inventory", url)  # migrates to the newest
    assert before.code == 0, before.err
    assert [
        (f["id"], f["origin"], f["found"], f["advisory_db"], f["fixed_versions"])
        for f in json.loads(before.out)["finding_ids"]
    ] == [("PYSEC-2099-7", "rescan", then, "/old", ["6.0.3"])]
    other = cli("trace", scanned, "--inventory", url)
    assert "findings     1: 1 medium" in other.out and "CVE-2099-7 PyYAML 5.3.1 -> 6.0.3" in other.out
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM findings WHERE origin = 'rescan'").scalar() == 0
        assert conn.exec_driver_sql(
            "SELECT rescan_id, package_id, advisory, images FROM rescan_findings"
        ).all() == [(1, 1, "PYSEC-2099-7", 1)]
        assert conn.exec_driver_sql("SELECT rescan_id, image_id FROM rescan_images").all() == [(1, 1)]
        assert _schema_differences(conn) == []
    engine.dispose()
    folder = tmp_path / "advisories"
    folder.mkdir()
    (folder / "PYSEC-2099-7.yaml").write_text(PYYAML_ADVISORY)
    again = cli("rescan", "--advisories", str(folder), "--fail-on", "UNKNOWN", "--inventory", url)
    assert again.code == 0 and "0 new findings since the last rescan" in again.out, again.out


def test_a_database_a_newer_tfgov_ci_migrated_is_a_clear_error_and_left_as_it_is(
    recorded_build: RecordedBuild, tmp_path: Path, cli: Callable[..., CliResult]
) -> None:
    db = tmp_path / "newer.sqlite"
    assert cli("inventory", "import", str(recorded_build.out), "--inventory", str(db)).code == 0
    conn = sqlite3.connect(db)
    conn.execute("UPDATE alembic_version SET version_num = '9999'")  # as a newer tfgov-ci leaves it
    conn.commit()
    conn.close()
    done = cli("inventory", "list", "--inventory", str(db))
    assert done.code == 3 and "Traceback" not in done.err
    assert (
        "schema is at revision 9999, made by a newer tfgov-ci" in done.err and "upgrade tfgov-ci" in done.err
    )
    assert sqlite3.connect(db).execute("SELECT version_num FROM alembic_version").fetchone() == ("9999",)


def _schema_differences(connection: object) -> list[object]:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from tfgov_ci.inventory.tables import metadata

    return list(compare_metadata(MigrationContext.configure(connection), metadata))  # type: ignore[arg-type]


def test_postgres_stores_the_same_image_once_and_its_schema_is_the_declared_one(
    recorded_build: RecordedBuild, fresh_postgres: str, cli: Callable[..., CliResult]
) -> None:
    from sqlalchemy import create_engine

    for path in (recorded_build.out, recorded_build.out / "record.json"):
        done = cli("inventory", "import", str(path), "--inventory", fresh_postgres)
        assert done.code == 0, done.err
        assert PASSWORD not in done.out + done.err and "postgresql://***@127.0.0.1" in done.out
    engine = create_engine(fresh_postgres.replace("postgresql://", "postgresql+psycopg://"))
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM images").scalar() == 1
        assert conn.exec_driver_sql("SELECT count(*) FROM findings").scalar() == 1
        assert _schema_differences(conn) == []
    engine.dispose()
    # the fleet questions ask PostgreSQL as they ask SQLite
    traced = cli("trace", recorded_build.digest, "--format", "json", "--inventory", fresh_postgres)
    assert traced.code == 0 and json.loads(traced.out)["image"]["commit_sha"] == recorded_build.sha
    found = cli("which", "PyYAML>=6,<6.1", "--format", "json", "--inventory", fresh_postgres)
    assert [m["digest"] for m in json.loads(found.out)["matches"]] == [recorded_build.digest]
    assert (
        cli("inventory", "mark-deployed", recorded_build.digest, "prod", "--inventory", fresh_postgres).code
        == 0
    )
    listed = cli(
        "inventory", "list", "--decision", "allow", "--format", "json", "--inventory", fresh_postgres
    )
    assert json.loads(listed.out)["images"][0]["deployments"] == ["prod"]
    rescanned = cli(
        "rescan", "--advisories", str(recorded_build.repo / "advisories"), "--inventory", fresh_postgres
    )
    assert rescanned.code == 0 and "0 new findings" in rescanned.out  # the scan found PYSEC-2099-7 already


def test_two_processes_recording_into_postgres_at_once_lose_and_duplicate_nothing(
    recorded_build: RecordedBuild, fresh_postgres: str, tmp_path: Path
) -> None:
    """Two `inventory import` processes on a fresh database at the same moment (both migrate it),
    with overlapping images (6 to 11 in both) and package versions (every image shares most)."""
    from sqlalchemy import create_engine

    outs = {n: variant(recorded_build, tmp_path, n, pyyaml=f"6.0.{n % 3}") for n in range(10, 22)}
    first = [str(outs[n]) for n in range(10, 18)]
    second = [str(outs[n]) for n in (21, 20, 19, 18, 17, 16, 15, 14)]
    argv = [sys.executable, "-m", "tfgov_ci", "inventory", "import", "--inventory", fresh_postgres]
    procs = [
        subprocess.Popen([*argv, *paths], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for paths in (first, second)
    ]
    results = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], said(results)
    engine = create_engine(fresh_postgres.replace("postgresql://", "postgresql+psycopg://"))
    with engine.connect() as conn:
        scalar = lambda sql: conn.exec_driver_sql(sql).scalar()  # noqa: E731
        assert scalar("SELECT count(*) FROM images") == 12
        assert scalar("SELECT count(DISTINCT digest) FROM images") == 12
        per_image = len(json.loads((recorded_build.out / "sbom/sbom.cdx.json").read_text())["components"]) - 1
        assert scalar("SELECT count(*) FROM image_packages") == 12 * per_image
        # one row per distinct package version: the shared ones, plus PyYAML 6.0.0, 6.0.1, 6.0.2
        assert scalar("SELECT count(*) FROM packages") == per_image + 2
        assert (
            scalar(
                "SELECT count(*) FROM (SELECT type, name, version, purl FROM packages"
                " GROUP BY 1, 2, 3, 4 HAVING count(*) > 1) d"
            )
            == 0
        )
        assert scalar("SELECT count(*) FROM image_tags") == 12 * 3
    engine.dispose()


def test_the_record_stage_writes_the_build_into_the_inventory_its_variable_names_as_the_plan_says(
    recorded_build: RecordedBuild,
    fresh_postgres: str,
    tmp_path: Path,
    can_sign: object,  # the signing key in the environment: the record stage attests again
    cli: Callable[..., CliResult],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from sqlalchemy import create_engine

    repo = tmp_path / "hello"
    shutil.copytree(recorded_build.repo, repo, symlinks=True)  # the repository and its out directory
    monkeypatch.setenv("TFGOV_INVENTORY_URL", fresh_postgres)  # as CI hands over the masked variable
    plan = cli("plan", "record", cwd=repo)
    assert plan.code == 0, plan.err
    assert "record the build in the inventory postgresql://***@127.0.0.1:" in plan.out
    ran = cli("run", "record", cwd=repo)
    assert ran.code == 0, ran.err
    assert "in the inventory" in ran.out
    out = repo / ".tfgov" / "out"
    result = (out / "record" / "result.json").read_text()
    for text in (plan.out, plan.err, ran.out, ran.err, result, (out / "record.json").read_text()):
        assert PASSWORD not in text
    assert json.loads(result)["data"]["inventory"].startswith("postgresql://***@127.0.0.1:")
    engine = create_engine(fresh_postgres.replace("postgresql://", "postgresql+psycopg://"))
    with engine.connect() as conn:
        rows = conn.exec_driver_sql("SELECT digest, commit_sha, decision FROM images").fetchall()
        assert [tuple(r) for r in rows] == [(recorded_build.digest, recorded_build.sha, "allow")]
        attested = conn.exec_driver_sql(
            "SELECT document_digest FROM attestations WHERE predicate_type LIKE '%%/record/v1'"
        ).scalar()
        assert attested == json.loads(result)["data"]["digest"]  # the bytes the stage attested
        assert conn.exec_driver_sql("SELECT count(*) FROM image_packages").scalar() > 30
    engine.dispose()
    # An unreachable inventory fails the stage (exit 3) with the URL masked: a fleet that silently
    # misses builds would be worse than a red job.
    monkeypatch.setenv("TFGOV_INVENTORY_URL", f"postgresql://fleet:{PASSWORD}@127.0.0.1:1/inventory")
    broken = cli("run", "record", cwd=repo)
    assert broken.code == 3 and "postgresql://***@127.0.0.1:1/inventory" in broken.err
    assert PASSWORD not in broken.out + broken.err + (out / "record" / "result.json").read_text()


def test_an_import_whose_reader_went_away_stores_everything_and_a_stopped_one_still_warns(
    recorded_build: RecordedBuild, tmp_path: Path, cli: Callable[..., CliResult]
) -> None:
    """`inventory import ... | head -1`: stdout closed before the first line (a pipe whose reading
    end is gone) does not stop the import; and an import a bad record stops has still said the
    warnings of the images it stored before it."""
    outs = [str(variant(recorded_build, tmp_path, n)) for n in (60, 61, 62)]
    db = tmp_path / "inventory.sqlite"
    read_end, write_end = os.pipe()
    os.close(read_end)
    argv = [sys.executable, "-m", "tfgov_ci", "inventory", "import", "--inventory", str(db), *outs]
    done = subprocess.run(argv, stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=120)
    os.close(write_end)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr
    assert counts(db)["images"] == 3
    alone = tmp_path / "records" / "record.json"
    alone.parent.mkdir()
    shutil.copyfile(recorded_build.out / "record.json", alone)
    bad = variant(recorded_build, tmp_path, 63)
    (bad / "record.json").write_text("{")
    stopped = cli("inventory", "import", str(alone), str(bad), "--inventory", str(tmp_path / "b.sqlite"))
    assert stopped.code == 2 and "note: the image before it is stored, whole (of 2 paths)" in stopped.err
    assert f"warning: {alone}: no SBOM of this build beside it: its packages are not recorded" in stopped.err


def test_a_record_on_its_own_is_recorded_without_packages_and_says_so(
    recorded_build: RecordedBuild, tmp_path: Path, cli: Callable[..., CliResult]
) -> None:
    alone = tmp_path / "records" / "record.json"
    alone.parent.mkdir()
    shutil.copyfile(recorded_build.out / "record.json", alone)
    db = tmp_path / "inventory.sqlite"
    done = cli("inventory", "import", str(alone), "--inventory", str(db))
    assert done.code == 0, done.err
    assert f"warning: {alone}: no SBOM of this build beside it: its packages are not recorded" in done.err
    row = (
        sqlite3.connect(db).execute("SELECT digest, commit_sha, base_digest, decision FROM images").fetchone()
    )
    assert row == (recorded_build.digest, recorded_build.sha, None, None)  # what only the out directory says


def test_a_broken_sbom_or_findings_file_beside_a_record_is_rejected_naming_it(
    recorded_build: RecordedBuild, tmp_path: Path, cli: Callable[..., CliResult]
) -> None:
    db = tmp_path / "inventory.sqlite"
    out = variant(recorded_build, tmp_path, 5)
    (out / "sbom/sbom.cdx.json").write_text('{"spdxVersion": "SPDX-2.3"}')
    done = cli("inventory", "import", str(out), "--inventory", str(db))
    assert done.code == 2 and f"{out / 'sbom/sbom.cdx.json'}: not a CycloneDX SBOM" in done.err
    out = variant(recorded_build, tmp_path, 6)
    (out / "scan/findings.json").write_text('{"schema_version": 1}')
    done = cli("inventory", "import", str(out), "--inventory", str(db))
    assert done.code == 2 and f"{out / 'scan/findings.json'}: not a tfgov-ci findings file" in done.err
    assert counts(db)["images"] == 0


def test_an_exception_the_policy_used_is_stored_and_marks_its_finding_excepted(
    recorded_build: RecordedBuild, tmp_path: Path, cli: Callable[..., CliResult]
) -> None:
    """The decision of a run whose governed exception let PYSEC-2099-7 pass (written into a copy
    of the real decision: the real run needs no exception for a MEDIUM finding)."""
    out = variant(recorded_build, tmp_path, 7)
    decision = json.loads((out / "policy/decision.json").read_text())
    decision["exceptions"]["used"] = [
        {"id": "CVE-2099-7", "package": "pyyaml", "scope": "*", "reason": "not reachable: no untrusted YAML",
         "owner": "ml-platform", "approved_by": "security", "expires": "2099-01-01", "where": "x:1"}
    ]  # fmt: skip
    (out / "policy/decision.json").write_text(json.dumps(decision))
    db = tmp_path / "inventory.sqlite"
    assert cli("inventory", "import", str(out), "--inventory", str(db)).code == 0
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT advisory, excepted FROM findings").fetchall() == [("PYSEC-2099-7", 1)]
    assert conn.execute("SELECT finding, package, owner, expires FROM exceptions_used").fetchall() == [
        ("CVE-2099-7", "pyyaml", "ml-platform", "2099-01-01")
    ]
    conn.close()
    traced = cli("trace", "sha256:" + f"{7:064x}", "--inventory", str(db))
    assert "findings     0: none; 1 excepted" in traced.out
    assert "exception    CVE-2099-7 pyyaml (owner ml-platform, expires 2099-01-01)" in traced.out


def test_the_default_inventory_is_the_per_user_sqlite_file(
    recorded_build: RecordedBuild,
    tmp_path: Path,
    cli: Callable[..., CliResult],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    done = cli("inventory", "import", str(recorded_build.out))
    assert done.code == 0, done.err
    default = tmp_path / "data" / "tfgov-ci" / "inventory.sqlite"
    assert f"inventory: sqlite:///{default}" in done.out and counts(default)["images"] == 1
    monkeypatch.setenv("TFGOV_INVENTORY_URL", str(tmp_path / "elsewhere.sqlite"))
    assert cli("inventory", "import", str(recorded_build.out)).code == 0
    assert counts(tmp_path / "elsewhere.sqlite")["images"] == 1


def test_two_processes_recording_into_one_sqlite_file_at_once_lose_nothing(
    recorded_build: RecordedBuild, tmp_path: Path
) -> None:
    outs = [variant(recorded_build, tmp_path, n) for n in range(30, 38)]
    db = tmp_path / "inventory.sqlite"
    argv = [sys.executable, "-m", "tfgov_ci", "inventory", "import", "--inventory", str(db)]
    halves = ([str(o) for o in outs[:6]], [str(o) for o in outs[2:]])
    procs = [subprocess.Popen([*argv, *paths], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for paths in halves]  # fmt: skip
    results = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], said(results)
    found = counts(db)
    assert found["images"] == 8 and found["image_packages"] == 8 * counts_per_image(recorded_build)


def _connect_when_told(path: str, go: Any, answers: Any) -> None:
    from tfgov_ci.inventory.location import parse
    from tfgov_ci.inventory.store import connectable

    engine = connectable(parse(path))
    go.wait()
    try:
        with engine.connect() as conn:
            answers.put(conn.exec_driver_sql("PRAGMA journal_mode").scalar())
    except Exception as exc:  # the answer the parent checks
        answers.put(f"{type(exc).__name__}: {exc}"[:200])


def test_processes_connecting_to_one_fresh_sqlite_file_at_the_same_instant_all_connect(
    tmp_path: Path,
) -> None:
    """Switching a new file into WAL takes a lock SQLite does not wait for. Before the store tried
    a busy switch again, two processes released at once found "database is locked" in 71 of 100
    rounds here, so thirty rounds all but always catch it; each round is a few tens of ms."""
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    for n in range(30):
        path = str(tmp_path / f"inventory-{n}.sqlite")
        go, answers = ctx.Event(), ctx.Queue()
        procs = [ctx.Process(target=_connect_when_told, args=(path, go, answers)) for _ in range(2)]
        for proc in procs:
            proc.start()
        go.set()
        found = [answers.get(timeout=120) for _ in procs]
        for proc in procs:
            proc.join(timeout=60)
        assert found == ["wal", "wal"], f"round {n}: {found}"


def said(results: list[tuple[str, str]]) -> str:
    """Each process's whole stderr, untruncated (pytest shortens a long repr in the middle)."""
    return "\n".join(f"process {n} said:\n{err}" for n, (_out, err) in enumerate(results))


def counts_per_image(build: RecordedBuild) -> int:
    return sum(
        1 for c in json.loads((build.out / "sbom/sbom.cdx.json").read_text())["components"] if c.get("purl")
    )


def _table_counts(url: str) -> dict[str, int]:
    from sqlalchemy import create_engine

    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.connect() as conn:
        found = {
            table: int(conn.exec_driver_sql(f"SELECT count(*) FROM {table}").scalar_one())
            for table in (
                "images",
                "image_tags",
                "image_packages",
                "findings",
                "attestations",
                "image_builds",
            )
        }
    engine.dispose()
    return found


_REFUSE = {
    "sqlite": [
        "CREATE TRIGGER refuse BEFORE INSERT ON image_packages"
        " WHEN (SELECT digest FROM images WHERE id = NEW.image_id) = '{digest}'"
        " BEGIN SELECT RAISE(ABORT, 'refused by a trigger'); END"
    ],
    "postgresql": [
        "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
        " IF (SELECT digest FROM images WHERE id = NEW.image_id) = '{digest}'"
        " THEN RAISE EXCEPTION 'refused by a trigger'; END IF; RETURN NEW; END $$",
        "CREATE TRIGGER refuse BEFORE INSERT ON image_packages FOR EACH ROW EXECUTE FUNCTION refuse()",
    ],
}


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_an_image_the_database_refuses_in_a_batch_is_not_stored_at_all_and_those_before_it_are(
    backend: str,
    recorded_build: RecordedBuild,
    tmp_path: Path,
    cli: Callable[..., CliResult],
    request: pytest.FixtureRequest,
) -> None:
    """Five images in one batch; the database refuses the third one's package links (a trigger:
    after its image row and tags went in). The batch is stored again image by image: the two
    before it whole, it not at all, and the import stops there (exit 3), naming it."""
    from sqlalchemy import create_engine

    from tfgov_ci.inventory.store import open_store

    given = (
        request.getfixturevalue("fresh_postgres") if backend == "postgresql" else str(tmp_path / "i.sqlite")
    )
    url = f"sqlite:///{given}" if backend == "sqlite" else given
    outs = [variant(recorded_build, tmp_path, n) for n in range(40, 45)]
    open_store(given).close()  # made (migrated) first, so that the trigger has its table
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as conn:
        for sql in _REFUSE[backend]:
            conn.exec_driver_sql(sql.replace("{digest}", "sha256:" + f"{42:064x}"))
    done = cli("inventory", "import", *map(str, outs), "--inventory", given)
    assert done.code == 3, done.err
    assert f"the inventory database failed on {outs[2] / 'record.json'} (2 of 5 images stored" in done.err
    assert "refused by a trigger" in done.err and "Traceback" not in done.err
    stored = _table_counts(url)
    assert stored["images"] == 2 and stored["image_tags"] == 2 * 3 and stored["image_builds"] == 2
    assert stored["image_packages"] == 2 * counts_per_image(recorded_build) and stored["findings"] == 2
    with engine.connect() as conn:
        digests = {row[0] for row in conn.exec_driver_sql("SELECT digest FROM images")}
    engine.dispose()
    assert digests == {"sha256:" + f"{n:064x}" for n in (40, 41)}


def test_a_large_import_read_by_worker_processes_stores_the_same_and_still_rejects_a_bad_record_whole(
    recorded_build: RecordedBuild,
    tmp_path: Path,
    cli: Callable[..., CliResult],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The reading shared out among processes (as an import of many paths is) stores what one
    process does; a record that breaks its schema among them is still named (file and key, as the
    reading process found it) and stops the import there: the images before it are stored, whole,
    it and those after it are not, and the note says so."""
    from tfgov_ci.inventory import ingest

    outs = [variant(recorded_build, tmp_path, n) for n in range(50, 56)]
    alone, pooled = tmp_path / "alone.sqlite", tmp_path / "pooled.sqlite"
    assert cli("inventory", "import", *map(str, outs), "--inventory", str(alone)).code == 0
    monkeypatch.setattr(ingest, "POOL_FROM", 2)
    monkeypatch.setattr(ingest.tools, "cores", lambda: 2)
    done = cli("inventory", "import", *map(str, outs), "--inventory", str(pooled))
    assert done.code == 0, done.err
    assert done.out.count("recorded ") == len(outs)
    assert _table_counts(f"sqlite:///{pooled}") == _table_counts(f"sqlite:///{alone}")
    record = json.loads((outs[3] / "record.json").read_text())
    record["commit"]["sha"] = "not-a-sha"
    (outs[3] / "record.json").write_text(json.dumps(record))
    fresh = tmp_path / "fresh.sqlite"
    done = cli("inventory", "import", *map(str, outs), "--inventory", str(fresh))
    assert done.code == 2
    assert f"{outs[3] / 'record.json'}: commit.sha: 'not-a-sha' does not match" in done.err
    assert "note: the 3 images before it are stored, whole (of 6 paths)" in done.err
    assert "Traceback" not in done.err
    assert [line.split(" from ")[-1] for line in done.out.splitlines()] == [
        str(o / "record.json") for o in outs[:3]
    ]
    stored = _table_counts(f"sqlite:///{fresh}")
    alone_counts = _table_counts(f"sqlite:///{alone}")
    assert stored["images"] == 3 and stored["image_packages"] == alone_counts["image_packages"] // 2


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_rows_written_straight_to_the_driver_are_stored_as_given_whatever_their_text_holds(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """What an import and a rescan write (on PostgreSQL by COPY): tabs, newlines, backslashes, a
    NULL, a float and a boolean come back as they went in."""
    from sqlalchemy import insert, select

    from tfgov_ci.inventory import tables
    from tfgov_ci.inventory.ingest import FINDING_COLUMNS, insert_tuples
    from tfgov_ci.inventory.store import open_store

    url = request.getfixturevalue("fresh_postgres") if backend == "postgresql" else str(tmp_path / "i.sqlite")
    with open_store(url) as store:
        with store.writing() as conn:
            ids = [
                conn.execute(
                    insert(tables.images).values(
                        digest=f"sha256:{n:064x}",
                        governed=False,
                        signed=False,
                        recorded="2026-12-01T00:00:00.000Z",
                    )
                ).inserted_primary_key[0]
                for n in range(3)
            ]
            package = conn.execute(
                insert(tables.packages).values(type="pypi", name="x", key="x", version="1", purl="")
            ).inserted_primary_key[0]
            title = "a\ttab, a\nnewline, a \\ backslash, \\N and a\r\nCRLF"
            rest = (package, "CVE-1", '["GHSA-1"]', "HIGH", "fixed", '["2"]', 7.5, title, "[]", "rescan",
                    "/db", None, "2026-12-01T00:00:00.000Z", True)  # fmt: skip
            insert_tuples(conn, tables.findings, [(image_id, *rest) for image_id in ids], FINDING_COLUMNS)
        with store.reading() as conn:
            f = tables.findings
            rows = conn.execute(select(*(f.c[c] for c in FINDING_COLUMNS)).order_by(f.c.image_id)).all()
    assert [tuple(r) for r in rows] == [(image_id, *rest) for image_id in ids]
