"""What the benchmarks share: the tests' content-addressed cache, git with a fixed identity, a
small base built from Debian packages and pushed to a throwaway registry, and the small model."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tfgov_ci.oci.registry import push_layout  # noqa: E402
from tfgov_ci.stages.build import base_factory  # noqa: E402
from tfgov_ci.testing.registry import LocalRegistry  # noqa: E402

SHARED_CACHE = ROOT / ".cache" / "test-cache"  # layers, debs and wheels by hash: safe to share
SMALL_BASE = """version: 1
image: {name: py-base, repository: platform/py-base}
debian:
  packages: [python3.11-minimal, libpython3.11-stdlib]
python: "3.11"
"""
# One advisory that matches nothing: the offline scan runs, and finds nothing.
UNRELATED_ADVISORY = (
    "id: PYSEC-2099-1\naffected:\n- package: {name: nothing-here, ecosystem: PyPI}\n  versions: ['1.0']\n"
)


def git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=bench", "-c", "user.email=bench@example.com", *args],
        cwd=repo,
        check=True,
        capture_output=True,
    )


def code_change(repo: Path, label: str) -> str:
    """Append a line to train.py that no earlier run wrote, and commit it: the line. (The caches are
    shared across runs: a line written before would find its layer, and its catalogue, made.)"""
    line = f"# {label} {time.time_ns()}\n"
    with (repo / "train.py").open("a") as handle:
        handle.write(line)
    git(repo, "commit", "-q", "-am", label)
    return line


def pushed_base(folder: Path, registry: LocalRegistry, definition: str = SMALL_BASE) -> str:
    """Build the base from ``definition`` (cached) and push it: its ``registry/repository@digest``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tfgov-base.yaml").write_text(definition)
    loaded = base_factory.load_definition(folder / "tfgov-base.yaml")
    built = base_factory.build(loaded, folder / "oci", SHARED_CACHE, update_lock=True)
    repository = f"{registry.host}/{loaded.repository}"
    push_layout(built.layout, built.tag, built.digest, repository, (built.tag,), {}, env={})
    return f"{repository}@{built.digest}"


def small_model(
    folder: Path, base_ref: str, host: str, env: Mapping[str, str], files: Mapping[str, str]
) -> Path:
    """The small model on ``base_ref`` (offline scan, one unrelated advisory) plus ``files``,
    committed, then locked and committed again: ready for `tfgov-ci run`."""
    written = {
        "tfgov.yaml": small_model_config(base_ref, host),
        "advisories/PYSEC-2099-1.yaml": UNRELATED_ADVISORY,
        **files,
    }
    for name, text in written.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    git(folder, "init", "-q", "-b", "main")
    git(folder, "add", "-A")
    git(folder, "commit", "-q", "-m", "bench")
    done = subprocess.run(["tfgov-ci", "lock"], cwd=folder, env=dict(env), capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"bench: tfgov-ci lock failed: {done.stderr[-2000:]}")
    git(folder, "add", "-A")
    git(folder, "commit", "-q", "-m", "lock")
    return folder


def small_model_config(base_ref: str, host: str) -> str:
    return f"""version: 1
image: {{name: hello, registry: {host}, repository: ml/hello}}
base: {{image: {base_ref}, allowed_registries: [{host}]}}
runtime: {{python: "3.11", tensorflow: "2.21.0"}}
app: {{files: [app.py], entrypoint: [python3, app.py]}}
stages:
  scan: {{backend: osv, options: {{advisories: advisories}}}}
"""


def tf_example(repo: Path, base_ref: str, host: str) -> str:
    """The TensorFlow example copied into ``repo``, pinned to ``base_ref`` and pushing to
    ``host``: its tfgov.yaml text, for the caller to add to and write."""
    import re
    import shutil

    shutil.copytree(ROOT / "examples" / "tf-mnist", repo, ignore=shutil.ignore_patterns(".tfgov", "model"))
    config = (repo / "tfgov.yaml").read_text()
    pinned = r"registry\.example\.com/platform/tf-base@sha256:[0-9a-f]{64}"
    return re.sub(pinned, base_ref, config).replace("registry.example.com", host)


def locked_repo(repo: Path, config: str, env: Mapping[str, str]) -> None:
    """Write ``config`` as the repository's tfgov.yaml, commit, lock (``tfgov-ci lock``), commit."""
    (repo / "tfgov.yaml").write_text(config)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "bench")
    subprocess.run(["tfgov-ci", "lock"], cwd=repo, env=env, check=True, capture_output=True)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "lock")
