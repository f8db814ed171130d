"""The TensorFlow example image, end to end: locked, built natively with tensorflow-cpu in a layer of
its own, its SBOM from the layers' catalogues equal to syft's whole-image scan, pushed, pulled back
by digest, and `import tensorflow` run inside its root filesystem."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers import EXAMPLE, CliResult, extract_image, git, make_repo, require_tools, run_in_rootfs
from tests.integration.test_sbom_layers import assert_same_as_whole_image
from tests.services import BuiltBase
from tfgov_ci.oci.registry import push_layout
from tfgov_ci.testing.registry import LocalRegistry


def test_tensorflow_example_builds_pushes_pulls_back_and_imports(
    small_base: BuiltBase,
    session_registry: LocalRegistry,
    tmp_path: Path,
    cli: Callable[..., CliResult],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    require_tools("skopeo", "docker-registry")
    host = session_registry.host
    text = (EXAMPLE / "tfgov.yaml").read_text()
    text = re.sub(
        r"image: registry\.example\.com/platform/tf-base@sha256:[0-9a-f]{64}",
        f"image: {small_base.ref}",
        text,
    )
    text = text.replace("registry: registry.example.com", f"registry: {host}")
    text = text.replace("allowed_registries: [registry.example.com]", f"allowed_registries: [{host}]")
    files = {name: (EXAMPLE / name).read_text() for name in ("train.py", "params.yaml", "requirements.txt")}
    repo = make_repo(tmp_path / "tf-mnist", {**files, "tfgov.yaml": text})
    for stage in ("validate", "lock"):
        result = cli("run", stage, cwd=repo)
        assert result.code == 0, result.err
    git(repo, "add", "requirements.lock", "requirements.lock.tree.json")
    git(repo, "commit", "-qm", "lock")
    for stage in ("validate", "lock", "build"):
        result = cli("run", stage, cwd=repo)
        assert result.code == 0, result.err
    build = json.loads((repo / ".tfgov/out/build/result.json").read_text())
    layers = build["data"]["layers"]
    assert layers[0]["what"] == "tfgov-ci native: wheels tensorflow-cpu==2.21.0"  # a layer of its own
    assert len(layers) == 3 and layers[2]["what"].startswith("tfgov-ci native: app")

    # The SBOM from the layers' catalogues is syft's whole-image scan of the same 1.5 GB image.
    result = cli("run", "sbom", cwd=repo)
    assert result.code == 0, result.err
    sbom = json.loads((repo / ".tfgov/out/sbom/result.json").read_text())
    assert sbom["data"]["catalogue"]["method"] == "layers", sbom["message"]
    assert_same_as_whole_image(repo, sbom, tmp_path)

    digest, tags = build["data"]["digest"], tuple(build["data"]["tags"])
    repository = f"{host}/ml/tf-mnist"
    push_layout(Path(build["outputs"]["layout"]), tags[0], digest, repository, tags, {}, env={})

    pulled = tmp_path / "pulled"
    source, target = f"docker://{repository}@{digest}", f"oci:{pulled}:x"
    argv = ["skopeo", "copy", "--quiet", "--preserve-digests", "--src-tls-verify=false", source, target]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    rootfs = tmp_path / "rootfs"
    extract_image(pulled, "x", rootfs)
    ran = run_in_rootfs(
        rootfs,
        ["/usr/bin/python3", "-c", "import tensorflow as tf; print(tf.__version__)"],
        env={"TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert ran.returncode == 0, ran.stderr[-2000:]
    assert ran.stdout.strip().splitlines()[-1] == "2.21.0"
    shutil.rmtree(rootfs, ignore_errors=True)
