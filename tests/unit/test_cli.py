"""The command line: version, help, exit codes, tracebacks only with --verbose, the plan golden."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers import FIXTURES, ROOT, CliResult, snapshot
from tfgov_ci import __version__, _cli

GOLDEN = FIXTURES / "golden"
UPDATE = os.environ.get("TFGOV_UPDATE_GOLDEN") == "1"


def _golden(name: str, actual: str) -> None:
    path = GOLDEN / name
    if UPDATE:
        path.write_text(actual)
    assert actual == path.read_text(), f"{name} differs (TFGOV_UPDATE_GOLDEN=1 rewrites it)"


def test_version(cli: Callable[..., CliResult]) -> None:
    with pytest.raises(SystemExit) as raised:
        cli("--version")
    assert raised.value.code == 0


def test_version_through_the_installed_command() -> None:
    done = subprocess.run(
        ["tfgov-ci", "--version"],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"},
    )
    assert (done.returncode, done.stdout) == (0, f"tfgov-ci {__version__}\n")


@pytest.mark.parametrize(
    "command",
    [
        [],
        ["init"],
        ["validate"],
        ["plan"],
        ["run"],
        ["scan", "import"],
        ["exceptions", "export"],
        ["policy", "eval"],
    ],
)
def test_every_command_has_help(command: list[str], cli: Callable[..., CliResult]) -> None:
    with pytest.raises(SystemExit) as raised:
        cli(*command, "--help")
    assert raised.value.code == 0


def test_help_lists_each_command_and_the_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    _cli.build_parser().print_help()
    text = capsys.readouterr().out
    for command in ("init", "validate", "plan", "run", "scan", "exceptions", "policy"):
        assert re.search(rf"^\s+{command}\s", text, re.M), command
    assert "0 passed, 1 a gate failed, 2 usage or configuration error" in text


def test_readme_help_block_is_the_real_help(capsys: pytest.CaptureFixture[str]) -> None:
    _cli.build_parser().print_help()
    actual = capsys.readouterr().out
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- help:start -->\n```text\n(.*?)```\n<!-- help:end -->", readme, re.S)
    assert block, "README.md lacks the help block markers"
    assert block.group(1) == actual, "README's help block is stale: paste `COLUMNS=100 tfgov-ci --help`"


@pytest.mark.parametrize("args", [["frobnicate"], ["plan", "--format", "xml"], ["run", "deploy"]])
def test_usage_errors_are_one_line_and_exit_2(args: list[str], cli: Callable[..., CliResult]) -> None:
    result = cli(*args)
    assert result.code == 2
    assert len(result.err.splitlines()) == 1
    assert result.err.startswith("error: tfgov-ci") and "hint:" in result.err


def test_no_command_prints_help_and_exits_2(cli: Callable[..., CliResult]) -> None:
    result = cli()
    assert result.code == 2
    assert "usage: tfgov-ci" in result.out


def test_verbose_shows_the_traceback_and_quiet_does_not(
    tmp_path: Path, cli: Callable[..., CliResult]
) -> None:
    quiet = cli("validate", cwd=tmp_path)
    loud = cli("validate", "--verbose", cwd=tmp_path)
    assert quiet.code == loud.code == 2
    assert "Traceback" not in quiet.err
    assert "Traceback" in loud.err
    assert "tfgov.yaml: file not found (hint: run `tfgov-ci init`" in quiet.err


def test_an_internal_error_is_exit_3_with_a_hint(
    monkeypatch: pytest.MonkeyPatch, example_repo: Path, cli: Callable[..., CliResult]
) -> None:
    import tfgov_ci.project

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(tfgov_ci.project, "validate", broken)
    result = cli("validate", cwd=example_repo)
    assert result.code == 3
    assert result.err == (
        "error: internal error: RuntimeError: boom "
        "(hint: rerun with --verbose for the traceback, and report it)\n"
    )


def test_interrupt_is_exit_130(
    monkeypatch: pytest.MonkeyPatch, example_repo: Path, cli: Callable[..., CliResult]
) -> None:
    import tfgov_ci.project

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(tfgov_ci.project, "validate", interrupted)
    assert cli("validate", cwd=example_repo).code == 130


def test_plan_of_the_example_matches_the_golden_file(
    example_repo: Path, cli: Callable[..., CliResult], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TFGOV_CACHE_DIR", "/var/cache/tfgov-ci")
    result = cli("plan", cwd=example_repo)
    assert result.code == 0, result.err
    assert result.err == ""
    _golden("plan-tf-mnist.txt", result.out)


def test_allow_dirty_plans_with_dirty_tags(example_repo: Path, cli: Callable[..., CliResult]) -> None:
    (example_repo / "params.yaml").write_text("seed: 1\n")
    before = snapshot(example_repo)
    result = cli("plan", "--allow-dirty", cwd=example_repo)
    assert result.code == 0
    assert "DIRTY" in result.out
    tags = re.findall(r"registry\.example\.com/ml/tf-mnist:(\S+)", result.out)
    assert tags and all(tag.endswith("-dirty") for tag in tags)
    assert snapshot(example_repo) == before
