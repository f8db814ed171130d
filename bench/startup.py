"""Start-up cost of the tfgov-ci command, beside bare Python, in the same run.

Median wall time of 10 runs each of: ``python -c pass``, ``tfgov-ci --version`` and
``tfgov-ci plan`` on the example (a throwaway git repository of examples/tf-mnist).
Goals (issue 2): --version within 0.25 s of bare Python; plan under 1 s.
"""

from __future__ import annotations

import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUNS = 10


def median_seconds(argv: list[str], cwd: Path) -> float:
    subprocess.run(argv, cwd=cwd, check=True, capture_output=True)  # warm the page cache
    times = []
    for _ in range(RUNS):
        start = time.perf_counter()
        subprocess.run(argv, cwd=cwd, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> int:
    tfgov = shutil.which("tfgov-ci")
    if tfgov is None:
        print("bench: tfgov-ci is not on PATH (run `make setup`, then `make bench`)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "tf-mnist"
        shutil.copytree(ROOT / "examples" / "tf-mnist", repo)
        env_git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@example.com"]
        subprocess.run(["git", "init", "-q", "-b", "main"], cwd=repo, check=True)
        subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
        subprocess.run([*env_git, "commit", "-q", "-m", "bench"], cwd=repo, check=True)
        bare = median_seconds([sys.executable, "-c", "pass"], repo)
        version = median_seconds([tfgov, "--version"], repo)
        plan = median_seconds([tfgov, "plan"], repo)
    print(
        f"startup benchmark: median of {RUNS}, {time.strftime('%Y-%m-%d')}, "
        f"{platform.machine()} {platform.python_implementation()} {platform.python_version()}"
    )
    print()
    print("| command | median | vs bare python | goal |")
    print("|---|---|---|---|")
    print(f"| `python -c pass` | {bare:.3f} s | 1.00x | |")
    print(
        f"| `tfgov-ci --version` | {version:.3f} s | {version / bare:.2f}x (+{version - bare:.3f} s) "
        f"| +0.25 s: {'met' if version - bare <= 0.25 else 'MISSED'} |"
    )
    print(
        f"| `tfgov-ci plan` (example) | {plan:.3f} s | {plan / bare:.2f}x "
        f"| < 1 s: {'met' if plan < 1 else 'MISSED'} |"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
