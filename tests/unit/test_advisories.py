"""The offline OSV matcher against the real PyPA advisory database, Debian version semantics,
bad advisories, and its cache."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest
from packaging.version import InvalidVersion, Version

from tests.helpers import FIXTURES
from tfgov_ci.stages.scan import advisories
from tfgov_ci.stages.scan.advisories import Advisory, Database, Package


@pytest.fixture(scope="module")
def pypa(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("pypa")
    with tarfile.open(FIXTURES / "osv" / "pypa-advisory-database.tar.gz") as archive:
        archive.extractall(folder, filter="data")
    return folder / "pypa-advisory-database" / "vulns"


@pytest.fixture(scope="module")
def db(pypa: Path, tmp_path_factory: pytest.TempPathFactory) -> Database:
    return Database.open(pypa, tmp_path_factory.mktemp("cache"))


def _ranges_only(advisory: Advisory) -> Advisory:
    return Advisory(
        advisory.id,
        advisory.aliases,
        advisory.ecosystem,
        advisory.package,
        advisory.ranges,
        frozenset(),
        advisory.severity,
        advisory.cvss_score,
        advisory.summary,
        advisory.file,
    )


def test_ranges_agree_with_the_advisories_own_version_lists(db: Database) -> None:
    """Each PYSEC entry lists the versions it affects: an answer independent of the ranges.
    The matcher, with the lists taken away, must find the same versions affected; the few it
    does not are disagreements inside the advisories themselves (listed here, each checked)."""
    checked, disagree = 0, set()
    for group in db.by_package.values():
        for advisory in group:
            if not advisory.ranges:
                continue
            bare = _ranges_only(advisory)
            for version in advisory.versions:
                try:
                    Version(version)
                except InvalidVersion:
                    continue  # not PEP 440: only the explicit list can say (and does)
                checked += 1
                if not bare.affects(version):
                    disagree.add((advisory.id, version))
    assert checked > 139_000  # withdrawn advisories left out
    # PYSEC-2023-61: pre-releases listed, though the range starts at the final release;
    # PYSEC-2023-177: the "fixed" version itself listed; PYSEC-2021-114: overlapping ranges.
    assert disagree == {
        ("PYSEC-2023-61", v) for v in ("3.2a1", "3.2b1", "3.2rc1", "4.2a1", "4.2b1", "4.2rc1")
    } | {("PYSEC-2023-177", "23.9.0"), ("PYSEC-2023-177", "23.9.0.post1"), ("PYSEC-2021-114", "2.11.6")}


def test_tensorflow_and_numpy_are_matched_with_fixes_and_aliases(db: Database) -> None:
    found = db.match(
        [
            Package("tensorflow", "2.4.0", "pypi", "pkg:pypi/tensorflow@2.4.0"),
            Package("numpy", "1.16.0", "pypi", "pkg:pypi/numpy@1.16.0"),
            Package("numpy", "1.26.4", "pypi", "pkg:pypi/numpy@1.26.4"),
        ]
    )
    tensorflow = [f for f in found if f.package == "tensorflow"]
    assert len(tensorflow) > 100
    numpy_old = {f.id for f in found if f.package == "numpy" and f.installed_version == "1.16.0"}
    assert "PYSEC-2019-108" in numpy_old
    assert not [f for f in found if f.installed_version == "1.26.4"]
    pickle = next(f for f in found if f.id == "PYSEC-2019-108")
    assert pickle.aliases == ("CVE-2019-6446",) and pickle.fixed_versions == ("1.16.1",)
    assert pickle.fix_state == "fixed" and pickle.scanners == ("osv",)


def test_bad_ranges_are_skipped_with_a_warning_naming_the_file(db: Database, pypa: Path) -> None:
    assert len(db.warnings) == 2
    assert any(str(pypa / "steam" / "PYSEC-2019-125.yaml") in w and "2019-09-12" in w for w in db.warnings)
    assert db.files > 2600


def test_debian_versions_compare_as_dpkg_does_and_match_the_source_package(tmp_path: Path) -> None:
    folder = tmp_path / "advisories"
    folder.mkdir()
    (folder / "DEBIAN-CVE-2099-0001.json").write_text(
        json.dumps(
            {
                "id": "DEBIAN-CVE-2099-0001",
                "aliases": ["CVE-2099-0001"],
                "affected": [
                    {
                        "package": {"name": "glibc", "ecosystem": "Debian:12"},
                        "ranges": [
                            {
                                "type": "ECOSYSTEM",
                                "events": [{"introduced": "0"}, {"fixed": "2.36-9+deb12u10"}],
                            }
                        ],
                    }
                ],
                "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}],
            }
        )
    )
    db = Database.open(folder, None)

    def libc(version: str) -> Package:
        purl = f"pkg:deb/debian/libc6@{version}?arch=amd64&upstream=glibc&distro=debian-12"
        return Package("libc6", version, "deb", purl, source_name="glibc")

    # 2.36-9+deb12u9 < 2.36-9+deb12u10 for dpkg (a string sort says otherwise)
    found = db.match([libc("2.36-9+deb12u9"), libc("2.36-9+deb12u10"), libc("2.36-9+deb12u14")])
    assert [(f.installed_version, f.severity, f.cvss_score) for f in found] == [
        ("2.36-9+deb12u9", "CRITICAL", 9.8)
    ]
    assert found[0].package == "libc6" and found[0].source_package == "glibc"


def test_sbom_packages_read_the_debian_source_from_the_purl() -> None:
    sbom = {
        "components": [
            {
                "name": "libc6",
                "version": "2.36-9",
                "purl": "pkg:deb/debian/libc6@2.36-9?arch=amd64&upstream=glibc&distro=debian-12",
            },
            {
                "name": "PyYAML",
                "version": "6.0.2",
                "purl": "pkg:pypi/pyyaml@6.0.2",
                "properties": [
                    {
                        "name": "syft:location:0:path",
                        "value": "/usr/lib/python3/dist-packages/PyYAML.dist-info/METADATA",
                    }
                ],
            },
            {"name": "go-thing", "version": "1", "purl": "pkg:golang/x@1"},
            {  # a source whose version differs from the binary's: syft writes NAME@VERSION
                "name": "libbz2-1.0",
                "version": "1.0.8-5+b1",
                "purl": "pkg:deb/debian/libbz2-1.0@1.0.8-5%2Bb1"
                "?arch=amd64&upstream=bzip2%401.0.8-5&distro=debian-12",
            },
        ]
    }
    packages = advisories.sbom_packages(sbom)
    assert [(p.name, p.type, p.advisory_name, p.path) for p in packages] == [
        ("libc6", "deb", "glibc", None),
        ("PyYAML", "pypi", "pyyaml", "/usr/lib/python3/dist-packages/PyYAML.dist-info/METADATA"),
        ("libbz2-1.0", "deb", "bzip2", None),
    ]


@pytest.mark.parametrize(
    ("vector", "score"),
    [
        ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", 9.8),
        ("CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:C/C:L/I:L/A:N", 6.1),
        ("CVSS:3.0/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:N/A:N", 7.5),
        ("CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:H", 7.8),
        ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H", 10.0),
        ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:N", 0.0),
        ("AV:N/AC:L/Au:N/C:P/I:N/A:N", None),
    ],
)
def test_cvss3_base_scores_match_nvd(vector: str, score: float | None) -> None:
    assert advisories.cvss3_base_score(vector) == score


def test_the_parsed_folder_is_cached_and_a_damaged_cache_is_rebuilt(tmp_path: Path) -> None:
    folder = tmp_path / "advisories"
    (folder / "six").mkdir(parents=True)
    (folder / "six" / "PYSEC-2099-1.yaml").write_text(
        "id: PYSEC-2099-1\naffected:\n- package: {name: six, ecosystem: PyPI}\n"
        "  ranges:\n  - type: ECOSYSTEM\n    events:\n    - introduced: '0'\n    - fixed: '1.17.0'\n"
    )
    cache = tmp_path / "cache"
    first = Database.open(folder, cache)
    index = next((cache / "osv").glob("*.json"))
    assert Database.open(folder, cache).by_package == first.by_package
    index.write_text("{not json")
    again = Database.open(folder, cache)
    assert again.by_package == first.by_package
    assert json.loads(index.read_text())["version"] == advisories.INDEX_VERSION
    # a changed advisory is a new fingerprint: never the old answer
    (folder / "six" / "PYSEC-2099-1.yaml").write_text(
        (folder / "six" / "PYSEC-2099-1.yaml").read_text().replace("1.17.0", "1.18.0")
    )
    changed = Database.open(folder, cache)
    assert changed.by_package[("PyPI", "six")][0].fixed_versions() == ("1.18.0",)


def test_a_missing_or_empty_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(advisories.AdvisoryError, match="no such advisory folder"):
        Database.open(tmp_path / "nowhere", None)
    with pytest.raises(advisories.AdvisoryError, match="no OSV advisories"):
        Database.open(tmp_path, None)


def test_an_interval_that_starts_where_another_is_fixed_still_counts_and_withdrawn_ones_do_not(
    db: Database,
) -> None:
    # PYSEC-2022-42972: [0.12.2, 0.13.0) then [0.13.0, 0.14.0rc1), events given out of order
    iotdb = [
        Package("apache-iotdb", v, "pypi", f"pkg:pypi/apache-iotdb@{v}") for v in ("0.13.0.post1", "0.14.0")
    ]
    assert [f.installed_version for f in db.match(iotdb) if f.id == "PYSEC-2022-42972"] == ["0.13.0.post1"]
    # PYSEC-2022-15 (loguru) was withdrawn by its publisher
    assert all(a.id != "PYSEC-2022-15" for a in db.by_package.get(("PyPI", "loguru"), ()))
