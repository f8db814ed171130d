"""Real services for the integration and e2e tiers (a pytest plugin of tests/conftest.py):
registries on 127.0.0.1, and a small real base image.

The base is built once per session by `tfgov-ci base build` from Debian packages (no TensorFlow:
it is small) and pushed to a session registry; tests that need a base pin its digest.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import ROOT, require_tools
from tfgov_ci.oci.registry import push_layout
from tfgov_ci.stages.build import base_factory
from tfgov_ci.testing.registry import LocalRegistry

# Content-addressed (debs and wheels by hash, layers by their inputs): safe to share between runs.
SHARED_CACHE = ROOT / ".cache" / "test-cache"


@pytest.fixture(autouse=True)
def _shared_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TFGOV_CACHE_DIR", str(SHARED_CACHE))


SIGNING_PASSWORD = "session-key-password"


@dataclass(frozen=True)
class SigningKey:
    private: str  # the PEM, as a CI secret holds it (COSIGN_PRIVATE_KEY)
    public: Path


@pytest.fixture(scope="session")
def signing_key(tmp_path_factory: pytest.TempPathFactory) -> SigningKey:
    """One cosign key pair for the session, made by the real cosign."""
    require_tools("cosign")
    import os
    import subprocess

    from tfgov_ci import tools

    folder = tmp_path_factory.mktemp("signing-key")
    env = {**os.environ, "COSIGN_PASSWORD": SIGNING_PASSWORD}
    subprocess.run(
        [tools.which("cosign"), "generate-key-pair"], cwd=folder, env=env, capture_output=True, check=True
    )
    return SigningKey((folder / "cosign.key").read_text(), folder / "cosign.pub")


@pytest.fixture
def can_sign(signing_key: SigningKey, monkeypatch: pytest.MonkeyPatch) -> SigningKey:
    """The sign stage's default key in the environment, as a CI job has it (a masked variable)."""
    monkeypatch.setenv("COSIGN_PRIVATE_KEY", signing_key.private)
    monkeypatch.setenv("COSIGN_PASSWORD", SIGNING_PASSWORD)
    return signing_key


@pytest.fixture
def registry() -> Iterator[LocalRegistry]:
    require_tools("docker-registry", "skopeo")
    with LocalRegistry() as reg:
        yield reg


@pytest.fixture(scope="session")
def session_registry() -> Iterator[LocalRegistry]:
    require_tools("docker-registry", "skopeo")
    with LocalRegistry() as reg:
        yield reg


SMALL_BASE = """version: 1
image: {name: py-base, repository: platform/py-base}
debian:
  packages: [python3.11-minimal, libpython3.11-stdlib, libstdc++6, libgomp1]  # TensorFlow-ready
python: "3.11"
"""


@dataclass(frozen=True)
class BuiltBase:
    layout: Path
    tag: str
    digest: str
    ref: str  # registry/repository@digest, pushed
    definition: Path


@pytest.fixture(scope="session")
def small_base(session_registry: LocalRegistry, tmp_path_factory: pytest.TempPathFactory) -> BuiltBase:
    """A distroless Python 3.11 base (Debian packages only), built and pushed once per session."""
    require_tools("apt-get", "apt-cache", "dpkg-deb")
    folder = tmp_path_factory.mktemp("platform")
    (folder / "tfgov-base.yaml").write_text(SMALL_BASE)
    definition = base_factory.load_definition(folder / "tfgov-base.yaml")
    built = base_factory.build(definition, folder / "oci", SHARED_CACHE, update_lock=True)
    repository = f"{session_registry.host}/platform/py-base"
    push_layout(built.layout, built.tag, built.digest, repository, (built.tag,), {}, env={})
    return BuiltBase(
        built.layout, built.tag, built.digest, f"{repository}@{built.digest}", folder / "tfgov-base.yaml"
    )


@pytest.fixture(scope="session")
def docker_engine() -> Iterator[str]:
    """A private Docker Engine (no bridge, no NAT, its own socket), as TOOLS.md says to start one."""
    from tfgov_ci.testing.dockerd import LocalDockerd

    require_tools("dockerd", "skopeo")
    with LocalDockerd() as engine:
        yield engine.host


@pytest.fixture(scope="session")
def six_base(
    session_registry: LocalRegistry, small_base: BuiltBase, tmp_path_factory: pytest.TempPathFactory
) -> str:
    """The small base plus one locked wheel (six 1.17.0): a base that provides a Python package."""
    import subprocess

    folder = tmp_path_factory.mktemp("six-platform")
    (folder / "requirements.txt").write_text("six==1.17.0\n")
    uv = str(Path(__import__("uv").find_uv_bin()))
    subprocess.run(
        [
            uv,
            "pip",
            "compile",
            "--quiet",
            "--generate-hashes",
            "--python-version",
            "3.11",
            "--output-file",
            "requirements.lock",
            "requirements.txt",
        ],
        cwd=folder,
        check=True,
    )
    (folder / "tfgov-base.yaml").write_text(
        SMALL_BASE.replace("py-base", "six-base") + "tensorflow: {lock: requirements.lock}\n"
    )
    definition = base_factory.load_definition(folder / "tfgov-base.yaml")
    built = base_factory.build(definition, folder / "oci", SHARED_CACHE, update_lock=True)
    repository = f"{session_registry.host}/platform/six-base"
    push_layout(built.layout, built.tag, built.digest, repository, (built.tag,), {}, env={})
    return f"{repository}@{built.digest}"


@pytest.fixture(scope="session")
def pip_base(session_registry: LocalRegistry, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A base with Debian's pip in it: what a Dockerfile with `RUN pip install` needs."""
    folder = tmp_path_factory.mktemp("pip-platform")
    (folder / "tfgov-base.yaml").write_text(
        SMALL_BASE.replace("py-base", "pip-base").replace("libgomp1]", "libgomp1, python3-pip]")
    )
    definition = base_factory.load_definition(folder / "tfgov-base.yaml")
    built = base_factory.build(definition, folder / "oci", SHARED_CACHE, update_lock=True)
    repository = f"{session_registry.host}/platform/pip-base"
    push_layout(built.layout, built.tag, built.digest, repository, (built.tag,), {}, env={})
    return f"{repository}@{built.digest}"


# A MEDIUM advisory on the model's PyYAML 6.0.2: a finding the policy lets pass (it gates on HIGH).
PYYAML_ADVISORY = """id: PYSEC-2099-7
aliases: [CVE-2099-7]
summary: a moderate flaw in PyYAML before 6.0.3
database_specific: {severity: MODERATE}
affected:
- package: {name: PyYAML, ecosystem: PyPI}
  ranges:
  - type: ECOSYSTEM
    events: [{introduced: "0"}, {fixed: "6.0.3"}]
"""


@dataclass(frozen=True)
class RecordedBuild:
    repo: Path
    out: Path  # the run's out directory: record.json, the stages' results, the SBOM
    sha: str
    digest: str


@pytest.fixture(scope="session")
def recorded_build(
    small_base: BuiltBase,
    session_registry: LocalRegistry,
    signing_key: SigningKey,
    tmp_path_factory: pytest.TempPathFactory,
) -> RecordedBuild:
    """The test model (PyYAML on the small base) through the whole pipeline once per session, for
    real (`tfgov-ci run`: built, SBOM, scanned offline with one advisory that matches, policy,
    signed, published, recorded): the out directory the fleet tests import."""
    import json
    import os
    import subprocess
    import sys

    from tests.helpers import git, make_repo
    from tests.integration.test_native_build import APP, model_config

    repo = make_repo(
        tmp_path_factory.mktemp("recorded") / "hello",
        {
            "tfgov.yaml": model_config(small_base.ref, session_registry.host).replace(
                "repository: ml/hello", "repository: ml/recorded"
            ),
            "requirements.txt": "PyYAML==6.0.2\n",
            "app.py": APP,
            "data/labels.txt": "a\nb\n",
            "advisories/PYSEC-2099-7.yaml": PYYAML_ADVISORY,
        },
    )
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("CI_", "GIT_", "TFGOV_"))},
        "TFGOV_CACHE_DIR": str(SHARED_CACHE),
        "COSIGN_PRIVATE_KEY": signing_key.private,
        "COSIGN_PASSWORD": SIGNING_PASSWORD,
    }
    env.pop("GITLAB_CI", None)
    env.pop("JENKINS_URL", None)

    def tfgov(*args: str) -> None:
        done = subprocess.run(
            [sys.executable, "-m", "tfgov_ci", *args], cwd=repo, env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, (args, done.stdout, done.stderr)

    tfgov("run", "validate")
    tfgov("run", "lock")
    git(repo, "add", "requirements.lock", "requirements.lock.tree.json")
    git(repo, "commit", "-qm", "lock")
    tfgov("run")
    out = repo / ".tfgov" / "out"
    record = json.loads((out / "record.json").read_text())
    return RecordedBuild(repo, out, record["commit"]["sha"], record["image"]["digest"])
