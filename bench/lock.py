"""Lock benchmark: the lock stage with uv (default) beside pip-tools, on the TensorFlow example's
requirements (tensorflow-cpu 2.21.0 and PyYAML: 30-odd packages with hashes), in the same run.

Both lock for the same base (Python 3.11, Debian 12's glibc; this machine's too, which pip-tools
needs), from scratch each time (the lock file removed, so neither keeps earlier pins), with warm
caches (each has resolved once before timing). Median of 5, interleaved. Also checks that both
lock the same versions with the same hashes.
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
from tfgov_ci.wheels import parse_lock

RUNS = 5
BASE = """version: 1
image: {name: tf-ready, repository: platform/tf-ready}
debian:
  packages: [python3.11-minimal, libpython3.11-stdlib, libstdc++6, libgomp1]
python: "3.11"
"""
BACKENDS = ("uv", "pip-tools")


def lock(repo: Path, env: dict[str, str]) -> float:
    (repo / "requirements.lock").unlink(missing_ok=True)
    start = time.perf_counter()
    done = subprocess.run(
        ["tfgov-ci", "lock"], cwd=repo, env=env, capture_output=True, text=True, check=False
    )
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"bench: tfgov-ci lock failed in {repo.name}: {done.stderr[-2000:]}")
    return elapsed


def main() -> int:
    env = {**os.environ, "TFGOV_CACHE_DIR": str(SHARED_CACHE)}
    with tempfile.TemporaryDirectory(prefix="tfgov-bench-lock.") as tmpdir, LocalRegistry() as registry:
        tmp = Path(tmpdir)
        print("bench: setup (not timed)", file=sys.stderr)
        base_ref = pushed_base(tmp / "base", registry, BASE)
        repos = {}
        for backend in BACKENDS:
            repo = tmp / backend
            shutil.copytree(
                ROOT / "examples" / "tf-mnist", repo, ignore=shutil.ignore_patterns(".tfgov", "model")
            )
            pinned = r"registry\.example\.com/platform/tf-base@sha256:[0-9a-f]{64}"
            config = re.sub(pinned, base_ref, (repo / "tfgov.yaml").read_text())
            config = config.replace("registry.example.com", registry.host)
            (repo / "tfgov.yaml").write_text(config + f"\nstages:\n  lock:\n    backend: {backend}\n")
            git(repo, "init", "-q", "-b", "main")
            git(repo, "add", "-A")
            git(repo, "commit", "-q", "-m", "bench")
            lock(repo, env)  # warm: indexes and wheels' metadata cached
            repos[backend] = repo
        times: dict[str, list[float]] = {backend: [] for backend in BACKENDS}
        for _ in range(RUNS):  # interleaved, so that drift in the machine's load hits both
            for backend in BACKENDS:
                times[backend].append(lock(repos[backend], env))
        locked = {
            backend: {
                (r.name, r.version, tuple(sorted(r.hashes))) for r in parse_lock(repo / "requirements.lock")
            }
            for backend, repo in repos.items()
        }
    uv_s, pip_tools_s = (statistics.median(times[b]) for b in BACKENDS)
    print(
        f"\nlock benchmark, {time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, TensorFlow example ({len(locked['uv'])} packages), "
        f"warm caches, median of {RUNS}\n"
    )
    print("| backend | median | vs uv |\n|---|---|---|")
    print(f"| uv (`uv pip compile`) | {uv_s:.2f} s | 1.00x |")
    print(f"| pip-tools (`pip-compile`) | {pip_tools_s:.2f} s | {pip_tools_s / uv_s:.2f}x |")
    same = locked["uv"] == locked["pip-tools"]
    print(f"\nthe same versions and hashes from both: {'yes' if same else 'NO'}")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
