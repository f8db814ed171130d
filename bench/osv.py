"""OSV benchmark: the offline matcher on a 1,000-package SBOM against the whole PyPA advisory
database, beside trivy scanning the same SBOM against the same advisories, in the same run.

The SBOM is CycloneDX with 1,000 PyPI packages: every package the database names (about 730),
each at a version its advisories list as affected when there is one, padded with unaffected names.
trivy gets a database made here from the same advisories (trivy cannot download one offline):
each ECOSYSTEM range becomes a ``VulnerableVersions`` constraint. tfgov-ci is timed cold (YAML
parsed, cache written) and warm (cached index); trivy with its database already written.
Median of 5. Goal (issue 5): the match under 2 s.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tfgov_ci.stages.scan import advisories  # noqa: E402
from tfgov_ci.testing.trivy import Advisory, write_db  # noqa: E402

RUNS = 5
PACKAGES = 1000


def component(name: str, version: str) -> dict[str, str]:
    return {"type": "library", "name": name, "version": version, "purl": f"pkg:pypi/{name}@{version}"}


def sbom(db: advisories.Database) -> dict[str, object]:
    components = []
    for (_, name), group in sorted(db.by_package.items()):
        listed = sorted(v for a in group for v in a.versions)
        version = listed[len(listed) // 2] if listed else "0.0.1"
        components.append(
            {"type": "library", "name": name, "version": version, "purl": f"pkg:pypi/{name}@{version}"}
        )
    index = 0
    while len(components) < PACKAGES:
        name = f"unaffected-package-{index}"
        components.append(
            {"type": "library", "name": name, "version": "1.0.0", "purl": f"pkg:pypi/{name}@1.0.0"}
        )
        index += 1
    return {"bomFormat": "CycloneDX", "specVersion": "1.5", "version": 1, "components": components[:PACKAGES]}


def trivy_advisories(db: advisories.Database) -> list[Advisory]:
    out = []
    for group in db.by_package.values():
        for adv in group:
            constraints = []
            for r in adv.ranges:
                start = None
                for kind, version in r.events:
                    if kind == "introduced":
                        start = version
                    elif kind in ("fixed", "last_affected") and start is not None:
                        low = "" if start == "0" else f">={start}, "
                        constraints.append(f"{low}{'<' if kind == 'fixed' else '<='}{version}")
                        start = None
                if start is not None:  # no end: every release from there on
                    constraints.append(f">={start}")
            if not adv.ranges:
                constraints = [f"=={v}" for v in sorted(adv.versions)]
            if not constraints:
                continue  # no range and no version list: it names nothing (osv matches nothing either)
            fixed = adv.fixed_versions()
            severity = adv.severity if adv.severity != "UNKNOWN" else "MEDIUM"
            first_fix = fixed[0] if fixed else None
            out.append(
                Advisory(adv.id, adv.package, severity, fixed=first_fix, vulnerable=tuple(constraints))
            )
    return out


def timed(fn: object) -> float:
    start = time.perf_counter()
    fn()  # type: ignore[operator]
    return time.perf_counter() - start


def main() -> int:
    trivy = shutil.which("trivy") or shutil.which("trivy", path=str(Path(sys.executable).parent))
    if trivy is None:
        print("bench: trivy missing (make setup)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="tfgov-bench-osv.") as tmpdir:
        tmp = Path(tmpdir)
        with tarfile.open(ROOT / "tests/fixtures/osv/pypa-advisory-database.tar.gz") as archive:
            archive.extractall(tmp, filter="data")
        folder = tmp / "pypa-advisory-database" / "vulns"
        print("bench: setup (not timed)", file=sys.stderr)
        reference = advisories.Database.open(folder, None)
        document = sbom(reference)
        sbom_file = tmp / "sbom.cdx.json"
        sbom_file.write_text(json.dumps(document))
        write_db(tmp / "trivy-cache", trivy_advisories(reference))
        packages = advisories.sbom_packages(document)

        def match(cache: Path | None) -> list[object]:
            db = advisories.Database.open(folder, cache)
            return list(db.match(packages))

        trivy_argv = [
            trivy, "sbom", str(sbom_file), "--cache-dir", str(tmp / "trivy-cache"), "--skip-db-update",
            "--offline-scan", "--format", "json", "--quiet", "--output", str(tmp / "trivy.json"),
        ]  # fmt: skip
        cold, warm, bare = [], [], []
        for run in range(RUNS):
            cache = tmp / f"cache-{run}"
            cold.append(timed(lambda cache=cache: match(cache)))  # type: ignore[misc]
            warm.append(timed(lambda cache=cache: match(cache)))  # type: ignore[misc]
            bare.append(timed(lambda: subprocess.run(trivy_argv, check=True)))
        ours = len(match(tmp / "cache-0"))
        results = json.loads((tmp / "trivy.json").read_text()).get("Results", [])
        theirs = sum(len(r.get("Vulnerabilities") or []) for r in results)
        trivy_s, cold_s, warm_s = (statistics.median(x) for x in (bare, cold, warm))
        rows = [
            ("trivy sbom (same advisories, its own DB)", trivy_s, theirs),
            ("tfgov-ci osv, cold (YAML parsed, cache written)", cold_s, ours),
            ("tfgov-ci osv, warm (cached index)", warm_s, ours),
        ]
        print(f"\nOSV: {PACKAGES}-package SBOM, PyPA database ({reference.files} files), median of {RUNS}")
        print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}\n")
        print("| scanner | time | vs trivy | findings |\n|---|---|---|---|")
        for name, seconds, count in rows:
            print(f"| {name} | {seconds:.2f} s | {seconds / trivy_s:.2f}x | {count} |")
        verdict = "met" if max(cold_s, warm_s) < 2 else "NOT met"
        print(f"\ngoal: under 2 s: {verdict} (cold {cold_s:.2f} s, warm {warm_s:.2f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
