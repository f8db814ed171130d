"""CI overhead benchmark: the emitted GitLab pipeline run by gitlab-ci-local (shell executor) beside
the same stages run by `tfgov-ci run STAGE` one after another, on the same model, in the same run.

The model is the tests' small one (PyYAML on a small Debian base, offline osv scan); stages
validate, lock, build, sbom, scan, policy, sign, publish (record is not in this version). Both
sides start from an empty out directory with warm caches (layers, the base's SBOM), and push to
the same local registry. What the difference measures: gitlab-ci-local's plumbing (a copy of the
repository per job, artifacts in and out, job start-up), the cost a GitLab runner's would resemble.
Median of 3, interleaved.
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

from _common import ROOT, SHARED_CACHE, git, pushed_base, small_model

from tfgov_ci.testing.registry import LocalRegistry

RUNS = 3
STAGES = ("validate", "lock", "build", "sbom", "scan", "policy", "sign", "publish")
CI = f"""include:
  - local: templates/gitlab/tfgov.yml
    inputs:
      stages: "{" ".join(STAGES)}"
"""


def timed(argv: list[str], repo: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(argv, cwd=repo, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"bench: {' '.join(argv[:2])} failed:\n{done.stdout[-3000:]}{done.stderr[-2000:]}")
    return elapsed


def clean(repo: Path) -> None:
    shutil.rmtree(repo / ".tfgov", ignore_errors=True)
    shutil.rmtree(repo / ".gitlab-ci-local", ignore_errors=True)


def main() -> int:
    if shutil.which("gitlab-ci-local") is None:
        print("bench: gitlab-ci-local missing (make setup)", file=sys.stderr)
        return 2
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "TFGOV_CACHE_DIR": str(SHARED_CACHE),
        "SYFT_CHECK_FOR_APP_UPDATE": "false",
    }
    with tempfile.TemporaryDirectory(prefix="tfgov-bench-ci.") as tmpdir, LocalRegistry() as registry:
        tmp = Path(tmpdir)
        print("bench: setup (not timed)", file=sys.stderr)
        # the sign stage's key, as masked CI variables (both sides read them from the environment)
        env["COSIGN_PASSWORD"] = "bench-only"
        cosign = shutil.which("cosign") or str(Path(sys.executable).parent / "cosign")
        subprocess.run([cosign, "generate-key-pair"], cwd=tmp, env=env, check=True, capture_output=True)
        env["COSIGN_PRIVATE_KEY"] = (tmp / "cosign.key").read_text()
        base_ref = pushed_base(tmp / "base", registry)
        files = {
            "requirements.txt": "PyYAML==6.0.2\n",
            "app.py": "import yaml\nprint('hello')\n",
            ".gitlab-ci.yml": CI,
            ".gitignore": ".tfgov/\n.gitlab-ci-local/\n",
            "templates/gitlab/tfgov.yml": (ROOT / "templates" / "gitlab" / "tfgov.yml").read_text(),
        }
        repo = small_model(tmp / "hello", base_ref, registry.host, env, files)
        git(repo, "remote", "add", "origin", "https://gitlab.example.com/ml/hello.git")
        glci = ["gitlab-ci-local", "--force-shell-executor", "--shell-isolation", "--no-artifacts-to-source"]
        # gitlab-ci-local is a local run (GITLAB_CI=false), so both sides make the same image and
        # publish finds its commit tags already pointing at it (pushing nothing new either side).
        for stage in STAGES:  # warm the caches once (layers, the base's SBOM)
            timed(["tfgov-ci", "run", stage], repo, env)
        ci_times, direct_times = [], []
        for _ in range(RUNS):  # interleaved, so that drift in the machine's load hits both
            clean(repo)
            ci_times.append(timed(glci, repo, env))
            clean(repo)
            start = time.perf_counter()
            for stage in STAGES:
                timed(["tfgov-ci", "run", stage], repo, env)
            direct_times.append(time.perf_counter() - start)
    ci_s, direct_s = statistics.median(ci_times), statistics.median(direct_times)
    print(
        f"\nCI overhead, {time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, stages {', '.join(STAGES)}, median of {RUNS}\n"
    )
    print("| how | median | vs direct |\n|---|---|---|")
    print(f"| `tfgov-ci run STAGE`, one after another | {direct_s:.2f} s | 1.00x |")
    print(f"| emitted GitLab pipeline in gitlab-ci-local | {ci_s:.2f} s | {ci_s / direct_s:.2f}x |")
    extra = ci_s - direct_s
    print(f"\nCI plumbing: {extra:+.2f} s for {len(STAGES)} jobs ({extra / len(STAGES):+.2f} s a job)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
