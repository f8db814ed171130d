"""A small trivy vulnerability database, written for tests and benchmarks (trivy cannot download
one here). The bbolt file is written by a tiny Go program (``trivydb/main.go``, built once with
Debian's golang-go and golang-github-coreos-bbolt-dev) from a list of advisories.

Layout (trivy-db schema 2): a bucket per data source ("debian 12", "pip::GitHub Security Advisory
pip") -> package -> advisory id -> {FixedVersion | VulnerableVersions/PatchedVersions};
"vulnerability" -> id -> {Title, Severity}; "data-source" -> source bucket -> {ID, Name, URL}.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from tfgov_ci._files import cache_dir

SOURCE = Path(__file__).resolve().parent / "trivydb" / "main.go"
PIP_BUCKET = "pip::GitHub Security Advisory pip"
GOPATH = "/usr/share/gocode"  # where Debian's golang-*-dev packages put their sources


@dataclass(frozen=True)
class Advisory:
    id: str
    package: str
    severity: str  # CRITICAL, HIGH, MEDIUM, LOW
    fixed: str | None = None  # for Debian: the fixed version; None: not fixed yet
    vulnerable: tuple[str, ...] = ()  # for pip: ranges such as "< 6.0.3"
    release: str | None = None  # "debian 12" for a Debian advisory; None for pip
    title: str = ""


def _builder() -> Path:
    """The trivydb binary, built once per source version into the cache."""
    digest = hashlib.sha256(SOURCE.read_bytes()).hexdigest()[:16]
    binary = cache_dir() / "trivydb" / digest / "trivydb"
    if binary.is_file():
        return binary
    go = shutil.which("go")
    if go is None:
        raise RuntimeError("go is not installed: apt-get install -y golang-go golang-github-coreos-bbolt-dev")
    binary.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "GO111MODULE": "off", "GOPATH": GOPATH, "GOCACHE": str(binary.parent / "gocache")}
    tmp = binary.with_suffix(".tmp")
    subprocess.run([go, "build", "-o", str(tmp), str(SOURCE)], env=env, check=True, capture_output=True)
    tmp.replace(binary)
    return binary


def write_db(folder: Path, advisories: Iterable[Advisory]) -> Path:
    """A trivy cache folder holding ``db/trivy.db`` with these advisories; pass it as --cache-dir."""
    entries: list[dict[str, object]] = []
    sources = set()
    for adv in advisories:
        if adv.release:
            value: dict[str, object] = {"FixedVersion": adv.fixed} if adv.fixed else {}
            entries.append({"path": [adv.release, adv.package, adv.id], "value": value})
            sources.add((adv.release, "debian", "Debian Security Tracker"))
        else:
            value = {
                "VulnerableVersions": list(adv.vulnerable),
                "PatchedVersions": [adv.fixed] if adv.fixed else [],
            }
            entries.append({"path": [PIP_BUCKET, adv.package, adv.id], "value": value})
            sources.add((PIP_BUCKET, "ghsa", "GitHub Security Advisory pip"))
        detail = {"Title": adv.title or f"test advisory {adv.id}", "Severity": adv.severity}
        entries.append({"path": ["vulnerability", adv.id], "value": detail})
    for bucket, source_id, name in sorted(sources):
        entries.append({"path": ["data-source", bucket], "value": {"ID": source_id, "Name": name, "URL": ""}})
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [str(_builder()), str(folder)],
        input=json.dumps({"entries": entries}).encode(),
        check=True,
        capture_output=True,
    )
    return folder
