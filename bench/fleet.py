"""Fleet benchmark: `inventory duplicates` and `inventory report --html` on a synthetic fleet of
10,000 images with 50,000 running instances, in a real SQLite inventory made through the store's
own migrations; the page then loaded in headless Chromium (Debian's).

The fleet: 2,000 repositories of 5 builds each, every repository on one of 100 team package sets
(40 locked `name==version` each) plus up to 6 packages of its own, each build moving one version;
the image's own layer holds its packages (as the build result's diff ids and syft's layer ids
say), a second layer is the base's. 50,000 instances over the newest builds, 20,000 findings over
30 days, a rescan. Side by side: `duplicates` with MinHash LSH (what `auto` picks above 1,500
images) beside the exact pairwise Jaccard on the same 2,000 images, and over all 10,000 images.
Each command is run as a user runs it (`python -m tfgov_ci ...`, start-up included); median of 3.
Goals (issue 14): duplicates under 10 s, report under 10 s, the page under 5 MB, Chromium's load
under 2 s.
"""

from __future__ import annotations

import json
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tfgov_ci.inventory import tables  # noqa: E402
from tfgov_ci.inventory.store import open_store  # noqa: E402

IMAGES, BUILDS, INSTANCES, FINDINGS, TEAMS = 10_000, 5, 50_000, 20_000, 100
RUNS = 3
DAY = "2026-11-{:02d}T06:00:00.000Z"


def _digest(kind: str, n: int) -> str:
    return f"sha256:{kind}{n:0{64 - len(kind)}x}"


def make_fleet(db: Path) -> None:
    """The synthetic fleet, inserted in bulk through the store's tables (one transaction)."""
    from sqlalchemy import insert

    rng = random.Random(14)
    names = [f"pkg-{n}" for n in range(4000)]
    teams = [rng.sample(names, 40) for _ in range(TEAMS)]
    packages: dict[tuple[str, str], int] = {}

    moved_to: dict[int, int] = {}  # image -> the package version its build moved

    def package(name: str, version: str) -> int:
        return packages.setdefault((name, version), len(packages) + 1)

    images, links, builds = [], [], []
    base_layer = "sha256:" + "b" * 64
    for repo in range(IMAGES // BUILDS):
        team = teams[repo % TEAMS]
        own = rng.sample(names, rng.randint(0, 6))
        # the team's packages at the team's versions: repositories of a team are near-copies
        versions = {name: f"1.{TEAMS + teams.index(team) % 3}.0" for name in team}
        versions.update({name: f"1.{rng.randint(0, 3)}.0" for name in own})
        for build in range(BUILDS):
            n = repo * BUILDS + build + 1
            moved = rng.choice(own or team)  # a build moves one of its own versions
            versions[moved] = f"1.{build + 4}.0"
            moved_to[n] = package(moved, versions[moved])
            layer, diff = _digest("a", n), _digest("d", n)
            images.append(
                {
                    "id": n,
                    "digest": _digest("", n),
                    "repository": f"registry.example.com/team-{repo % TEAMS}/model-{repo}",
                    "governed": n % 10 != 0,
                    "signed": n % 10 != 0,
                    "base_ref": f"registry.example.com/platform/tf-base@{_digest('c', repo % 4)}",
                    "tensorflow_version": f"2.{15 + repo % 6}.0",
                    "created": DAY.format(1 + build * 5 + repo % 5),
                    "recorded": DAY.format(28),
                    "decision": "allow",
                }
            )
            builds.append(
                {
                    "image_id": n,
                    "started": DAY.format(1 + build * 5),
                    "duration_s": 60.0 + n % 50,
                    "peak_memory_bytes": 2**30 + n,
                    "size_bytes": 400_000_000 + n * 1000,
                    "layers": json.dumps([[layer, 2_000_000, diff]]),
                }
            )
            for name, version in versions.items():
                links.append(
                    {
                        "image_id": n,
                        "package_id": package(name, version),
                        "location": f"/site/{name}",
                        "layer": diff,
                        "licenses": "[]",
                    }
                )
            links.append(
                {
                    "image_id": n,
                    "package_id": package("numpy", "1.26.4"),
                    "location": "/base/numpy",
                    "layer": base_layer,
                    "licenses": "[]",
                }
            )
    rows = [
        {
            "id": i,
            "type": "pypi",
            "name": name,
            "key": name,
            "version": version,
            "purl": f"pkg:pypi/{name}@{version}",
        }
        for (name, version), i in packages.items()
    ]
    newest = [img["digest"] for img in images if int(img["digest"][7:], 16) % BUILDS == 0]
    instances = [
        {
            "cluster": f"prod-{k % 3}",
            "namespace": f"team-{k % TEAMS}",
            "pod": f"model-{k}",
            "container": "model",
            "image": "x",
            "image_id": newest[k % len(newest)],
            "digest": newest[k % len(newest)],
            "first_seen": DAY.format(20),
            "last_seen": DAY.format(28),
            "running": True,
        }
        for k in range(INSTANCES)
    ]
    findings = [
        {
            "image_id": 1 + k % IMAGES,
            "package_id": 1 + k % len(packages),
            "advisory": f"PYSEC-2099-{k}",
            "aliases": "[]",
            "severity": ("CRITICAL", "HIGH", "MEDIUM", "LOW")[k % 4],
            "fix_state": "fixed",
            "fixed_versions": "[]",
            "title": "",
            "scanners": "[]",
            "origin": "scan",
            "found": DAY.format(1 + k % 28),
            "excepted": False,
        }
        for k in range(FINDINGS)
        if k % 5
    ]
    # a rescan's findings are stored once per package version, with the images it counted: here
    # one finding on the version each of a fifth of the images' builds moved
    rescanned = {1 + k % IMAGES: k for k in range(0, FINDINGS, 5)}
    rescan_findings = [
        {
            "rescan_id": 1,
            "package_id": moved_to[n],
            "advisory": f"PYSEC-2099-{k}",
            "aliases": "[]",
            "severity": ("CRITICAL", "HIGH", "MEDIUM", "LOW")[k % 4],
            "fix_state": "fixed",
            "fixed_versions": "[]",
            "title": "",
            "scanners": "[]",
            "images": 1,
        }
        for n, k in rescanned.items()
    ]
    with open_store(str(db)) as store, store.writing() as conn:
        for table, data in (
            (tables.images, images),
            (tables.packages, rows),
            (tables.image_packages, links),
            (tables.image_builds, builds),
            (tables.instances, instances),
            (tables.findings, findings),
        ):
            for start in range(0, len(data), 20_000):
                conn.execute(insert(table), data[start : start + 20_000])
        conn.execute(
            insert(tables.rescans).values(
                id=1,
                started=DAY.format(28),
                advisory_db="vulns",
                advisory_db_digest="sha256:" + "f" * 64,
                advisory_files=1,
                package_versions=len(packages),
                new_findings=len(rescan_findings),
            )
        )
        conn.execute(insert(tables.rescan_findings), rescan_findings)
        conn.execute(insert(tables.rescan_images), [{"rescan_id": 1, "image_id": n} for n in rescanned])


def timed(*args: str) -> tuple[float, str]:
    times, out = [], ""
    for _ in range(RUNS):
        t0 = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", "tfgov_ci", *args], capture_output=True, text=True, cwd=ROOT
        )
        times.append(time.monotonic() - t0)
        if done.returncode != 0:
            raise SystemExit(f"{args}: exit {done.returncode}: {done.stderr}")
        out = done.stdout
    return statistics.median(times), out


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="tfgov-bench-fleet.") as tmp:
        db = Path(tmp) / "inventory.sqlite"
        t0 = time.monotonic()
        make_fleet(db)
        print(f"fleet: {IMAGES} images, {INSTANCES} instances, made in {time.monotonic() - t0:.1f} s")
        rows = []
        for label, args in (
            ("duplicates (auto: MinHash LSH, 2,000 newest)", ["--method", "auto"]),
            ("duplicates --method exact (2,000 newest)", ["--method", "exact"]),
            ("duplicates --all-images (MinHash LSH, 10,000)", ["--all-images"]),
        ):
            seconds, out = timed("inventory", "duplicates", *args, "--format", "json", "--inventory", str(db))
            answer = json.loads(out)
            rows.append(
                (
                    label,
                    seconds,
                    f"{answer['method']}, {len(answer['groups'])} groups, {answer['pairs']} pairs",
                )
            )
        page = Path(tmp) / "fleet.html"
        seconds, _ = timed("inventory", "report", "--html", str(page), "--inventory", str(db))
        rows.append(("report --html", seconds, f"page {page.stat().st_size / 1e6:.2f} MB"))
        from tfgov_ci.testing.browser import load

        loads = [load(page, Path(tmp) / "fleet.png" if n == 0 else None) for n in range(RUNS)]
        load_s = statistics.median(x.seconds for x in loads)
        errors = loads[0].errors
        print(
            f"machine: {platform.machine()}, {platform.python_implementation()} {platform.python_version()}"
        )
        print(f"{'command':<50} {'median s':>9}  result")
        for label, s, what in rows:
            print(f"{label:<50} {s:>9.2f}  {what}")
        print(
            f"{'chromium load (file URL)':<50} {load_s:>9.2f}  {len(loads[0].requests)} request(s), "
            f"{len(errors)} error(s)"
        )
        exact, lsh = rows[1][1], rows[0][1]
        print(f"MinHash LSH beside exact on the same 2,000 images: {exact / lsh:.1f}x faster")
        goals = [
            ("duplicates", max(rows[0][1], rows[2][1]) < 10),
            ("report", rows[3][1] < 10),
            ("page size", page.stat().st_size < 5e6),
            ("chromium load", load_s < 2),
            ("no errors", not errors),
        ]
        print("goals: " + ", ".join(f"{name} {'met' if ok else 'MISSED'}" for name, ok in goals))


if __name__ == "__main__":
    main()
