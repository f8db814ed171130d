"""SBOM benchmark: tfgov-ci's sbom stage beside bare syft on the same TensorFlow image, same run.

The image is the TensorFlow example built natively on a TensorFlow-ready base (tensorflow-cpu in a
layer of its own). Bare syft writes the same two documents (SPDX and CycloneDX); the stage adds the
annotations, the summary and the drift check (the base's SBOM is made once, before timing, as it
is cached per base digest). Median of 3 each. Goal (issue 4): the stage within 5% of bare syft.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import ROOT, SHARED_CACHE, git, pushed_base

from tfgov_ci.testing.registry import LocalRegistry

BASE = """version: 1
image: {name: tf-ready, repository: platform/tf-ready}
debian:
  packages: [python3.11-minimal, libpython3.11-stdlib, libstdc++6, libgomp1]
python: "3.11"
"""
RUNS = 3


def run(argv: list[str], cwd: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"bench: {' '.join(argv[:3])} failed: {done.stderr[-2000:]}")
    return time.perf_counter() - start


def main() -> int:
    syft = shutil.which("syft") or shutil.which("syft", path=str(Path(sys.executable).parent))
    if syft is None or shutil.which("tfgov-ci") is None:
        print("bench: syft or tfgov-ci missing (make setup)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="tfgov-bench-sbom.") as tmpdir, LocalRegistry() as registry:
        tmp = Path(tmpdir)
        env = {**os.environ, "TFGOV_CACHE_DIR": str(SHARED_CACHE), "SYFT_CHECK_FOR_APP_UPDATE": "false"}
        print("bench: setup (not timed)", file=sys.stderr)
        base_ref = pushed_base(tmp / "base", registry, BASE)
        repo = tmp / "tf-mnist"
        shutil.copytree(
            ROOT / "examples" / "tf-mnist", repo, ignore=shutil.ignore_patterns(".tfgov", "model")
        )
        config = (repo / "tfgov.yaml").read_text()
        pinned = r"registry\.example\.com/platform/tf-base@sha256:[0-9a-f]{64}"
        config = re.sub(pinned, base_ref, config).replace("registry.example.com", registry.host)
        (repo / "tfgov.yaml").write_text(config)
        git(repo, "init", "-q", "-b", "main")
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "-m", "bench")
        run(["tfgov-ci", "lock"], repo, env)
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "-m", "lock")
        for stage in ("validate", "lock", "build", "sbom"):  # the last one makes the base's SBOM: cached
            run(["tfgov-ci", "run", stage], repo, env)
        layout = repo / ".tfgov/out/build/oci"
        bare = [
            syft,
            "scan",
            f"oci-dir:{layout}",
            "--quiet",
            "-o",
            f"spdx-json={tmp / 's.json'}",
            "-o",
            f"cyclonedx-json={tmp / 'c.json'}",
        ]
        stage_times, syft_times = [], []
        for _ in range(RUNS):  # interleaved, so that drift in the machine's load hits both
            syft_times.append(run(bare, repo, env))
            stage_times.append(run(["tfgov-ci", "run", "sbom"], repo, env))
    syft_s, stage_s = statistics.median(syft_times), statistics.median(stage_times)
    overhead = (stage_s - syft_s) / syft_s
    print(
        f"sbom benchmark, {time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, TensorFlow example image, median of {RUNS}"
    )
    print()
    print("| command | median | vs syft |")
    print("|---|---|---|")
    print(f"| `syft scan` (SPDX + CycloneDX) | {syft_s:.2f} s | 1.00x |")
    print(
        f"| `tfgov-ci run sbom` (+ annotations, summary, drift) | {stage_s:.2f} s | {stage_s / syft_s:.2f}x |"
    )
    print()
    print(f"goal: overhead under 5%: {overhead * 100:.1f}% ({'met' if overhead < 0.05 else 'MISSED'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
