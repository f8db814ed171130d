"""SBOM benchmark: tfgov-ci's sbom stage beside bare syft on the same TensorFlow image, same run.

The image is the TensorFlow example built natively on a TensorFlow-ready base (tensorflow-cpu in a
layer of its own). Two runs of the stage, each beside what it replaces:

- cold, no layer catalogued yet (a new base): beside syft on the whole image (the same two
  documents, SPDX and CycloneDX) then on the base alone, which is what the stage ran before it
  catalogued layers (issue 15's goal: cold no more than 10% slower than that);
- after a one-line code change, committed and built: beside syft on the whole image, and the peak
  memory of the stage's largest process (goal: under 300 MB).

Median of 3 each, interleaved.
"""

from __future__ import annotations

import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import SHARED_CACHE, code_change, locked_repo, pushed_base, tf_example

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
        config = tf_example(repo, base_ref, registry.host)
        locked_repo(repo, config, env)
        for stage in ("validate", "lock", "build"):
            run(["tfgov-ci", "run", stage], repo, env)
        layout = repo / ".tfgov/out/build/oci"
        base = tmp / "base" / "oci"
        whole = [syft, "scan", f"oci-dir:{layout}", "--quiet"]
        whole += ["-o", f"spdx-json={tmp / 's.json'}", "-o", f"cyclonedx-json={tmp / 'c.json'}"]
        # What the stage ran before it catalogued layers, on a new base: the whole image, then the
        # base alone (for the drift check; cached per base digest afterwards).
        base_alone = [syft, "scan", f"oci-dir:{base}", "--quiet", "-o", f"cyclonedx-json={tmp / 'b.json'}"]
        layers = SHARED_CACHE / "sbom-layers"
        cold, before, warm, bare, peaks = [], [], [], [], []
        for number in range(RUNS):  # interleaved, so that drift in the machine's load hits each
            shutil.rmtree(layers, ignore_errors=True)
            cold.append(run(["tfgov-ci", "run", "sbom"], repo, env))
            before.append(run(whole, repo, env) + run(base_alone, repo, env))
            # A one-line code change, committed and built (not timed): then the stage again.
            code_change(repo, f"change {number}")
            for stage in ("validate", "lock", "build"):  # a new commit: its own validate and lock
                run(["tfgov-ci", "run", stage], repo, env)
            seconds, peak = run_measured(["tfgov-ci", "run", "sbom"], repo, env)
            warm.append(seconds)
            peaks.append(peak)
            bare.append(run(whole, repo, env))
    cold_s, before_s = statistics.median(cold), statistics.median(before)
    warm_s, bare_s = statistics.median(warm), statistics.median(bare)
    peak_mb = max(peaks) / 1024
    print(
        f"sbom benchmark, {time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, TensorFlow example image (tensorflow-cpu in a layer of its "
        f"own), median of {RUNS}, interleaved, load average {os.getloadavg()[0]:.1f} at the end"
    )
    print()
    print("| run | tfgov-ci sbom stage | beside it | ratio |")
    print("|---|---|---|---|")
    print(
        f"| cold (no layer cached) | {cold_s:.2f} s | {before_s:.2f} s: syft on the whole image, then on "
        f"the base (what the stage ran before) | {cold_s / before_s:.2f}x |"
    )
    print(
        f"| after a one-line code change | {warm_s:.2f} s | {bare_s:.2f} s: syft on the whole image | "
        f"{warm_s / bare_s:.2f}x |"
    )
    print()
    cold_ok = cold_s <= before_s * 1.10
    print(
        f"goal: cold no more than 10% slower than before: {cold_s / before_s:.2f}x "
        f"({'met' if cold_ok else 'MISSED'})"
    )
    print(
        f"goal: peak memory of the stage's largest process on the warm run under 300 MB: {peak_mb:.0f} MB "
        f"({'met' if peak_mb < 300 else 'MISSED'})"
    )
    return 0


def run_measured(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, int]:
    """Seconds, and the peak resident set (KB) of the largest process the command ran (GNU time's
    %M: the command's own, or its largest child's, syft's)."""
    out = cwd.parent / "time.txt"  # outside the repository: its tree stays clean
    seconds = run(["/usr/bin/time", "-o", str(out), "-f", "%M", *argv], cwd, env)
    return seconds, int(out.read_text().split()[-1])


if __name__ == "__main__":
    raise SystemExit(main())
