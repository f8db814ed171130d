"""The README's main job, end to end: scripts/demo.sh on a throwaway clone of the example."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.helpers import ROOT, require_tool


def test_demo_runs_the_whole_governed_pipeline_and_verifies_what_it_pushed() -> None:
    for tool in ("git", "docker-registry", "skopeo", "apt-get", "dpkg-deb", "cosign"):
        require_tool(tool)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "COLUMNS": "120"}
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "demo.py")],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
        check=False,
    )
    # Every stage passes; the demo then asks verify whether the pushed image may run.
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "pushed  127.0.0.1:" in done.stdout  # the central base, into the demo's own registry
    assert "== tfgov-ci plan" in done.stdout
    assert re.search(r"image:   127\.0\.0\.1:[0-9]+/ml/tf-mnist:[0-9a-f]{40}", done.stdout)
    assert "9 stages, 9 available in this version; nothing was run" in done.stdout
    assert "tfgov-ci run: passed" in done.stdout  # the summary table's title
    assert "record: .tfgov/out/record.json" in done.stdout
    for stage in ("validate", "lock", "build", "sbom", "scan", "policy", "sign", "publish", "record"):
        assert f"✔ {stage} passed" in done.stderr
    assert re.search(
        r"^allowed: 127\.0\.0\.1:[0-9]+/ml/tf-mnist:main \(sha256:[0-9a-f]{64}\)$", done.stdout, re.M
    )
    assert "ok   attestation provenance:" in done.stdout and "ok   sbom:" in done.stdout
    assert "demo-only-password" not in done.stdout + done.stderr
    assert re.search(r"wrote fetched\.spdx\.json \([0-9]+ bytes, spdx\)", done.stderr)
    assert "Traceback" not in done.stderr


def test_the_installed_command_shows_no_traceback_on_bad_input(tmp_path: Path) -> None:
    (tmp_path / "tfgov.yaml").write_text("version: 1\nimage: [\n")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    done = subprocess.run(
        ["tfgov-ci", "validate"], cwd=tmp_path, capture_output=True, text=True, env=env, check=False
    )
    assert done.returncode == 2
    assert done.stderr.startswith("error: tfgov.yaml:3: YAML syntax error")
    assert "Traceback" not in done.stderr
