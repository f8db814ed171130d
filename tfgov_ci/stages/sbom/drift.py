"""Lock-versus-image drift: does the image hold what the lock and the base say, and nothing else?

Findings, each a value with a ``kind`` the policy stage can gate on:

- ``unlocked``: a Python package in the image that neither the lock nor the base has;
- ``missing``: a locked package that is not in the image;
- ``version``: a package whose version differs from the lock's (or, for a base package, the base's);
- ``unowned-file``: a file added on top of the base that no package owns and that is not the app's
  (a binary fetched with curl in a RUN step, say).

Python packages come from the SBOMs (the image's and the base's); file ownership from the wheels'
RECORD files in the image's own layers (their path indices, :mod:`tfgov_ci.stages.sbom.layers`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tfgov_ci.stages.sbom.layers import RUNTIME_FILES, LayerIndex
from tfgov_ci.wheels import Locked, normalise_name


@dataclass(frozen=True)
class Finding:
    kind: str
    subject: str  # a package name or a path
    message: str
    expected: str | None = None
    found: str | None = None


def pypi_packages(cyclonedx: dict[str, Any]) -> dict[str, str]:
    """name -> version of every Python package a CycloneDX document lists as installed: the copies
    a package carries in its own source tree (``setuptools/_vendor/zipp-*.dist-info``, pip's
    ``_vendor``) are part of that package, which the lock holds, not packages of their own."""

    def paths(component: dict[str, Any]) -> list[str]:
        return [
            str(p.get("value", ""))
            for p in component.get("properties", [])
            if str(p.get("name", "")).startswith("syft:location:")
            and str(p.get("name", "")).endswith(":path")
        ]

    return _installed(cyclonedx.get("components", []), paths)


def pypi_artifacts(artifacts: Iterable[dict[str, Any]]) -> dict[str, str]:
    """:func:`pypi_packages` of syft's own JSON artifacts (a catalogue's)."""

    def paths(artifact: dict[str, Any]) -> list[str]:
        return [str(location.get("path", "")) for location in artifact.get("locations", [])]

    return _installed(artifacts, paths)


def _installed(
    packages: Iterable[dict[str, Any]], paths_of: Callable[[dict[str, Any]], list[str]]
) -> dict[str, str]:
    """name -> version of each PyPI package but those whose every path (``paths_of``, asked of
    PyPI packages only) is in a ``_vendor`` folder."""
    out: dict[str, str] = {}
    for package in packages:
        if not str(package.get("purl", "")).startswith("pkg:pypi/"):
            continue
        paths = paths_of(package)
        if not (paths and all("/_vendor/" in path for path in paths)):
            out[normalise_name(package["name"])] = str(package.get("version", ""))
    return out


def built_packages(labels: dict[str, str]) -> dict[str, str]:
    """name -> version of the wheels the base factory built from source (``io.tfgov.python.built``,
    ``name==version`` joined by commas)."""
    out: dict[str, str] = {}
    for entry in filter(None, labels.get("io.tfgov.python.built", "").split(",")):
        name, _, version = entry.partition("==")
        out[normalise_name(name)] = version
    return out


def package_findings(image: dict[str, str], locked: list[Locked], base: dict[str, str]) -> list[Finding]:
    lock = {r.name: r.version for r in locked}
    findings: list[Finding] = []
    for name, version in sorted(image.items()):
        source, expected = ("lock", lock.get(name)) if name in lock else ("base", base.get(name))
        if expected is None:
            findings.append(
                Finding(
                    "unlocked", name, f"{name} {version} is in the image but not in the lock", None, version
                )
            )
        elif version != expected:
            findings.append(
                Finding(
                    "version",
                    name,
                    f"{name} is {version} in the image, {expected} in the {source}",
                    expected,
                    version,
                )
            )
    for name in sorted(lock.keys() - image.keys()):
        findings.append(
            Finding("missing", name, f"{name} {lock[name]} is locked but not in the image", lock[name])
        )
    return findings


def unowned_files(own_layers: Sequence[LayerIndex], workdir: str) -> list[Finding]:
    """Files in the image's own layers (those on its base) that no package's RECORD lists and that
    are not the app's. An image with no base under it (the central base itself) has no layers "on
    top" of one: nothing to check (its files are its Debian packages', listed by dpkg)."""
    files: set[str] = set()
    owned: set[str] = set()
    deleted: set[str] = set()
    for index in own_layers:
        files |= index.files
        owned |= index.owned
        deleted |= index.whiteouts
    app = workdir.rstrip("/") + "/"
    loose = sorted(
        path
        for path in files - owned - deleted - RUNTIME_FILES
        if not path.startswith(app) and "/__pycache__/" not in path and ".dist-info/" not in path
    )
    return [
        Finding("unowned-file", path, f"{path} was added on top of the base and no package owns it")
        for path in loose
    ]


def report(findings: list[Finding]) -> dict[str, Any]:
    counts: dict[str, int] = {}
    for finding in findings:
        counts[finding.kind] = counts.get(finding.kind, 0) + 1
    return {"findings": [asdict(f) for f in findings], "counts": counts}


def base_sbom(digest: str, cache: Path, make: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """The base image's CycloneDX SBOM, made once per base digest (``make()``) and cached."""
    path = cache / "sboms" / f"{digest.replace(':', '-')}.cdx.json"
    if path.is_file():
        loaded: dict[str, Any] = json.loads(path.read_text())
        return loaded
    document = make()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(document))
    tmp.replace(path)
    return document
