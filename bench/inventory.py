"""Inventory benchmark (issue 13): a synthetic fleet of 10,000 images x 300 packages imported into
SQLite and into a real PostgreSQL 15 server, then ``which``, ``trace`` and ``rescan`` on it, each
beside what a user has without tfgov-ci, in the same run.

The fleet (seeded, made once per run, not timed) is what ``tfgov-ci run`` leaves per image: an out
directory with ``record.json`` (schema-valid), the build and sbom stages' results and a CycloneDX
SBOM in syft's shape, which ``tfgov-ci inventory import`` reads. Real names and versions (see
bench/data/SOURCES.md): Debian packages of a Debian 12 machine, PyPI packages and versions of the
PyPA advisory database, the TensorFlow example's lock. Overlap as a fleet has it: six base
variants of one Debian core shared by every image, TensorFlow families (2.4 to 2.21, recent ones
most common) each with its dependency set, 25 teams with their own extras (drifting a version
here and there from build to build), a long tail of one-off packages, Log4j in a few images.

Measured, per backend: ingest (:func:`~tfgov_ci.inventory.ingest.import_paths`, what ``inventory
import`` calls, on every out directory); ``which`` (the store opened once, then each spec asked
REPS times, answer rendered, as the command prints it); ``trace`` by digest (200 images, rendered);
``rescan`` of the whole fleet against the whole PyPA database (the first finds everything, the
second nothing new). The commands as whole processes (start-up included) are timed too, for one
spec and one digest. Baselines: ``jq`` and Python ``json`` over the 10,000 SBOM files for each
``which`` spec; the scan stage's offline matcher (index cached) run once per SBOM for ``rescan``,
on a sample, extrapolated to the fleet (printed as such).
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tfgov_ci.inventory import rescan as rescan_mod  # noqa: E402
from tfgov_ci.inventory import trace as trace_mod  # noqa: E402
from tfgov_ci.inventory import which as which_mod  # noqa: E402
from tfgov_ci.inventory.ingest import import_paths  # noqa: E402
from tfgov_ci.inventory.store import Store, open_store  # noqa: E402
from tfgov_ci.stages.scan import advisories  # noqa: E402
from tfgov_ci.stages.scan.advisories import version_key  # noqa: E402
from tfgov_ci.testing.postgres import LocalPostgres, bin_dir  # noqa: E402
from tfgov_ci.wheels import normalise_name  # noqa: E402

SEED = 13
REPS = 20  # each which spec, after one warm-up
TRACES = 200
TEAMS = 25
MODELS_PER_TEAM = 8
BASE_VARIANTS = 6
DEBIAN_CORE = 80
DEBIAN_PER_VARIANT = 30
TEAM_EXTRAS = 70
PYPI_DIST = "/usr/local/lib/python3.11/dist-packages"
# The TensorFlow example's lock (examples/tf-mnist: tensorflow-cpu 2.21.0 and PyYAML, resolved
# by `tfgov-ci lock` from PyPI): the newest family, and the names every family depends on.
TF_LOCK = {
    "absl-py": "2.5.1",
    "astunparse": "1.6.3",
    "certifi": "2026.10.19.post1",
    "charset-normalizer": "3.5.3",
    "flatbuffers": "25.12.19",
    "gast": "0.7.0",
    "google-pasta": "0.2.0",
    "grpcio": "1.85.3",
    "h5py": "3.14.0",
    "idna": "3.20",
    "keras": "3.15.1",
    "libclang": "18.1.1",
    "markdown-it-py": "4.3.0",
    "mdurl": "0.1.2",
    "ml-dtypes": "0.7.0",
    "namex": "0.1.0",
    "numpy": "2.4.6",
    "opt-einsum": "3.4.0",
    "optree": "0.20.0",
    "packaging": "26.4",
    "protobuf": "7.36.2",
    "pygments": "2.21.0",
    "requests": "2.34.2",
    "rich": "15.0.0",
    "setuptools": "84.2.1",
    "six": "1.17.0",
    "termcolor": "3.3.0",
    "typing-extensions": "4.16.0",
    "urllib3": "2.8.0",
    "wheel": "0.48.0",
    "wrapt": "2.5.2",
}
# TensorFlow minor -> share of the fleet: recent ones most, a long tail of old images nobody
# remembers (the ones rescan is for).
TF_FAMILIES = {
    "2.4": 1,
    "2.5": 1,
    "2.6": 1,
    "2.7": 2,
    "2.8": 2,
    "2.9": 2,
    "2.10": 3,
    "2.11": 6,
    "2.12": 10,
    "2.13": 12,
    "2.14": 14,
    "2.15": 16,
    "2.16": 15,
    "2.21": 15,
}
# Real Log4j releases (Maven Central): the standard horror story, in 2% of the images.
LOG4J = ("2.14.1", "2.17.1", "2.20.0")
DEBIAN_ESSENTIAL = (
    "libc6",
    "libssl3",
    "openssl",
    "zlib1g",
    "libgcc-s1",
    "libstdc++6",
    "ca-certificates",
    "libpython3.11-stdlib",
    "python3.11-minimal",
    "libsqlite3-0",
    "libexpat1",
    "tzdata",
    "libbz2-1.0",
    "liblzma5",
    "libffi8",
    "libgomp1",
)
LICENSES = ("Apache-2.0", "MIT", "BSD-3-Clause", "GPL-2.0-only", "LGPL-2.1-or-later", "PSF-2.0", "MPL-2.0")
SPECS = (
    ("tensorflow<2.12", False),
    ("pyyaml>=5.1,<5.4", False),
    ("protobuf<3.20", False),
    ("urllib3<1.26.5", False),
    ("numpy", False),
    ("log4j-core", False),
    ("pkg:deb/debian/openssl", True),
)
# jq takes about as long as Python's json per file here, and it is slower overall: run on two of
# the specs only, to keep the run short (the ratios are against the faster baseline anyway).
JQ_SPECS = ("tensorflow<2.12", "pkg:deb/debian/openssl")


# -- the fleet ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Component:
    type: str  # pypi, deb, maven
    name: str
    version: str
    source: str | None = None
    layer: str = ""

    def cyclonedx(self, rng: random.Random) -> dict[str, Any]:
        if self.type == "deb":
            upstream = f"&upstream={self.source}" if self.source and self.source != self.name else ""
            purl = f"pkg:deb/debian/{self.name}@{self.version}?arch=amd64&distro=debian-12{upstream}"
            path, kind = f"/usr/share/doc/{self.name}/copyright", "deb"
        elif self.type == "pypi":
            purl = f"pkg:pypi/{self.name}@{self.version}"
            path = f"{PYPI_DIST}/{self.name.replace('-', '_')}-{self.version}.dist-info/METADATA"
            kind = "python"
        else:
            purl = f"pkg:maven/org.apache.logging.log4j/{self.name}@{self.version}"
            path, kind = f"/opt/app/lib/{self.name}-{self.version}.jar", "java-archive"
        return {
            "bom-ref": f"{purl}&package-id={rng.getrandbits(64):016x}",
            "type": "library",
            "name": self.name,
            "version": self.version,
            "licenses": [{"license": {"id": LICENSES[hash(self.name) % len(LICENSES)]}}],
            "purl": purl,
            "properties": [
                {"name": "syft:package:type", "value": kind},
                {"name": "syft:location:0:layerID", "value": self.layer},
                {"name": "syft:location:0:path", "value": path},
            ],
        }


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def pypi_pool(db: advisories.Database) -> dict[str, list[str]]:
    """Every PyPI package the database names, with every real version it names (affected ones
    and fixes), in PEP 440 order."""
    key = version_key("pypi")
    assert key is not None
    pool: dict[str, set[str]] = {}
    for (family, name), group in db.by_package.items():
        if family != "PyPI":
            continue
        for adv in group:
            named = set(adv.versions) | {v for r in adv.ranges for kind, v in r.events if v != "0"}
            pool.setdefault(name, set()).update(named)
    out = {}
    for name, versions in pool.items():
        valid = []
        for v in versions:
            try:
                valid.append((key(v), v))
            except ValueError:
                continue
        if valid:
            out[name] = [v for _, v in sorted(valid)]
    return out


def _recent(rng: random.Random, versions: int) -> int:
    """A version index, most often among the newest: pins are mostly kept up to date (the newest
    versions the database names are mostly fixes), some are years behind."""
    return max(0, versions - 1 - int(rng.expovariate(0.5)))


def debian_packages() -> list[tuple[str, str, str]]:
    rows = []
    for line in (ROOT / "bench/data/debian-12-packages.tsv").read_text().splitlines():
        if line and not line.startswith("#"):
            name, version, source = line.split("\t")
            rows.append((name, version, source or name))
    return rows


@dataclass(frozen=True)
class Fleet:
    folder: Path
    paths: list[Path]
    digests: list[str]
    sboms: list[Path]


def make_fleet(folder: Path, images: int, per_image: int, pool: dict[str, list[str]]) -> Fleet:
    rng = random.Random(SEED)
    debian = debian_packages()
    by_name = {name: (name, version, source) for name, version, source in debian}
    core = [by_name[n] for n in DEBIAN_ESSENTIAL if n in by_name]
    rest = [d for d in debian if d not in core]
    rng.shuffle(rest)
    core += rest[: DEBIAN_CORE - len(core)]
    others = rest[DEBIAN_CORE - len(core) :]
    variants = []
    for v in range(BASE_VARIANTS):
        layer = "sha256:" + _sha(f"base-layer-{v}")
        extra = rng.sample(others, DEBIAN_PER_VARIANT)
        variants.append([Component("deb", n, ver, src, layer) for n, ver, src in core + extra])
    tf_versions = pool.get("tensorflow", [])
    families: dict[str, list[Component]] = {}
    names = list(TF_FAMILIES)
    for rank, minor in enumerate(names):
        layer = "sha256:" + _sha(f"tf-layer-{minor}")
        if minor == "2.21":
            deps = {"tensorflow-cpu": "2.21.0", **TF_LOCK}
        else:
            patches = [v for v in tf_versions if v.startswith(f"{minor}.") and v.count(".") == 2]
            deps = {"tensorflow": patches[-1] if patches else f"{minor}.0"}
            for dep, locked in TF_LOCK.items():
                listed = pool.get(dep)
                deps[dep] = (
                    listed[int(rank / (len(names) - 1) * 0.9 * (len(listed) - 1))] if listed else locked
                )
        families[minor] = [Component("pypi", n, ver, None, layer) for n, ver in deps.items()]
    weights = [TF_FAMILIES[m] for m in names]
    common = set(TF_LOCK) | {"tensorflow", "tensorflow-cpu", "pyyaml"}
    candidates = sorted(n for n in pool if n not in common)
    teams = []
    for _ in range(TEAMS):
        extras = rng.sample(candidates, TEAM_EXTRAS)
        teams.append({n: _recent(rng, len(pool[n])) for n in extras})
    pyyaml = pool["pyyaml"]
    folder.mkdir(parents=True, exist_ok=True)
    end = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    paths, digests, sboms = [], [], []
    repositories = TEAMS * MODELS_PER_TEAM
    latest = {i % repositories: i for i in range(images)}
    for i in range(images):
        repo = i % repositories
        team = repo // MODELS_PER_TEAM
        variant = variants[repo % BASE_VARIANTS if rng.random() > 0.1 else rng.randrange(BASE_VARIANTS)]
        family = rng.choices(names, weights)[0]
        app_layer = "sha256:" + _sha(f"app-layer-{i}")
        chosen: dict[tuple[str, str], Component] = {}
        for c in [*variant, *families[family]]:
            chosen[(c.type, c.name)] = c
        yaml_index = (team * 7) % len(pyyaml)
        chosen[("pypi", "pyyaml")] = Component("pypi", "pyyaml", pyyaml[yaml_index], None, app_layer)
        for name, index in teams[team].items():
            if rng.random() < 0.1:  # this build moved a pin: drift around the team's version
                index = min(len(pool[name]) - 1, max(0, index + rng.choice((-1, 1))))
            chosen[("pypi", name)] = Component("pypi", name, pool[name][index], None, app_layer)
        if rng.random() < 0.02:
            version = rng.choice(LOG4J)
            for name in ("log4j-core", "log4j-api"):
                chosen[("maven", name)] = Component("maven", name, version, None, app_layer)
        while len(chosen) < per_image:  # the long tail: what one image pulled in on its own
            name = rng.choice(candidates)
            if ("pypi", name) not in chosen:
                version = pool[name][_recent(rng, len(pool[name]))]
                chosen[("pypi", name)] = Component("pypi", name, version, None, app_layer)
        components = list(chosen.values())[:per_image]
        created = end - dt.timedelta(minutes=(images - i) * 50)
        digest = "sha256:" + _sha(f"bench-image-{i}")
        out = folder / f"out-{i:05d}"
        _write_out(out, i, repo, team, digest, family, variant[0].layer, created, i == latest[repo])
        sbom = {
            "$schema": "http://cyclonedx.org/schema/bom-1.6.schema.json",
            "bomFormat": "CycloneDX",
            "specVersion": "1.6",
            "serialNumber": f"urn:uuid:{_sha(f'sbom-{i}')[:32]}",
            "version": 1,
            "metadata": {
                "timestamp": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "tools": {
                    "components": [
                        {"type": "application", "author": "anchore", "name": "syft", "version": "1.18.1"}
                    ]
                },
                "component": {
                    "bom-ref": _sha(digest)[:16],
                    "type": "container",
                    "name": _repo(repo, team),
                    "version": digest,
                },
            },
            "components": [c.cyclonedx(rng) for c in components],
        }
        (out / "sbom" / "sbom.cdx.json").write_text(json.dumps(sbom))  # compact, as the sbom stage writes it
        paths.append(out)
        digests.append(digest)
        sboms.append(out / "sbom" / "sbom.cdx.json")
    return Fleet(folder, paths, digests, sboms)


def _repo(repo: int, team: int) -> str:
    return f"registry.example.com/team-{team:02d}/model-{repo % MODELS_PER_TEAM}"


def _write_out(
    out: Path,
    i: int,
    repo: int,
    team: int,
    digest: str,
    family: str,
    base_layer: str,
    created: dt.datetime,
    latest: bool,
) -> None:
    sha = hashlib.sha1(f"bench-commit-{i}".encode()).hexdigest()
    config = "sha256:" + _sha(f"config-{repo}")
    base_digest = "sha256:" + _sha(base_layer)
    stamp = created.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    repository = _repo(repo, team)
    tensorflow = "2.21.0" if family == "2.21" else f"{family}.0"
    record = {
        "schema_version": 1,
        "created": stamp,
        "status": "passed",
        "tfgov_ci_version": "0.1.0",
        "pipeline": "tf-image",
        "commit": {
            "sha": sha,
            "short_sha": sha[:8],
            "branch": "main",
            "git_tags": [],
            "dirty": False,
            "detached": False,
            "commit_time": int(created.timestamp()) - 600,
            "source_date_epoch": int(created.timestamp()) - 600,
        },
        "repository_url": f"https://gitlab.example.com/team-{team:02d}/model-{repo % MODELS_PER_TEAM}.git",
        "ci": {
            "provider": "gitlab",
            "pipeline_id": str(100000 + i),
            "pipeline_url": f"https://gitlab.example.com/team-{team:02d}/pipelines/{100000 + i}",
            "job_id": str(500000 + i),
            "job_url": f"https://gitlab.example.com/jobs/{500000 + i}",
        },
        "runner": {"host": f"runner-{i % 12}", "platform": "Linux-x86_64", "python": "3.11.7"},
        "tools": {"syft": "syft 1.18.1", "cosign": "cosign v3.1.1", "skopeo": "skopeo version 1.9.3"},
        "config": {"file": "tfgov.yaml", "digest": config, "org_file": None},
        "image": {
            "repository": repository,
            "tags": [sha, sha[:8], *(["main"] if latest else [])],
            "digest": digest,
        },
        "evidence": {"signed": True, "reference": f"{repository}@{digest}", "attestations": []},
        "stages": [
            {"stage": s, "backend": b, "status": "passed"}
            for s, b in (
                ("validate", "builtin"),
                ("lock", "uv"),
                ("build", "native"),
                ("sbom", "syft"),
                ("record", "builtin"),
            )
        ],
    }
    labels = {
        "io.tfgov.python.version": "3.11",
        "io.tfgov.tensorflow.version": tensorflow,
        "io.tfgov.lock.digest": "sha256:" + _sha(f"lock-{i}"),
        "org.opencontainers.image.base.digest": base_digest,
        "org.opencontainers.image.base.name": "registry.example.com/platform/py-base",
        "org.opencontainers.image.revision": sha,
    }
    build = {
        "stage": "build",
        "backend": "native",
        "status": "passed",
        "schema_version": 1,
        "commit": sha,
        "config_digest": config,
        "data": {
            "labels": labels,
            "lock_digest": labels["io.tfgov.lock.digest"],
            "base": {"ref": f"registry.example.com/platform/py-base@{base_digest}", "digest": base_digest},
        },
    }
    sbom = {
        "stage": "sbom",
        "backend": "syft",
        "status": "passed",
        "schema_version": 1,
        "commit": sha,
        "config_digest": config,
        "data": {},
    }
    (out / "build").mkdir(parents=True)
    (out / "sbom").mkdir()
    (out / "record.json").write_text(json.dumps(record, indent=2))
    (out / "build" / "result.json").write_text(json.dumps(build, indent=1))
    (out / "sbom" / "result.json").write_text(json.dumps(sbom, indent=1))


# -- measuring ----------------------------------------------------------------------------------


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


@dataclass
class Results:
    name: str
    ingest_s: float = 0.0
    which: dict[str, list[float]] | None = None
    which_images: dict[str, int] | None = None
    trace: list[float] | None = None
    rescan_first: float = 0.0
    rescan_again: float = 0.0
    rescan_new: int = 0
    rescan_versions: int = 0
    cli_which: float = 0.0
    cli_trace: float = 0.0


def spec_of(text: str, purl: bool) -> which_mod.Spec:
    return which_mod.parse(text, purl=purl)


def measure(name: str, url: str, fleet: Fleet, folder: Path, env: dict[str, str]) -> Results:
    result = Results(name)
    print(f"bench: {name}: ingest of {len(fleet.paths)} images", file=sys.stderr)
    with open_store(url) as store:
        result.ingest_s = timed(lambda: import_paths(store, fleet.paths))
        print(f"bench: {name}: {len(fleet.paths) / result.ingest_s:.0f} images/s", file=sys.stderr)
        result.which, result.which_images = which_times(store)
        rng = random.Random(SEED + 1)
        sample = [rng.choice(fleet.digests) for _ in range(TRACES)]
        result.trace = [timed(lambda d=d: _trace(store, d)) for d in sample]  # type: ignore[misc]
        print(f"bench: {name}: rescan", file=sys.stderr)
        outcome: list[rescan_mod.Rescan] = []
        result.rescan_first = timed(lambda: outcome.append(_rescan(store, folder)))
        result.rescan_new, result.rescan_versions = outcome[0].count, outcome[0].package_versions
        result.rescan_again = timed(lambda: _rescan(store, folder))
    spec = SPECS[0][0]
    result.cli_which = statistics.median(
        timed(lambda: _cli(env, "which", spec, "--inventory", url)) for _ in range(5)
    )
    result.cli_trace = statistics.median(
        timed(lambda: _cli(env, "trace", fleet.digests[0], "--inventory", url)) for _ in range(5)
    )
    return result


def which_times(store: Store) -> tuple[dict[str, list[float]], dict[str, int]]:
    times: dict[str, list[float]] = {}
    images: dict[str, int] = {}
    for text, purl in SPECS:
        spec = spec_of(text, purl)
        answer = _which(store, spec)
        images[text] = len(answer.holders)
        times[text] = [timed(lambda spec=spec: _which(store, spec)) for _ in range(REPS)]  # type: ignore[misc]
    return times, images


def _which(store: Store, spec: which_mod.Spec) -> which_mod.Answer:
    with store.reading() as conn:
        answer = which_mod.which(conn, spec)
    which_mod.render(answer)
    return answer


def _trace(store: Store, digest: str) -> None:
    with store.reading() as conn:
        found = trace_mod.trace(conn, digest)
    trace_mod.render(found)


def _rescan(store: Store, folder: Path) -> rescan_mod.Rescan:
    with store.writing() as conn:
        done = rescan_mod.rescan(conn, folder)
    rescan_mod.render(done)
    return done


def _cli(env: dict[str, str], *args: str) -> None:
    done = subprocess.run(["tfgov-ci", *args], env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"bench: tfgov-ci {' '.join(args)} exited {done.returncode}: {done.stderr[-2000:]}")


# -- baselines ----------------------------------------------------------------------------------


def _matches(spec: which_mod.Spec, purl: str, name: str, version: str) -> bool:
    """The same question asked of one SBOM component, as a user's script would."""
    kind = purl.removeprefix("pkg:").partition("/")[0] if purl else "unknown"
    source = advisories.source_name(purl) if kind == "deb" else None
    if spec.purl is not None:
        wanted = spec.purl.rpartition("/")[2]
        if not purl.startswith(spec.purl.rpartition("/")[0] + "/") or wanted not in (name, source):
            return False
    else:
        assert spec.name is not None
        if normalise_name(name) != normalise_name(spec.name) and source != spec.name:
            return False
    return bool(spec.admits(kind, version))


def python_json(spec: which_mod.Spec, sboms: list[Path]) -> int:
    """Every SBOM file read with Python's json, each component asked (a cheap test of the name
    first, as a script written for speed would)."""
    wanted = (spec.purl or "").rpartition("/")[2] or normalise_name(spec.name or "")
    upstream = f"upstream={wanted}"
    found = 0
    for path in sboms:
        doc = json.loads(path.read_bytes())
        for c in doc.get("components") or []:
            name, purl = c.get("name") or "", c.get("purl") or ""
            if wanted not in name.lower().replace("_", "-").replace(".", "-") and upstream not in purl:
                continue
            if _matches(spec, purl, name, c.get("version") or ""):
                found += 1
                break
    return found


def jq_filter(spec: which_mod.Spec) -> str:
    if spec.purl is not None:
        prefix, _, name = spec.purl.rpartition("/")
        select = (
            f'(.name == "{name}" or ((.purl // "") | contains("upstream={name}"))) and '
            f'((.purl // "") | startswith("{prefix}/"))'
        )
    else:
        assert spec.name is not None
        name = normalise_name(spec.name)
        select = (
            f'((.name // "") | ascii_downcase) == "{name}" or ((.purl // "") | contains("upstream={name}"))'
        )
    return f'.components[]? | select({select}) | [input_filename, .purl // "", .name, .version] | @tsv'


def jq(spec: which_mod.Spec, sboms: list[Path], jq_bin: str) -> int:
    """jq picks the components of that name out of every file; the version range (which jq
    cannot order) is then decided in Python, the same way."""
    done = subprocess.run(
        [jq_bin, "-r", jq_filter(spec), *map(str, sboms)], capture_output=True, text=True, check=True
    )
    files = set()
    for line in done.stdout.splitlines():
        path, purl, name, version = line.split("\t")
        if _matches(spec, purl, name, version):
            files.add(path)
    return len(files)


def scan_per_sbom(folder: Path, cache: Path, sboms: list[Path]) -> tuple[float, int]:
    """The scan stage's offline matcher once per SBOM, as each pipeline runs it (cached index)."""
    found = 0
    start = time.perf_counter()
    for path in sboms:
        db = advisories.Database.open(folder, cache)
        found += len(db.match(advisories.sbom_packages(json.loads(path.read_bytes()))))
    return time.perf_counter() - start, found


# -- the run ------------------------------------------------------------------------------------


def fleet_in(folder: Path, images: int, per_image: int, pool: dict[str, list[str]]) -> Fleet:
    """The fleet in ``folder``: made there, or the one made there before with the same sizes."""
    marker = folder / "fleet.json"
    wanted = {"images": images, "packages": per_image, "seed": SEED}
    if marker.is_file() and json.loads(marker.read_text()) == wanted:
        paths = [folder / f"out-{i:05d}" for i in range(images)]
        digests = ["sha256:" + _sha(f"bench-image-{i}") for i in range(images)]
        return Fleet(folder, paths, digests, [p / "sbom" / "sbom.cdx.json" for p in paths])
    shutil.rmtree(folder, ignore_errors=True)
    fleet = make_fleet(folder, images, per_image, pool)
    marker.write_text(json.dumps(wanted))
    return fleet


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10_000, help="images in the fleet (10,000)")
    parser.add_argument("--packages", type=int, default=300, help="packages per image (300)")
    parser.add_argument("--backends", default="sqlite,postgresql", help="sqlite,postgresql")
    parser.add_argument("--rescan-sample", type=int, default=100, help="SBOMs the per-SBOM scan runs on")
    parser.add_argument("--fleet", type=Path, help="make the fleet here and keep it (reused when there)")
    args = parser.parse_args()
    backends = args.backends.split(",")
    jq_bin = shutil.which("jq")
    if "postgresql" in backends and bin_dir() is None:
        print("bench: the PostgreSQL server is not installed (make setup)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="tfgov-bench-inventory.") as tmpdir:
        tmp = Path(tmpdir)
        with tarfile.open(ROOT / "tests/fixtures/osv/pypa-advisory-database.tar.gz") as archive:
            archive.extractall(tmp, filter="data")
        folder = tmp / "pypa-advisory-database" / "vulns"
        cache = tmp / "cache"
        os.environ["TFGOV_CACHE_DIR"] = str(cache)  # rescan's index cache, warmed here for both sides
        env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}
        db = advisories.Database.open(folder, cache)
        print(f"bench: setup (not timed): a fleet of {args.images} x {args.packages}", file=sys.stderr)
        start = time.perf_counter()
        fleet = fleet_in(args.fleet or tmp / "fleet", args.images, args.packages, pypi_pool(db))
        size = sum(p.stat().st_size for p in fleet.sboms)
        print(
            f"bench: fleet ready in {time.perf_counter() - start:.0f} s ({size / 1e9:.2f} GB of SBOMs)",
            file=sys.stderr,
        )
        results = []
        if "sqlite" in backends:
            results.append(measure("SQLite", f"sqlite:///{tmp}/inventory.db", fleet, folder, env))
        if "postgresql" in backends:
            with LocalPostgres() as pg:
                results.append(measure("PostgreSQL", pg.url, fleet, folder, env))
        print("bench: baselines: jq and Python json over every SBOM, per which spec", file=sys.stderr)
        base_jq: dict[str, float] = {}
        base_py: dict[str, float] = {}
        base_images: dict[str, int] = {}
        for text, purl in SPECS:
            spec = spec_of(text, purl)
            counted: list[int] = []
            if jq_bin and text in JQ_SPECS:
                base_jq[text] = timed(lambda: counted.append(jq(spec, fleet.sboms, jq_bin)))  # noqa: B023
            base_py[text] = timed(lambda: counted.append(python_json(spec, fleet.sboms)))  # noqa: B023
            base_images[text] = counted[-1]
            if len(set(counted)) != 1:
                raise SystemExit(f"bench: the baselines disagree on {text}: {counted}")
        sample_n = min(args.rescan_sample, len(fleet.sboms))
        step = len(fleet.sboms) / sample_n
        sample = [fleet.sboms[int(k * step)] for k in range(sample_n)]
        print(f"bench: baseline: the scan stage once per SBOM, on {sample_n}", file=sys.stderr)
        scan_s, scan_found = scan_per_sbom(folder, cache, sample)
        scan_fleet = scan_s / sample_n * len(fleet.sboms)
        report(
            jq_bin,
            args,
            results,
            base_jq,
            base_py,
            base_images,
            (scan_s, sample_n, scan_fleet, scan_found),
            db,
        )
    return 0


def report(
    jq_bin: str | None,
    args: argparse.Namespace,
    results: list[Results],
    base_jq: dict[str, float],
    base_py: dict[str, float],
    base_images: dict[str, int],
    scan: tuple[float, int, float, int],
    db: advisories.Database,
) -> None:
    scan_s, sample_n, scan_fleet, scan_found = scan
    n = args.images
    baseline = {t: min(v for v in (base_jq.get(t), base_py.get(t)) if v is not None) for t, _ in SPECS}
    print(
        f"\nInventory: {n} images x {args.packages} packages, PyPA database ({db.files} files); "
        f"{dt.date.today()}"
    )
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB\n"
    )
    names = [r.name for r in results]
    print(f"| measure | {' | '.join(names)} | baseline | goal |")
    print(f"|---|{'---|' * len(names)}---|---|")
    extrapolated = "" if sample_n >= n else f", {sample_n} SBOMs timed, extrapolated"
    rows: list[tuple[str, list[str], str, str]] = []
    verdicts = []

    def verdict(ok: bool) -> str:
        verdicts.append(ok)
        return "met" if ok else "**missed**"

    ingest = [n / r.ingest_s for r in results]
    rows.append(
        (
            "ingest (`inventory import`)",
            [f"{v:.0f} images/s" for v in ingest],
            "-",
            f"> 500/s: {verdict(min(ingest) > 500)}",
        )
    )
    all_which = {r.name: [t for ts in (r.which or {}).values() for t in ts] for r in results}
    p50s = [statistics.median(all_which[r.name]) for r in results]
    p95s = [p95(all_which[r.name]) for r in results]
    base_median = statistics.median(baseline.values())
    ratios = [min(baseline[t] / statistics.median((r.which or {})[t]) for t, _ in SPECS) for r in results]
    rows.append(
        (
            "`which` p50, all specs",
            [f"{v * 1000:.1f} ms" for v in p50s],
            f"{base_median:.2f} s (median spec, faster of jq / json)",
            "",
        )
    )
    rows.append(
        (
            "`which` p95, all specs",
            [f"{v * 1000:.1f} ms" for v in p95s],
            "",
            f"< 20 ms: {verdict(max(p95s) < 0.020)}",
        )
    )
    rows.append(
        (
            "`which` vs baseline, worst spec",
            [f"{v:,.0f}x" for v in ratios],
            "",
            f">= 100x: {verdict(min(ratios) >= 100)}",
        )
    )
    t50 = [statistics.median(r.trace or []) for r in results]
    t95 = [p95(r.trace or []) for r in results]
    rows.append(("`trace` by digest p50", [f"{v * 1000:.1f} ms" for v in t50], "-", ""))
    rows.append(
        (
            "`trace` by digest p95",
            [f"{v * 1000:.1f} ms" for v in t95],
            "-",
            f"< 10 ms: {verdict(max(t95) < 0.010)}",
        )
    )
    first = [r.rescan_first for r in results]
    rows.append(
        (
            f"`rescan`, whole fleet, first ({results[0].rescan_new if results else 0} new findings, "
            f"{results[0].rescan_versions if results else 0} versions)",
            [f"{v:.2f} s" for v in first],
            f"{scan_fleet:.0f} s (scan stage per SBOM{extrapolated})",
            f"< 5 s: {verdict(max(first) < 5)}",
        )
    )
    rows.append(
        (
            "`rescan` vs baseline",
            [f"{scan_fleet / v:,.0f}x" for v in first],
            "",
            f">= 100x: {verdict(min(scan_fleet / v for v in first) >= 100)}",
        )
    )
    rows.append(("`rescan` again (nothing new)", [f"{r.rescan_again:.2f} s" for r in results], "", ""))
    rows.append(
        (
            f"`tfgov-ci which '{SPECS[0][0]}'` (whole process)",
            [f"{r.cli_which:.2f} s" for r in results],
            "",
            "(start-up included)",
        )
    )
    rows.append(
        (
            "`tfgov-ci trace DIGEST` (whole process)",
            [f"{r.cli_trace:.2f} s" for r in results],
            "",
            "(start-up included)",
        )
    )
    for label, values, base, goal in rows:
        print(f"| {label} | {' | '.join(values)} | {base} | {goal} |")
    print(f"\nper `which` spec, median of {REPS} (images found; baselines once each):\n")
    print(f"| spec | images | {' | '.join(names)} | jq | Python json | vs faster baseline |")
    print(f"|---|---|{'---|' * len(names)}---|---|---|")
    for text, purl in SPECS:
        ours = [statistics.median((r.which or {})[text]) for r in results]
        for r in results:
            if (r.which_images or {})[text] != base_images[text]:
                raise SystemExit(
                    f"bench: {r.name} found {(r.which_images or {})[text]} images with {text}, "
                    f"the baselines {base_images[text]}"
                )
        shown = f"--purl {text}" if purl else text
        jq_s = f"{base_jq[text]:.2f} s" if text in base_jq else ("-" if jq_bin else "not installed")
        print(
            f"| `{shown}` | {base_images[text]} | {' | '.join(f'{v * 1000:.1f} ms' for v in ours)} | "
            f"{jq_s} | {base_py[text]:.2f} s | {' / '.join(f'{baseline[text] / v:,.0f}x' for v in ours)} |"
        )
    print(
        f"\nrescan baseline: {sample_n} SBOMs in {scan_s:.1f} s ({scan_s / sample_n * 1000:.0f} ms each, "
        f"{scan_found} findings){'' if sample_n >= n else f', x {n / sample_n:.0f} for the fleet'}"
    )
    print(f"\ngoals: {sum(verdicts)} of {len(verdicts)} met")


if __name__ == "__main__":
    raise SystemExit(main())
