"""tools.run: the one way to run a tool. Real processes; secrets never come back out."""

from __future__ import annotations

import pytest

from tests.helpers import require_tool
from tfgov_ci import tools
from tfgov_ci.errors import ToolError


def test_a_failing_tool_shows_argv_exit_code_and_stderr_tail_with_secrets_redacted() -> None:
    require_tool("sh")
    script = "echo token=s3cr3t-value >&2; echo https://bot:pa55@registry.example.com >&2; exit 7"
    with pytest.raises(ToolError) as raised:
        tools.run(["sh", "-c", script, "s3cr3t-value"], secrets=["s3cr3t-value"])
    error = raised.value
    assert error.returncode == 7
    shown = "\n".join(error.lines())
    assert "s3cr3t-value" not in shown and "pa55" not in shown
    assert "token=***" in shown
    assert "https://***@registry.example.com" in shown
    assert "exit code: 7" in shown
    assert error.argv[-1] == "***"


def test_a_missing_tool_names_itself_and_how_to_install_it() -> None:
    with pytest.raises(ToolError, match="not installed or not on PATH"):
        tools.run(["definitely-not-a-tfgov-tool"])
    with pytest.raises(ToolError) as raised:
        tools.which("git-does-not-exist")
    assert raised.value.exit_code == 3


def test_output_of_a_passing_tool_comes_back() -> None:
    require_tool("sh")
    done = tools.run(["sh", "-c", "echo out; echo err >&2"])
    assert (done.returncode, done.stdout, done.stderr) == (0, "out\n", "err\n")


def test_version_reads_the_first_line_or_none() -> None:
    require_tool("git")
    assert (tools.version("git") or "").startswith("git version")
    assert tools.version("definitely-not-a-tfgov-tool") is None


def test_a_stage_records_the_commands_it_runs_but_not_version_probes() -> None:
    tools.version.cache_clear()
    with tools.recording() as ran:
        tools.run(["echo", "hi"])
        assert tools.version("git") is not None
    assert [c.argv for c in ran] == [("echo", "hi")]
    assert ran[0].returncode == 0 and ran[0].executable.endswith("/echo")
