"""Every package of a CycloneDX SBOM (syft's), as the inventory stores it.

The scan stage's :func:`~tfgov_ci.stages.scan.advisories.sbom_packages` keeps only what advisories
can name (PyPI and Debian); the fleet wants every package with a purl (``which log4j-core`` asks
about Java), with its licences and where it was found, so it reads the components itself.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path
from typing import Any, NamedTuple

from tfgov_ci.findings import ReportError, package_key, parse_json, purl_type
from tfgov_ci.stages.scan.advisories import source_name


class Package(NamedTuple):
    """One package of an image. A named tuple, not a dataclass: an import makes 300 of them an
    image, and a frozen dataclass's ``__init__`` (a ``object.__setattr__`` a field) was a fifth of
    reading an SBOM."""

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


@functools.lru_cache(maxsize=1 << 16)
def _purl_facts(purl: str) -> tuple[str, str | None]:
    """A purl's type and (Debian) source package: the same purls recur in every image of a fleet,
    and parsing the qualifiers is what costs."""
    type_ = purl_type(purl) if purl else "unknown"
    return type_, source_name(purl) if type_ == "deb" else None


def _licenses(entries: Any) -> tuple[str, ...]:
    """The licence ids, names or expressions of a component, each once, in order."""
    out: list[str] = []
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        license_ = entry.get("license") or {}
        value = entry.get("expression") or license_.get("id") or license_.get("name")
        if isinstance(value, str) and value and value not in out:
            out.append(value)
    return tuple(out)


_PATH, _LAYER = "syft:location:0:path", "syft:location:0:layerID"


def _location(properties: Any) -> tuple[str, str]:
    """The first path syft found the package at, and its layer (one pass over the properties)."""
    path = layer = ""
    for prop in properties:
        if not isinstance(prop, dict):
            continue
        name = prop.get("name")
        if name == _PATH:
            value = prop.get("value")
            if not path and isinstance(value, str):
                path = value
        elif name == _LAYER:
            value = prop.get("value")
            if not layer and isinstance(value, str):
                layer = value
    return path, layer


def packages_of(doc: Any, source: str) -> list[Package]:
    """The components with a name and a version; the purl's type is the package's type. (One
    pass, no more work per component than it needs: an import reads 300 components an image.)"""
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
        type_, source_package = _purl_facts(purl)
        entries, properties = component.get("licenses"), component.get("properties")
        location, layer = _location(properties) if properties else ("", "")
        out.append(
            Package(
                type_,
                name,
                version,
                purl,
                source_package,
                _licenses(entries) if entries else (),
                location,
                layer,
            )
        )
    return out


def read_packages(path: Path) -> tuple[list[Package], str]:
    """The packages of an SBOM file, and the file's digest (``sha256:...``), from one read."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ReportError(f"{path}: no such file") from None
    except OSError as exc:
        raise ReportError(f"{path}: cannot read it ({exc})") from None
    return packages_of(_document(data, path), str(path)), "sha256:" + hashlib.sha256(data).hexdigest()


def _document(data: bytes, path: Path) -> Any:
    """The parsed SBOM. orjson reads the 170 kB of an image's SBOM in a third to a half of the
    time ``json`` takes; what it refuses (NaN, a lone surrogate, invalid UTF-8, bad JSON) goes to
    ``json``, which reads it as ever or says where it broke. (It is not the JSON reader
    everywhere: an integer past 64 bits would become a float, which no component field the
    inventory reads holds.)"""
    import orjson

    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        pass
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ReportError(f"{path}: cannot read it ({exc})") from None
    return parse_json(text, path)
