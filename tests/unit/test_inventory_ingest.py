"""How an import finds and stores package rows and links, on a real SQLite file: the ids kept across
an import's images, the indexed look-up by identity, the links written through the driver."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import func, select

from tfgov_ci.inventory import tables
from tfgov_ci.inventory.ingest import PackageIds, insert_tuples, package_ids
from tfgov_ci.inventory.sbom import Package, packages_of
from tfgov_ci.inventory.store import InventoryError, open_store
from tfgov_ci.stages.scan.advisories import source_name

PYYAML = Package("pypi", "PyYAML", "6.0.2", "pkg:pypi/pyyaml@6.0.2")
NUMPY = Package("pypi", "numpy", "1.26.4", "pkg:pypi/numpy@1.26.4")
LIBSSL = Package(
    "deb",
    "libssl3",
    "3.0.19-1~deb12u2",
    "pkg:deb/debian/libssl3@3.0.19-1~deb12u2?upstream=openssl",
    "openssl",
)


def _stored(store: object) -> dict[tuple[str, str, str, str], int]:
    p = tables.packages
    with store.reading() as conn:  # type: ignore[attr-defined]
        return {(r.type, r.name, r.version, r.purl): r.id for r in conn.execute(select(p))}


def test_package_ids_are_the_stored_rows_and_an_import_asks_for_a_known_one_only_once(tmp_path: Path) -> None:
    with open_store(f"sqlite:///{tmp_path}/inventory.sqlite") as store:
        cache = PackageIds()
        with store.writing() as conn:
            first = package_ids(conn, [PYYAML, NUMPY, PYYAML], cache)
        cache.keep()
        assert first == {k: v for k, v in _stored(store).items()}
        assert cache.committed == first and not cache.pending
        with store.writing() as conn:
            again = package_ids(conn, [PYYAML, LIBSSL], cache)
            assert set(cache.pending) == {LIBSSL.identity}  # the known one was not asked for
        cache.keep()
        assert again == {k: v for k, v in _stored(store).items() if k in (PYYAML.identity, LIBSSL.identity)}


def test_ids_learnt_in_a_transaction_that_rolled_back_are_not_kept(tmp_path: Path) -> None:
    with open_store(f"sqlite:///{tmp_path}/inventory.sqlite") as store:
        cache = PackageIds()
        with pytest.raises(InventoryError), store.writing() as conn:
            package_ids(conn, [NUMPY], cache)
            conn.exec_driver_sql("SELECT * FROM no_such_table")  # the image fails half-way
        assert not cache.committed and _stored(store) == {}


def test_the_look_up_keeps_exact_identities_of_the_same_name_and_version(tmp_path: Path) -> None:
    twins = [
        Package("pypi", "numpy", "1.26.4", "pkg:pypi/numpy@1.26.4"),
        Package("pypi", "numpy", "1.26.4", ""),  # the same version without a purl
        Package("generic", "numpy", "1.26.4", "pkg:generic/numpy@1.26.4"),
        Package("pypi", "numpy", "2.0.0", "pkg:pypi/numpy@2.0.0"),
    ]
    with open_store(f"sqlite:///{tmp_path}/inventory.sqlite") as store:
        with store.writing() as conn:
            package_ids(conn, twins[1:], None)
        with store.writing() as conn:
            ids = package_ids(conn, twins, None)  # three stored already, one new
        assert ids == _stored(store) and len(set(ids.values())) == 4


def test_rows_given_as_tuples_are_inserted_in_the_order_of_their_columns(tmp_path: Path) -> None:
    with open_store(f"sqlite:///{tmp_path}/inventory.sqlite") as store:
        with store.writing() as conn:
            insert_tuples(
                conn,
                tables.packages,
                [("pypi", "six", "six", "1.17.0", "pkg:pypi/six@1.17.0")],
                ["type", "name", "key", "version", "purl"],
            )
            insert_tuples(conn, tables.packages, [])  # nothing to insert: no statement
        with store.reading() as conn:
            row = conn.execute(select(tables.packages)).mappings().one()
            assert conn.execute(select(func.count()).select_from(tables.packages)).scalar_one() == 1
        assert (row["type"], row["name"], row["key"], row["version"], row["source_name"]) == (
            "pypi",
            "six",
            "six",
            "1.17.0",
            None,
        )


def test_an_sbom_component_keeps_its_first_path_and_layer_and_its_licences_once() -> None:
    doc = {
        "bomFormat": "CycloneDX",
        "components": [
            {
                "type": "library",
                "name": "libssl3",
                "version": "3.0.19-1~deb12u2",
                "purl": LIBSSL.purl,
                "licenses": [{"license": {"id": "Apache-2.0"}}, {"license": {"id": "Apache-2.0"}}, "bad"],
                "properties": [
                    "not a property",
                    {"name": "syft:location:0:layerID", "value": "sha256:aa"},
                    {"name": "syft:location:0:path", "value": "/usr/share/doc/libssl3/copyright"},
                    {"name": "syft:location:0:path", "value": "/second"},
                    {"name": "syft:location:1:path", "value": "/var/lib/dpkg/status"},
                ],
            },
            {"type": "library", "name": "no-version"},
        ],
    }
    (package,) = packages_of(json.loads(json.dumps(doc)), "sbom.cdx.json")
    assert (package.location, package.layer, package.licenses) == (
        "/usr/share/doc/libssl3/copyright",
        "sha256:aa",
        ("Apache-2.0",),
    )
    assert package.source_name == "openssl" and package.identity == LIBSSL.identity


def test_an_sbom_orjson_refuses_is_read_by_json_as_before_and_a_broken_one_names_line_and_column(
    tmp_path: Path,
) -> None:
    """The SBOM goes to orjson first; what orjson refuses and ``json`` reads (a NaN, a lone
    surrogate) still imports, with the same packages, and the file's digest is of its bytes."""
    import hashlib

    from tfgov_ci.findings import ReportError
    from tfgov_ci.inventory.sbom import read_packages

    component = '{"type": "library", "name": "pyyaml", "version": "6.0.2", "purl": "pkg:pypi/pyyaml@6.0.2"}'
    odd = '{"type": "library", "name": "x\\ud800", "version": "1", "cvss": NaN}'
    path = tmp_path / "sbom.cdx.json"
    path.write_text(f'{{"bomFormat": "CycloneDX", "components": [{component}, {odd}]}}')
    packages, digest = read_packages(path)
    assert [(p.name, p.version) for p in packages] == [("pyyaml", "6.0.2"), ("x\ud800", "1")]
    assert digest == "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
    path.write_text('{"bomFormat": "CycloneDX",\n "components": [')
    with pytest.raises(ReportError, match=r"sbom\.cdx\.json:2:17: not valid JSON"):
        read_packages(path)


@pytest.mark.parametrize(
    ("purl", "source"),
    [
        ("pkg:deb/debian/libc6@2.36-9?arch=amd64&upstream=glibc", "glibc"),
        ("pkg:deb/debian/libbz2-1.0@1.0.8-5?upstream=bzip2%401.0.8-5", "bzip2"),
        ("pkg:deb/debian/zlib1g@1:1.2.13.dfsg-1?arch=amd64&distro=debian-12", None),
        ("pkg:deb/debian/adduser@3.134", None),
    ],
)
def test_a_debian_purl_names_its_source_only_through_its_upstream_qualifier(
    purl: str, source: str | None
) -> None:
    assert source_name(purl) == source
