"""Policy benchmark: `tfgov-ci run policy` on 10,000 findings, beside bare regopy evaluating the same
rules over the same input document in-process, in the same run.

Set-up (not timed): a small model image built for real on a small Debian base (validate, lock,
build, sbom, scan), then the scan's findings file replaced by 10,000 findings (1,000 packages x 10
advisories; 5% critical, 20% high, 40% medium, 30% low, 5% unknown; 40% with a fix) and a governed
exceptions file of 100 entries. The command (a whole `tfgov-ci` process: start-up, the project and
its git context, the stage, the build record) denies, as it should; the stage's own time is the
`duration_s` its result records (input document, exceptions, evaluation in a forked regopy, four
reports); bare regopy is the evaluation alone. Median of 5. Goal (issue 5): the stage under 1 s.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import SHARED_CACHE, pushed_base, small_model

from tfgov_ci.findings import Finding, Scanner, ScanReport
from tfgov_ci.stages.policy.interface import load_modules, settings
from tfgov_ci.testing.registry import LocalRegistry

RUNS = 5
SEVERITIES = ["CRITICAL"] * 5 + ["HIGH"] * 20 + ["MEDIUM"] * 40 + ["LOW"] * 30 + ["UNKNOWN"] * 5


def exceptions_file(expires: dt.date) -> str:
    rows = [
        f"  - {{id: CVE-2099-{i:05d}, package: package-{i // 10:04d}, reason: accepted for the benchmark, "
        f"owner: bench@example.com, approved_by: security@example.com, expires: {expires}}}"
        for i in range(0, 10_000, 100)
    ]
    return "version: 1\nexceptions:\n" + "\n".join(rows) + "\n"


def synthetic_findings() -> list[Finding]:
    out = []
    for i in range(10_000):
        fixed = i % 5 < 2
        name = f"package-{i // 10:04d}"
        out.append(
            Finding(
                id=f"CVE-2099-{i:05d}",
                package=name,
                package_type="pypi",
                installed_version="1.0.0",
                purl=f"pkg:pypi/{name}@1.0.0",
                aliases=(f"PYSEC-2099-{i}",),
                fixed_versions=("1.0.1",) if fixed else (),
                severity=SEVERITIES[i % len(SEVERITIES)],
                fix_state="fixed" if fixed else "not-fixed",
                title=f"synthetic advisory {i}",
                scanners=("trivy",),
            )
        )
    return out


def tfgov(repo: Path, env: dict[str, str], *args: str, expect: int = 0) -> float:
    start = time.perf_counter()
    done = subprocess.run(["tfgov-ci", *args], cwd=repo, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    if done.returncode != expect:
        raise SystemExit(f"bench: tfgov-ci {' '.join(args)} exited {done.returncode}: {done.stderr[-2000:]}")
    return elapsed


def bare_regopy(document: dict[str, object], params: dict[str, object]) -> float:
    """The same rules, data and input straight into regopy, no fork, no reports."""
    from regopy import Interpreter

    start = time.perf_counter()
    interpreter = Interpreter()
    for module in load_modules(None, settings({})):
        interpreter.add_module(str(module.file), module.text)
    interpreter.add_data_json(json.dumps({"tfgov": {"params": params}}))
    interpreter.set_input(document)
    output = interpreter.query("data.tfgov.rules")
    if not output.ok():
        raise SystemExit("bench: bare regopy failed")
    return time.perf_counter() - start


def main() -> int:
    env = {**os.environ, "TFGOV_CACHE_DIR": str(SHARED_CACHE), "SYFT_CHECK_FOR_APP_UPDATE": "false"}
    with tempfile.TemporaryDirectory(prefix="tfgov-bench-policy.") as tmpdir, LocalRegistry() as registry:
        tmp = Path(tmpdir)
        print("bench: setup (not timed)", file=sys.stderr)
        base_ref = pushed_base(tmp / "base", registry)
        expires = dt.datetime.now(dt.UTC).date() + dt.timedelta(days=30)
        files = {
            "requirements.txt": "",
            "app.py": "print('hello')\n",
            "tfgov-exceptions.yaml": exceptions_file(expires),
        }
        repo = small_model(tmp / "hello", base_ref, registry.host, env, files)
        for stage in ("validate", "lock", "build", "sbom", "scan"):
            tfgov(repo, env, "run", stage)
        scan = json.loads((repo / ".tfgov/out/scan/result.json").read_text())
        findings = ScanReport(
            scan["data"]["target"], (Scanner("trivy", "synthetic"),), tuple(synthetic_findings())
        )
        findings.write(Path(scan["outputs"]["findings"]))
        command_times, stage_times, bare_times = [], [], []
        for _ in range(RUNS):  # interleaved, so that drift in the machine's load hits both
            command_times.append(tfgov(repo, env, "run", "policy", expect=1))
            stage_times.append(json.loads((repo / ".tfgov/out/policy/result.json").read_text())["duration_s"])
            document = json.loads((repo / ".tfgov/out/policy/policy-input.json").read_text())
            bare_times.append(bare_regopy(document, dict(settings({}).params)))
        decision = json.loads((repo / ".tfgov/out/policy/decision.json").read_text())
    command_s, stage_s, bare_s = (statistics.median(t) for t in (command_times, stage_times, bare_times))
    print(
        f"\npolicy benchmark, {time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, 10,000 findings, 100 exceptions, median of {RUNS}\n"
    )
    rows = [
        ("bare regopy (the rules over the saved input, in-process)", bare_s),
        ("the policy stage (its result's duration: exceptions, evaluation, 4 reports)", stage_s),
        ("`tfgov-ci run policy` (the whole command: start-up, git context, stage, record)", command_s),
    ]
    print("| command | median | vs bare regopy |\n|---|---|---|")
    for name, seconds in rows:
        print(f"| {name} | {seconds:.2f} s | {seconds / bare_s:.2f}x |")
    used = len(decision["exceptions"]["used"])
    print(f"\ndenials: {len(decision['denials'])}; exceptions used: {used}")
    print(f"goal: the stage under 1 s: {'met' if stage_s < 1 else 'NOT met'} ({stage_s:.2f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
