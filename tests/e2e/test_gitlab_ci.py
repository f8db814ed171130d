"""The emitted GitLab template, run end to end by gitlab-ci-local (shell executor) on the test
model: every job passes, the image is in the real local registry under its commit tag, a deploy
job gets the digest from the dotenv report, and each job's artifacts are results and evidence
(under 5 MB, no layout: the image moves through the registry); then a policy violation fails the
policy job and nothing is published (tagged: the build pushed it by digest, untagged). (gitlab-ci-local
cannot fetch `include: project:` without a GitLab server: the template is copied into the
repository and included as `local:`, with the same inputs.)
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers import ROOT, CliResult, git, make_repo, require_tools
from tests.integration.test_native_build import APP, UNRELATED_ADVISORY, model_config
from tests.services import SHARED_CACHE, BuiltBase
from tfgov_ci.testing.registry import LocalRegistry

STAGES = "validate lock build sbom scan policy sign publish"  # record: not in this version
CI = f"""include:
  - local: templates/gitlab/tfgov.yml
    inputs:
      config-files: [tfgov.yaml]
      stages: "{STAGES}"

deploy:
  stage: deploy
  needs: [tfgov-publish]
  script:
    - test -n "$TFGOV_IMAGE_DIGEST"
    - echo "deploying $TFGOV_IMAGE at $TFGOV_IMAGE_DIGEST"
"""


def gitlab_ci_local(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "TFGOV_CACHE_DIR": str(SHARED_CACHE),
    }
    return subprocess.run(
        ["gitlab-ci-local", "--force-shell-executor", "--shell-isolation", "--no-artifacts-to-source", *args],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )


@pytest.fixture
def ci_repo(
    tmp_path: Path,
    small_base: BuiltBase,
    session_registry: LocalRegistry,
    can_sign: object,  # the key as masked variables: COSIGN_PRIVATE_KEY, COSIGN_PASSWORD
    cli: Callable[..., CliResult],
) -> Path:
    require_tools("gitlab-ci-local", "rsync")
    repo = make_repo(
        tmp_path / "hello",
        {
            "tfgov.yaml": model_config(small_base.ref, session_registry.host),
            "requirements.txt": "PyYAML==6.0.2\n",
            "app.py": APP,
            "data/labels.txt": "a\n",
            "advisories/PYSEC-2099-1.yaml": UNRELATED_ADVISORY,
            ".gitlab-ci.yml": CI,
        },
    )
    shutil.copytree(ROOT / "templates" / "gitlab", repo / "templates" / "gitlab")
    assert cli("lock", cwd=repo).code == 0
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "lock and CI")
    git(repo, "remote", "add", "origin", "https://gitlab.example.com/ml/hello.git")
    return repo


def test_every_job_passes_the_image_is_pushed_and_the_deploy_job_gets_its_digest(
    ci_repo: Path, session_registry: LocalRegistry
) -> None:
    from tfgov_ci.oci.registry import Access, remote_digest

    done = gitlab_ci_local(ci_repo)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    for stage in STAGES.split():
        assert f"PASS  tfgov-{stage}: [tfgov.yaml]" in done.stdout
    assert "PASS  deploy" in done.stdout
    sha = git(ci_repo, "rev-parse", "HEAD")
    digest = remote_digest(
        f"{session_registry.host}/ml/hello", sha, Access(session_registry.host, False, None, None)
    )
    assert digest and f"deploying {session_registry.host}/ml/hello:{sha} at {digest}" in done.stdout
    # What each job handed the next (gitlab-ci-local keeps them under .gitlab-ci-local/artifacts/
    # <job>): results and evidence, never the image's layers (the registry has them).
    handed = {
        folder.name: sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
        for folder in (ci_repo / ".gitlab-ci-local" / "artifacts").iterdir()
        if folder.is_dir()
    }
    assert len([name for name in handed if name.startswith("tfgov-")]) == len(STAGES.split()), handed
    assert all(size < 5 * 1024 * 1024 for size in handed.values()), handed
    layouts = (ci_repo / ".gitlab-ci-local" / "artifacts").glob("*/.tfgov/out/*/build/oci")
    assert not [f for layout in layouts for f in layout.rglob("*") if f.is_file()], "a layout was handed on"
    assert handed[next(name for name in handed if name.startswith("tfgov-build"))] > 0


def test_a_policy_violation_fails_the_policy_job_and_nothing_is_published(
    ci_repo: Path, session_registry: LocalRegistry
) -> None:
    from tfgov_ci.oci.registry import Access, remote_digest

    config = ci_repo / "tfgov.yaml"
    config.write_text(config.read_text() + "  policy:\n    options: {max_image_mb: 1}\n")
    git(ci_repo, "commit", "-qam", "an image limit this image breaks")
    done = gitlab_ci_local(ci_repo)
    assert done.returncode != 0
    assert "FAIL  tfgov-policy: [tfgov.yaml]" in done.stdout
    assert "above the limit of 1 MB" in done.stdout
    assert "tfgov-publish" not in done.stdout and "deploying" not in done.stdout  # never started
    sha = git(ci_repo, "rev-parse", "HEAD")
    assert (
        remote_digest(
            f"{session_registry.host}/ml/hello", sha, Access(session_registry.host, False, None, None)
        )
        is None
    )
