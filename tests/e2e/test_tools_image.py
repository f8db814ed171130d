"""The CI tools image (tools-image/): built by tfgov-ci's own base factory, loaded into a real Docker
Engine, every tool run inside it, and a model's whole pipeline run inside it as a CI job would run
it: the workspace bind-mounted, the registry on 127.0.0.1 (host network), the signing key in the
environment."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.helpers import ROOT, CliResult, git, require_tools
from tests.integration import test_native_build
from tests.services import SHARED_CACHE, SIGNING_PASSWORD, SigningKey
from tfgov_ci.testing.registry import LocalRegistry

model = test_native_build.model  # the test model fixture, reused
NAME = "tfgov-ci-tools:e2e"
HOST_CA = "/etc/ssl/certs/ca-certificates.crt"
NONROOT = "65532"


@pytest.fixture(scope="module")
def tools_image(docker_engine: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """tools-image/tfgov-base.yaml built as `make tools-image` builds it, and loaded into the
    tests' dockerd as NAME. Its lock is kept in the test cache (with the .debs and wheels), so a
    second run builds the same Debian packages again; tfgov-ci's wheel is built from this tree."""
    from tfgov_ci.stages.build import base_factory

    require_tools("apt-get", "apt-cache", "dpkg-deb", "skopeo", "docker")
    folder = SHARED_CACHE / "tools-image"
    folder.mkdir(parents=True, exist_ok=True)
    source = ROOT / "tools-image"
    definition = (source / "tfgov-base.yaml").read_text().replace("    - ..  ", f"    - {ROOT}  ")
    assert f"- {ROOT}" in definition, "tools-image/tfgov-base.yaml no longer builds the project's wheel"
    (folder / "tfgov-base.yaml").write_text(definition)
    shutil.copy(source / "requirements.lock", folder / "requirements.lock")
    loaded = base_factory.load_definition(folder / "tfgov-base.yaml")
    lock = folder / "tfgov-base.lock.json"
    stamp = folder / "definition.sha256"
    key = f"{_digest(folder)} {hashlib.sha256(definition.encode()).hexdigest()}"
    fresh = not lock.is_file() or not stamp.is_file() or stamp.read_text() != key
    started = time.monotonic()
    with pytest.MonkeyPatch.context() as env:  # the autouse cache fixture is function-scoped
        env.setenv("TFGOV_CACHE_DIR", str(SHARED_CACHE))
        built = base_factory.build(
            loaded, tmp_path_factory.mktemp("tools") / "oci", SHARED_CACHE, update_lock=fresh, compresslevel=1
        )
    stamp.write_text(key)
    print(f"tools image built in {time.monotonic() - started:.0f} s: {built.size / 1e6:.0f} MB")
    subprocess.run(
        ["skopeo", "copy", "--quiet", "--dest-daemon-host", docker_engine,
         f"oci:{built.layout}:{built.tag}", f"docker-daemon:{NAME}"],
        check=True,
    )  # fmt: skip
    yield docker_engine


def _digest(folder: Path) -> str:
    from tfgov_ci.wheels import lock_digest

    return lock_digest(folder / "requirements.lock")


def docker(engine: str, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DOCKER_HOST": engine}
    return subprocess.run(["docker", *args], env=env, capture_output=True, text=True, timeout=timeout)


VERSIONS = {
    ("tfgov-ci", "--version"): "tfgov-ci 0.1.0",
    ("syft", "version"): "Version:    1.18.1",
    ("trivy", "--version"): "Version: 0.76.0",
    ("uv", "--version"): "uv 0.",
    ("skopeo", "--version"): "skopeo version 1.9.3",
    ("cosign", "version"): "GitVersion:",
    ("git", "--version"): "git version 2.39",
    ("sh", "-c", "true && echo shell-ok"): "shell-ok",
}


def test_every_tool_runs_inside_the_tools_image_as_its_non_root_user(tools_image: str) -> None:
    for argv, expected in VERSIONS.items():
        done = docker(
            tools_image, "run", "--rm", "--network", "none", "--read-only", "--tmpfs", "/tmp", NAME, *argv
        )
        assert done.returncode == 0 and expected in done.stdout, (argv, done.stdout, done.stderr)
    inspected = json.loads(docker(tools_image, "image", "inspect", NAME).stdout)[0]["Config"]
    assert inspected["User"] == f"{NONROOT}:{NONROOT}" and inspected["Cmd"] == ["/bin/sh"]
    assert not inspected.get("Entrypoint")  # CI runners start their own shell
    # CA certificates as update-ca-certificates would leave them, where OpenSSL, GnuTLS and Go look
    bundle = "/usr/lib/ssl/cert.pem"  # OpenSSL's default file: a link to /etc/ssl/certs/ca-certificates.crt
    ca = docker(tools_image, "run", "--rm", "--network", "none", NAME, "python3", "-c",
                f"print(open('{bundle}').read().count('BEGIN CERTIFICATE'))")  # fmt: skip
    assert ca.returncode == 0 and int(ca.stdout) > 100, (ca.stdout, ca.stderr)
    # no package manager: the image is a tools image, not a place to install things
    for tool in ("apt-get", "dpkg", "bash"):
        absent = docker(
            tools_image, "run", "--rm", "--network", "none", NAME, "sh", "-c", f"command -v {tool}"
        )
        assert absent.returncode != 0, tool


def test_a_model_pipeline_runs_whole_inside_the_tools_image(
    tools_image: str,
    model: Path,
    session_registry: LocalRegistry,
    can_sign: SigningKey,
    cli: Callable[..., CliResult],
) -> None:
    """The test model (tests/integration/test_native_build.py: PyYAML on the small base, offline
    advisories), as a CI job runs it: `tfgov-ci run` in the container, the workspace mounted, the
    registry on 127.0.0.1 through the host network, the key and its password in the environment."""
    workspace = model
    subprocess.run(["chown", "-R", f"{NONROOT}:{NONROOT}", str(workspace)], check=True)
    started = time.monotonic()
    done = docker(
        tools_image, "run", "--rm", "--network", "host", "--tmpfs", "/tmp",
        "-v", f"{workspace}:/builds/hello", "-w", "/builds/hello",
        "-e", "COSIGN_PRIVATE_KEY", "-e", f"COSIGN_PASSWORD={SIGNING_PASSWORD}",
        # this machine reaches PyPI through a proxy whose CA only its own bundle holds: mounted
        # as a runner mounts its organisation's CA (the image's own bundle is Debian's)
        "-v", f"{HOST_CA}:{HOST_CA}:ro", "-e", f"SSL_CERT_FILE={HOST_CA}", "-e", f"PIP_CERT={HOST_CA}",
        NAME, "tfgov-ci", "run",
        timeout=1200,
    )  # fmt: skip
    took = time.monotonic() - started
    owner = f"{os.getuid()}:{os.getgid()}"
    subprocess.run(["chown", "-R", owner, str(workspace)], check=True)  # back to the test's user
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    print(f"the model's pipeline inside the tools image: {took:.0f} s")
    out = workspace / ".tfgov/out"
    statuses = {
        stage: json.loads((out / stage / "result.json").read_text())["status"]
        for stage in ("validate", "lock", "build", "sbom", "scan", "policy", "sign", "publish", "record")
    }
    assert set(statuses.values()) == {"passed"}, statuses
    digest = json.loads((out / "build/result.json").read_text())["data"]["digest"]
    from tfgov_ci.oci.registry import Access, remote_digest

    sha = git(workspace, "rev-parse", "HEAD")
    access = Access(session_registry.host, False, None, None)
    assert remote_digest(f"{session_registry.host}/ml/hello", sha, access) == digest
    # what was pushed from inside the container verifies outside it, with the public key
    verified = cli(
        "verify", f"{session_registry.host}/ml/hello@{digest}", "--key", str(can_sign.public),
        "--trusted-builder", "https://tfgov-ci.dev/builders/local",  # a docker run, not a CI job
        "--commit", sha,
    )  # fmt: skip
    assert verified.code == 0, verified.out + verified.err


def test_the_tools_image_is_governed_by_its_own_pipeline_and_verifies(
    tools_image: str,
    session_registry: LocalRegistry,
    signing_key: SigningKey,
    tmp_path: Path,
    cli: Callable[..., CliResult],
) -> None:
    """What `make tools-image TOOLS_REGISTRY=...` runs: the base-image pipeline on tools-image/ of a
    clean clone (build, sbom, scan, policy as a non-production image, sign, publish, record), here
    with the offline scanner (no vulnerability database can be fetched here) and the Debian lock
    the fixture resolved; then `verify` allows what it published."""
    clone = tmp_path / "tfgov-ci"
    git(tmp_path, "clone", "--quiet", str(ROOT), str(clone))
    shutil.copy(SHARED_CACHE / "tools-image" / "tfgov-base.lock.json", clone / "tools-image")
    advisories = tmp_path / "advisories"
    advisories.mkdir()
    (advisories / "PYSEC-2099-1.yaml").write_text(test_native_build.UNRELATED_ADVISORY)
    org = tmp_path / "org.yaml"
    org.write_text(
        f"version: 1\ndefaults:\n  image:\n    registry: '{session_registry.host}'\n"
        f"  stages:\n    scan:\n      backend: osv\n      options: {{advisories: '{advisories}'}}\n"
    )
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("CI_", "GITLAB_", "TFGOV_"))},
        "TFGOV_CACHE_DIR": str(SHARED_CACHE),
        "COSIGN_PRIVATE_KEY": signing_key.private,
        "COSIGN_PASSWORD": SIGNING_PASSWORD,
    }
    done = subprocess.run(
        [sys.executable, "-m", "tfgov_ci", "--org-config", str(org), "run"],
        cwd=clone / "tools-image", env=env, capture_output=True, text=True, timeout=1800,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    record = json.loads((clone / "tools-image/.tfgov/out/record.json").read_text())
    assert [s["stage"] for s in record["stages"] if s["status"] == "passed"] == [
        "validate", "build", "sbom", "scan", "policy", "sign", "publish", "record"
    ]  # fmt: skip
    policy = json.loads((clone / "tools-image/.tfgov/out/policy/result.json").read_text())
    assert any("not a production image" in w for w in policy["warnings"])
    digest = record["image"]["digest"]
    verdict = cli(
        "verify", f"{session_registry.host}/platform/tfgov-ci@{digest}", "--key", str(signing_key.public),
        "--trusted-builder", "https://tfgov-ci.dev/builders/local", cwd=tmp_path,
    )  # fmt: skip
    assert verdict.code == 0, verdict.out
