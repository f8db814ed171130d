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
