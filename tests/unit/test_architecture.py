"""The architecture is checked, not hoped for: import-linter's contracts in pyproject.toml."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    """import-linter on the package under ``root`` (its own pyproject.toml), nothing else on the path."""
    return subprocess.run(
        [
            str(Path(sys.executable).parent / "lint-imports"),
            str(root / "pyproject.toml"),
            "--no-cache",
        ],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "tfgov_ci", tmp_path / "tfgov_ci", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_the_package_keeps_every_import_contract(copy: Path) -> None:
    done = lint_imports(copy)
    assert done.returncode == 0, done.stdout
    assert "Contracts: 2 kept, 0 broken." in done.stdout


def test_a_back_edge_from_a_lower_layer_breaks_the_layers_contract(copy: Path) -> None:
    tools = copy / "tfgov_ci" / "tools.py"
    tools.write_text(tools.read_text() + "\nfrom tfgov_ci import pipeline  # noqa\n")
    done = lint_imports(copy)
    assert done.returncode == 1
    assert "tfgov_ci.tools is not allowed to import tfgov_ci.pipeline" in done.stdout


def test_a_stage_importing_another_stage_breaks_the_independence_contract(copy: Path) -> None:
    syft = copy / "tfgov_ci" / "stages" / "sbom" / "syft.py"
    syft.write_text(syft.read_text() + "\nfrom tfgov_ci.stages.build import interface  # noqa\n")
    done = lint_imports(copy)
    assert done.returncode == 1
    assert "tfgov_ci.stages.sbom is not allowed to import tfgov_ci.stages.build" in done.stdout
