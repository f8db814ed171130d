"""Every package of a CycloneDX SBOM (syft's), as the inventory stores it.

The scan stage's :func:`~tfgov_ci.stages.scan.advisories.sbom_packages` keeps only what advisories
can name (PyPI and Debian); the fleet wants every package with a purl (``which log4j-core`` asks
about Java), with its licences and where it was found, so it reads the components itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tfgov_ci.findings import ReportError, package_key, purl_type, read_json
from tfgov_ci.stages.scan.advisories import source_name


@dataclass(frozen=True)
class Package:
    type: str  # the purl type: pypi, deb, maven, generic, ...
    name: str
    version: str
    purl: str  # '' when there is none
    source_name: str | None = None  # a Debian binary package's source (the purl's upstream)
    licenses: tuple[str, ...] = ()
    location: str = ""  # the first path the SBOM found it at
    layer: str = ""  # the digest of the layer that path is in

    @property
    def identity(self) -> tuple[str, str, str, str]:
        """What makes a package version one row of the store, whatever image holds it."""
        return (self.type, self.name, self.version, self.purl)

    @property
    def key(self) -> str:
        """The name as its ecosystem compares names (PEP 503 for Python)."""
        return package_key(self.type, self.name)


def _licenses(component: Mapping[str, Any]) -> tuple[str, ...]:
    out = []
    for entry in component.get("licenses") or ():
        if not isinstance(entry, dict):
            continue
        license_ = entry.get("license") or {}
        value = entry.get("expression") or license_.get("id") or license_.get("name")
        if isinstance(value, str) and value:
            out.append(value)
    return tuple(dict.fromkeys(out))


_PATH, _LAYER = "syft:location:0:path", "syft:location:0:layerID"


def _location(component: Mapping[str, Any]) -> tuple[str, str]:
    """The first path syft found the package at, and its layer (one pass over the properties)."""
    path = layer = ""
    for prop in component.get("properties") or ():
        if not isinstance(prop, dict):
            continue
        name = prop.get("name")
        if name in (_PATH, _LAYER):
            value = prop.get("value")
            if isinstance(value, str):
                if name == _PATH and not path:
                    path = value
                elif name == _LAYER and not layer:
                    layer = value
    return path, layer


def packages_of(doc: Any, source: str) -> list[Package]:
    """The components with a name and a version; the purl's type is the package's type."""
    if not isinstance(doc, dict) or doc.get("bomFormat") != "CycloneDX":
        raise ReportError(
            f"{source}: not a CycloneDX SBOM (no bomFormat: CycloneDX)",
            "the sbom stage writes <out>/sbom/sbom.cdx.json: import the out directory as it left it",
        )
    out = []
    for component in doc.get("components") or ():
        if not isinstance(component, dict) or component.get("type") == "operating-system":
            continue
        name, version = component.get("name"), component.get("version")
        if not (isinstance(name, str) and name and isinstance(version, str) and version):
            continue
        purl = str(component.get("purl") or "")
        type_ = purl_type(purl) if purl else "unknown"
        location, layer = _location(component)
        out.append(
            Package(
                type_,
                name,
                version,
                purl,
                source_name(purl) if type_ == "deb" else None,
                _licenses(component),
                location,
                layer,
            )
        )
    return out


def read_packages(path: Path) -> list[Package]:
    return packages_of(read_json(path), str(path))
