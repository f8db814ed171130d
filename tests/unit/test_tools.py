"""tools.run: the one way to run a tool. Real processes; secrets never come back out."""

from __future__ import annotations

import json
import os
from pathlib import Path

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


def test_tool_versions_are_asked_once_per_installed_binary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What each binary said is kept in the cache file; a binary that changes is asked again."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    tool = bin_dir / "fake-tool"
    tool.write_text("#!/bin/sh\necho 'fake-tool 1.0'\n")
    tool.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    cache = tmp_path / "cache" / "tool-versions.json"
    tools.version.cache_clear()
    assert tools.versions(["fake-tool", "no-such-tool"], cache) == {
        "fake-tool": "fake-tool 1.0",
        "no-such-tool": None,
    }
    (key,) = json.loads(cache.read_text())
    cache.write_text(json.dumps({key: "fake-tool 1.0 (from the cache)"}))
    assert tools.versions(["fake-tool"], cache) == {"fake-tool": "fake-tool 1.0 (from the cache)"}
    tool.write_text("#!/bin/sh\necho 'fake-tool 2.0, upgraded'\n")  # another size: asked again
    tools.version.cache_clear()
    assert tools.versions(["fake-tool"], cache) == {"fake-tool": "fake-tool 2.0, upgraded"}
    cache.write_text("{not json")  # unreadable: asked again, and written whole
    assert tools.versions(["fake-tool"], cache)["fake-tool"] == "fake-tool 2.0, upgraded"
    assert len(json.loads(cache.read_text())) == 1


def test_a_secret_too_short_to_mask_leaves_the_output_readable() -> None:
    """A one-letter key password would turn every `t` of a command line into *** (and break the
    plan-is-what-ran check); secrets that short are not searched for."""
    assert tools.redact("cosign attest --type https://x", ["t"]) == "cosign attest --type https://x"
    assert tools.redact("pw=s3cret-pw", ["s3cret-pw"]) == "pw=***"


def test_commands_run_together_are_recorded_in_the_calls_order_and_a_failure_waits_for_the_rest(
    tmp_path: Path,
) -> None:
    # The first call ends last: the record still lists the calls in their order, as a plan does.
    calls = [
        lambda: tools.run(["sh", "-c", "sleep 0.3; echo first"]).stdout,
        lambda: tools.run(["sh", "-c", "echo second"]).stdout,
    ]
    with tools.recording() as ran:
        assert tools.together(calls, 2) == ["first\n", "second\n"]
    assert [r.argv[2] for r in ran] == ["sleep 0.3; echo first", "echo second"]

    # A failure is raised once the other calls have ended: no process outlives the stage.
    ended = tmp_path / "ended"
    failing = [
        lambda: tools.run(["sh", "-c", "exit 3"]).stdout,
        lambda: tools.run(["sh", "-c", f"sleep 0.3; touch {ended}"]).stdout,
    ]
    with tools.recording() as ran, pytest.raises(ToolError) as failed:
        tools.together(failing, 2)
    assert failed.value.returncode == 3 and ended.exists()
    assert [r.returncode for r in ran] == [3, 0]
