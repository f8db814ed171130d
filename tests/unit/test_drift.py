"""The drift check's reading of an SBOM: which Python packages the image holds as installed."""

from __future__ import annotations

from tfgov_ci.stages.sbom.drift import package_findings, pypi_packages
from tfgov_ci.wheels import Locked


def _component(name: str, version: str, path: str) -> dict[str, object]:
    return {
        "name": name,
        "version": version,
        "purl": f"pkg:pypi/{name.lower()}@{version}",
        "properties": [{"name": "syft:location:0:path", "value": path}],
    }


def test_copies_a_package_vendors_in_its_own_tree_are_not_packages_of_their_own() -> None:
    """syft finds setuptools' vendored dist-infos (setuptools/_vendor/zipp-*.dist-info): they come
    with setuptools, which the lock holds; a real install of the same name still counts."""
    site = "/usr/local/lib/python3.11/dist-packages"
    sbom = {
        "components": [
            _component("setuptools", "80.9.0", f"{site}/setuptools-80.9.0.dist-info/METADATA"),
            _component("zipp", "3.23.0", f"{site}/setuptools/_vendor/zipp-3.23.0.dist-info/METADATA"),
            _component("wheel", "0.46.3", f"{site}/setuptools/_vendor/wheel-0.46.3.dist-info/METADATA"),
            _component("wheel", "0.48.0", f"{site}/wheel-0.48.0.dist-info/METADATA"),
        ]
    }
    assert pypi_packages(sbom) == {"setuptools": "80.9.0", "wheel": "0.48.0"}
    locked = [Locked("setuptools", "80.9.0", (), 1), Locked("wheel", "0.48.0", (), 2)]
    assert package_findings(pypi_packages(sbom), locked, {}) == []
