"""A team's Dockerfile, migrated by `init --from-dockerfile`, then locked and run through the whole
pipeline for real (the small base of the tests stands in for the organisation's central base)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import yaml

from tests.helpers import CliResult, git, make_repo
from tests.integration.test_native_build import APP, OFFLINE_SCAN, UNRELATED_ADVISORY
from tests.services import BuiltBase, SigningKey
from tfgov_ci.testing.registry import LocalRegistry

DOCKERFILE = """FROM python:3.11-slim
WORKDIR /app
COPY app.py requirements.txt ./
RUN pip install -r requirements.txt
ENV GREETING=hi
CMD ["python", "app.py"]
"""


def test_a_migrated_dockerfile_validates_locks_and_runs_every_stage(
    small_base: BuiltBase,
    session_registry: LocalRegistry,
    can_sign: SigningKey,
    tmp_path: Path,
    cli: Callable[..., CliResult],
) -> None:
    repo = make_repo(
        tmp_path / "team",
        {
            "Dockerfile": DOCKERFILE,
            "app.py": APP,
            "requirements.txt": "PyYAML==6.0.2\n",
            "advisories/PYSEC-2099-1.yaml": UNRELATED_ADVISORY,
        },
    )
    migrated = cli("init", "--from-dockerfile", "Dockerfile", "--base", small_base.ref, cwd=repo)
    assert migrated.code == 0, migrated.err
    assert "pip install -r requirements.txt -> dependencies.requirements requirements.txt" in migrated.out
    config = yaml.safe_load((repo / "tfgov.yaml").read_text())
    assert config["app"]["entrypoint"] == ["python", "app.py"] and config["app"]["env"] == {"GREETING": "hi"}
    # What a team adds for its own registry and an offline scanner, as the tests' model has them.
    text = (
        (repo / "tfgov.yaml")
        .read_text()
        .replace("image:\n", f"image:\n  registry: {session_registry.host}\n", 1)
    )
    (repo / "tfgov.yaml").write_text(text + ("stages:\n" if "\nstages:" not in text else "") + OFFLINE_SCAN)
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "migrated from the Dockerfile")
    assert cli("run", "validate", cwd=repo).code == 0
    locked = cli("run", "lock", cwd=repo)
    assert locked.code == 0, locked.err
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "lock")
    done = cli("run", cwd=repo)
    assert done.code == 0, done.out + done.err
    record = yaml.safe_load((repo / ".tfgov/out/record.json").read_text())
    assert [s["status"] for s in record["stages"]] == ["passed"] * 9
