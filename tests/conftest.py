from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.helpers import EXAMPLE, CliResult, make_repo
from tfgov_ci._cli import main

pytest_plugins = ["tests.services"]

_CI_VARIABLES = (
    "GITLAB_CI",
    "JENKINS_URL",
    "BUILD_URL",
    "BUILD_NUMBER",
    "TFGOV_ORG_CONFIG",
    "SOURCE_DATE_EPOCH",
    "TFGOV_INVENTORY_URL",  # no test writes into the developer's own inventory
)


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Tests run the same inside GitLab, Jenkins or a laptop: no CI variables leak in."""
    for name in list(os.environ):
        if name.startswith(("CI_", "GIT_")) or name in _CI_VARIABLES:
            monkeypatch.delenv(name)
    monkeypatch.setenv("COLUMNS", "100")
    yield


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Callable[..., CliResult]:
    """Run ``tfgov-ci ARGS`` in-process in a folder; returns exit code, stdout, stderr."""

    def run(*args: str, cwd: Path | None = None) -> CliResult:
        if cwd is not None:
            monkeypatch.chdir(cwd)
        capsys.readouterr()
        code = main(list(args))
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


@pytest.fixture
def example_repo(tmp_path: Path) -> Path:
    """A throwaway git clone-alike of examples/tf-mnist, with a reproducible commit sha."""
    return make_repo(tmp_path / "tf-mnist", source=EXAMPLE)
