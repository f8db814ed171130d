"""The central base image's own governed pipeline (`pipeline: base-image`): built by the `base`
build backend from the committed lock (the same digest `tfgov-ci base build` gives), then sbom,
scan, policy and publish as for any model image."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers import CliResult, git, make_repo, plan_is_what_ran, require_tools
from tests.integration.test_native_build import UNRELATED_ADVISORY
from tests.services import SMALL_BASE
from tfgov_ci.testing.registry import LocalRegistry

STAGES = ("validate", "build", "sbom", "scan", "policy", "sign", "publish")


def base_config(registry: str) -> str:
    return f"""version: 1
pipeline: base-image
image: {{name: py-base, registry: {registry}, repository: platform/py-base-governed}}
base: {{image: scratch}}
runtime: {{python: "3.11", tensorflow: "2.21.0"}}
stages:
  scan: {{backend: osv, options: {{advisories: advisories}}}}
  policy:
    options:
      required_labels: [org.opencontainers.image.title, org.opencontainers.image.created, io.tfgov.base.lock]
"""


@pytest.fixture
def base_repo(
    tmp_path: Path, session_registry: LocalRegistry, cli: Callable[..., CliResult]
) -> tuple[Path, str]:
    """The platform team's base repository, its lock made and committed; and the digest
    `tfgov-ci base build` gave for that lock."""
    require_tools("apt-get", "apt-cache", "dpkg-deb", "skopeo")
    repo = make_repo(
        tmp_path / "platform-base",
        {
            "tfgov-base.yaml": SMALL_BASE,
            "tfgov.yaml": base_config(session_registry.host),
            "advisories/PYSEC-2099-1.yaml": UNRELATED_ADVISORY,
        },
    )
    built = cli("base", "build", "--update-lock", "--out", str(tmp_path / "direct"), cwd=repo)
    assert built.code == 0, built.err
    digest = next(line.split()[1] for line in built.out.splitlines() if line.startswith("digest"))
    git(repo, "add", "tfgov-base.lock.json")
    git(repo, "commit", "-qm", "base lock")
    return repo, digest


def test_the_base_pipeline_builds_the_same_digest_and_governs_and_publishes_it(
    base_repo: tuple[Path, str],
    session_registry: LocalRegistry,
    can_sign: object,
    cli: Callable[..., CliResult],
) -> None:
    from tfgov_ci.oci.registry import Access, remote_digest

    repo, direct = base_repo
    for stage in STAGES:
        result = cli("run", stage, cwd=repo)
        assert result.code == 0, f"{stage}: {result.err}"
    out = repo / ".tfgov/out"
    build = json.loads((out / "build/result.json").read_text())
    assert build["backend"] == "base" and build["data"]["digest"] == direct  # same lock, same digest
    assert build["data"]["base"] == {"ref": "scratch", "digest": None, "layers": 0}
    sbom = json.loads((out / "sbom/result.json").read_text())
    assert sbom["data"]["by_type"]["deb"] >= 30 and sbom["data"]["drift"]["findings"] == []
    policy = json.loads((out / "policy/result.json").read_text())
    assert policy["status"] == "passed" and "base" in policy["data"]["rules"]
    sha = git(repo, "rev-parse", "HEAD")
    access = Access(session_registry.host, False, None, None)
    assert remote_digest(f"{session_registry.host}/platform/py-base-governed", sha, access) == direct
    ran = plan_is_what_ran(repo, list(STAGES))
    assert {c[0] for c in ran["build"][:-1]} <= {"apt-get", "dpkg-deb", "pip"} and ran["build"]  # the lock's
    assert ran["build"][-1][:2] == ["skopeo", "copy"]  # then pushed by digest, for the later stages
    assert ran["sbom"][0][:2] == ["syft", "scan"]
    assert ran["policy"] == []  # regopy evaluates in-process


def test_a_base_pipeline_without_its_committed_lock_is_refused(
    tmp_path: Path, session_registry: LocalRegistry, cli: Callable[..., CliResult]
) -> None:
    repo = make_repo(
        tmp_path / "base", {"tfgov-base.yaml": SMALL_BASE, "tfgov.yaml": base_config(session_registry.host)}
    )
    assert cli("run", "validate", cwd=repo).code == 0
    result = cli("run", "build", cwd=repo)
    assert result.code == 2
    assert "tfgov-base.lock.json is missing: a pipeline builds the base from its committed lock" in result.err
    assert "tfgov-ci base build --definition tfgov-base.yaml --update-lock" in result.err
    assert not (repo / "tfgov-base.lock.json").exists()


def test_only_the_base_pipeline_builds_on_scratch_and_only_it_may_omit_app(
    tmp_path: Path, session_registry: LocalRegistry, cli: Callable[..., CliResult]
) -> None:
    config = base_config(session_registry.host)
    repo = make_repo(
        tmp_path / "base",
        {"tfgov.yaml": config.replace("base: {image: scratch}", "base: {image: python:3.11}")},
    )
    result = cli("validate", cwd=repo)
    assert result.code == 2 and "tfgov.yaml:4: base.image: 'scratch' was expected" in result.err
    model = make_repo(tmp_path / "model", {"tfgov.yaml": config.replace("pipeline: base-image\n", "")})
    result = cli("validate", cwd=model)
    assert result.code == 2 and "tfgov.yaml:1: app: required key is missing" in result.err
