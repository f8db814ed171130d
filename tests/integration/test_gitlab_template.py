"""The emitted GitLab template, expanded by gitlab-ci-local (`--preview`: includes and inputs
resolved) and validated against GitLab's own CI schema (the copy check-jsonschema ships)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.helpers import ROOT, git, make_repo, require_tools


def project(tmp_path: Path, ci: str) -> Path:
    require_tools("gitlab-ci-local", "rsync")
    repo = make_repo(tmp_path / "model", {".gitlab-ci.yml": ci, "tfgov.yaml": "version: 1\n"})
    shutil.copytree(ROOT / "templates" / "gitlab", repo / "templates" / "gitlab")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "template")
    git(repo, "remote", "add", "origin", "https://gitlab.example.com/ml/model.git")
    return repo


def preview(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["gitlab-ci-local", "--preview", *args],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def gitlab_schema_check(path: Path) -> subprocess.CompletedProcess[str]:
    checker = str(Path(sys.executable).parent / "check-jsonschema")
    return subprocess.run(
        [checker, "--builtin-schema", "vendor.gitlab-ci", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )


INCLUDE = "include:\n  - local: templates/gitlab/tfgov.yml\n"


@pytest.mark.parametrize(
    "inputs",
    [
        "",
        "    inputs:\n      config-files: [tfgov-cpu.yaml, tfgov-gpu.yaml]\n      scan-allow-failure: true\n"
        "      stages: validate lock build\n      gitlab-stage: test\n",
    ],
    ids=["defaults", "variants"],
)
def test_the_expanded_template_is_valid_for_gitlab(tmp_path: Path, inputs: str) -> None:
    repo = project(tmp_path, INCLUDE + inputs)
    done = preview(repo)
    assert done.returncode == 0, done.stderr
    (tmp_path / "expanded.yml").write_text(done.stdout)
    checked = gitlab_schema_check(tmp_path / "expanded.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    expanded = yaml.safe_load(done.stdout)
    jobs = {name for name in expanded if name.startswith("tfgov-")}
    assert jobs == {
        f"tfgov-{s}"
        for s in ("validate", "lock", "build", "sbom", "scan", "policy", "sign", "publish", "record")
    }
    policy = expanded["tfgov-policy"]
    assert policy["artifacts"]["reports"] == {
        "junit": ".tfgov/out/$TFGOV_CONFIG/policy/junit.xml",
        "container_scanning": ".tfgov/out/$TFGOV_CONFIG/policy/gl-container-scanning-report.json",
    }
    assert expanded["tfgov-sbom"]["artifacts"]["reports"] == {
        "cyclonedx": ".tfgov/out/$TFGOV_CONFIG/sbom/sbom.cdx.json"
    }
    assert expanded["tfgov-publish"]["artifacts"]["reports"] == {
        "dotenv": ".tfgov/out/$TFGOV_CONFIG/publish/tfgov.env"
    }
    assert [n["job"] for n in expanded["tfgov-publish"]["needs"]] == [
        "tfgov-validate",
        "tfgov-lock",
        "tfgov-build",
        "tfgov-sbom",
        "tfgov-scan",
        "tfgov-policy",
        "tfgov-sign",
    ]  # no tag before the signature: publish reads sign's result
    if inputs:
        assert expanded["tfgov-build"]["parallel"]["matrix"] == [
            {"TFGOV_CONFIG": ["tfgov-cpu.yaml", "tfgov-gpu.yaml"]}
        ]
        assert expanded["tfgov-scan"]["allow_failure"] is True
        assert expanded["tfgov-build"]["stage"] == "test"


def test_a_wrong_input_type_is_refused_before_anything_runs(tmp_path: Path) -> None:
    repo = project(tmp_path, INCLUDE + "    inputs:\n      scan-allow-failure: sometimes\n")
    done = preview(repo)
    assert done.returncode != 0
    assert "`scan-allow-failure` input: provided value is not a boolean" in done.stderr


def test_a_team_extends_one_stage_through_its_hidden_job(tmp_path: Path) -> None:
    repo = project(tmp_path, INCLUDE + ".tfgov-build:\n  tags: [gpu-runner]\n  timeout: 2h\n")
    expanded = yaml.safe_load(preview(repo).stdout)
    assert expanded["tfgov-build"]["tags"] == ["gpu-runner"] and expanded["tfgov-build"]["timeout"] == "2h"
    assert "tags" not in expanded["tfgov-scan"]


def test_tfgov_disabled_leaves_every_job_out(tmp_path: Path) -> None:
    repo = project(tmp_path, INCLUDE)
    listed = subprocess.run(
        ["gitlab-ci-local", "--list", "--variable", "TFGOV_DISABLED=true"],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert listed.returncode == 0, listed.stderr
    assert "tfgov-" not in listed.stdout
    enabled = subprocess.run(
        ["gitlab-ci-local", "--list"], cwd=repo, capture_output=True, text=True, timeout=120, check=False
    )
    assert "tfgov-build" in enabled.stdout
