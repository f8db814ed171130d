"""The command line: version, help, exit codes, tracebacks only with --verbose, the plan golden."""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
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
        ["inventory", "import"],
        ["inventory", "list"],
        ["inventory", "mark-deployed"],
        ["trace"],
        ["which"],
        ["rescan"],
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


def test_every_step_that_may_not_run_says_when(example_repo: Path, cli: Callable[..., CliResult]) -> None:
    """An auditor reads ``maybe:`` in the plan: each such step's description, printed under it
    (an in-process step's is its ``check:`` line), says when it is skipped or when it alone runs."""
    result = cli("plan", "--format", "json", cwd=example_repo)
    assert result.code == 0, result.err
    optional = [s for stage in json.loads(result.out)["stages"] for s in stage["steps"] if s["optional"]]
    assert optional
    assert [
        s["description"] for s in optional if not re.search(r"\b(skipped|only when)\b", s["description"])
    ] == []
    text = cli("plan", cwd=example_repo).out
    shown = {True: "            ", False: "   check:   "}
    assert all(f"{shown[bool(s['argv'])]}{s['description']}\n" in text for s in optional)


def test_allow_dirty_plans_with_dirty_tags(example_repo: Path, cli: Callable[..., CliResult]) -> None:
    (example_repo / "params.yaml").write_text("seed: 1\n")
    before = snapshot(example_repo)
    result = cli("plan", "--allow-dirty", cwd=example_repo)
    assert result.code == 0
    assert "DIRTY" in result.out
    # (the referrers tag fallback, sha256-<digest hex>, names the digest, not the commit)
    tags = re.findall(r"registry\.example\.com/ml/tf-mnist:(?!sha256-)(\S+)", result.out)
    assert tags and all(tag.endswith("-dirty") for tag in tags)
    assert snapshot(example_repo) == before


def test_every_command_and_action_has_a_handler_in_its_own_module() -> None:
    def leaves(parser: argparse.ArgumentParser, path: tuple[str, ...]) -> Iterator[tuple[str, ...]]:
        groups = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not groups:
            handler = parser.get_default("handler")
            assert handler is not None, " ".join(path)
            assert handler.__module__ == f"tfgov_ci.commands.{path[0]}", " ".join(path)
            yield path
        for group in groups:
            for name, action in group.choices.items():
                yield from leaves(action, (*path, name))

    commands = dict.fromkeys(path[0] for path in leaves(_cli.build_parser(), ()))
    assert list(commands) == [module.__name__.rpartition(".")[2] for module in _cli.COMMANDS]


def test_run_offers_exactly_the_stages_of_the_stage_table(capsys: pytest.CaptureFixture[str]) -> None:
    from tfgov_ci.pipeline import STAGES

    parser = _cli.build_parser()
    for name in STAGES:
        assert parser.parse_args(["run", name]).stage == name
    with pytest.raises(SystemExit) as raised:
        parser.parse_args(["run", "--help"])
    assert raised.value.code == 0
    assert f"STAGE one stage: {', '.join(STAGES)}" in " ".join(capsys.readouterr().out.split())


def test_an_unknown_stage_is_a_usage_error_naming_every_stage(cli: Callable[..., CliResult]) -> None:
    from tfgov_ci.pipeline import STAGES

    result = cli("run", "deploy")
    assert result.code == 2
    assert result.err == (
        "error: tfgov-ci run: argument STAGE: invalid choice: 'deploy' "
        f"(choose from {', '.join(map(repr, STAGES))}) (hint: see `tfgov-ci run --help`)\n"
    )


def test_building_the_parser_imports_none_of_the_library() -> None:
    """What keeps `tfgov-ci --version` as fast as bare Python: the handlers import the library."""
    code = (
        "import sys\n"
        "from tfgov_ci import _cli\n"
        "_cli.build_parser().format_help()\n"
        "print(*sorted(m for m in sys.modules if m.startswith('tfgov_ci')))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    loaded = set(done.stdout.split())
    parser_modules = {"tfgov_ci", "tfgov_ci._cli", "tfgov_ci.errors", "tfgov_ci.commands"}
    assert {m for m in loaded if not m.startswith("tfgov_ci.commands.")} == parser_modules


def test_the_command_keeps_jsonschemas_slow_iri_checker_out_of_its_process(tmp_path: Path) -> None:
    """rfc3987-syntax (installed here by the test extra, as Jupyter installs it) costs 1.7 s at
    import; the command reads schemas without it, and a plain import of jsonschema still loads it."""
    code = (
        "import sys\n"
        "from tfgov_ci import _cli\n"
        "sys.argv = ['tfgov-ci', 'validate']\n"
        "code = _cli.entry()\n"
        "import jsonschema\n"
        "print(code, sys.modules.get('rfc3987_syntax'))\n"
    )
    (tmp_path / "tfgov.yaml").write_text("version: 1\nimage: {name: 7}\n")  # read against its schema
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert done.stdout.split() == ["2", "None"] and "image.name" in done.stderr, done.stderr
    plain = "import sys, jsonschema; print(sys.modules.get('rfc3987_syntax') is not None)"
    assert subprocess.run([sys.executable, "-c", plain], capture_output=True, text=True).stdout == "True\n"


def test_gitlab_note_looks_for_the_summary_the_policy_stage_writes(
    tmp_path: Path, cli: Callable[..., CliResult], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TFGOV_GITLAB_TOKEN", "glpat-unused")
    server = ("--url", "https://gitlab.example.com", "--project", "42")
    default = cli("gitlab", "note", *server, cwd=tmp_path)
    assert default.code == 2
    assert default.err.startswith(f"error: {Path('.tfgov/out/policy/summary.md')}: no policy summary")
    given = cli("gitlab", "note", *server, "--out", str(tmp_path / "elsewhere"), cwd=tmp_path)
    assert given.err.startswith(f"error: {tmp_path / 'elsewhere/policy/summary.md'}: no policy summary")


@pytest.mark.parametrize("registry", ["registry.example.com", None])
def test_base_build_pushes_the_layout_when_the_definition_names_a_registry(
    registry: str | None, tmp_path: Path, cli: Callable[..., CliResult], monkeypatch: pytest.MonkeyPatch
) -> None:
    from tfgov_ci.oci import registry as registry_mod
    from tfgov_ci.oci.reference import Reference
    from tfgov_ci.stages.build import base_factory

    image = "  name: tf-base\n  repository: platform/tf-base\n" + (
        f"  registry: {registry}\n" if registry else ""
    )
    (tmp_path / "tfgov-base.yaml").write_text(
        f"version: 1\nimage:\n{image}debian:\n  packages: [python3.11-minimal]\npython: '3.11'\n"
    )
    tag, digest = "python3.11-0123456789ab", "sha256:" + "a" * 64
    pushes: list[tuple[object, ...]] = []

    def build(definition: object, out: Path, cache: Path, **kwargs: object) -> base_factory.BaseImage:
        return base_factory.BaseImage(out, tag, digest, 2_000_000, 3, 0)

    def push_layout(layout: Path, ref: str, at: str, target: Reference, tags: tuple[str, ...], *rest: object):
        pushes.append((layout, ref, at, target, tags))
        return {"reference": f"{target.registry}/{target.repository}@{at}"}

    monkeypatch.setattr(base_factory, "build", build)
    monkeypatch.setattr(registry_mod, "push_layout", push_layout)
    result = cli("base", "build", cwd=tmp_path)
    assert result.code == 0, result.err
    layout = tmp_path / ".tfgov" / "base" / "oci"
    assert f"layout  {layout}:{tag}\n" in result.out
    if registry is None:
        assert pushes == []
        assert "pushed" not in result.out
        return
    pinned = f"registry.example.com/platform/tf-base@{digest}"
    assert pushes == [(layout, tag, digest, Reference(registry, "platform/tf-base"), (tag,))]
    assert result.out.endswith(f"pushed  {pinned}\npin it in tfgov.yaml:  base.image: {pinned}\n")


def test_keyless_signing_plans_no_key_needs_a_signing_config_and_the_ci_token(
    example_repo: Path, cli: Callable[..., CliResult], monkeypatch: pytest.MonkeyPatch
) -> None:
    """No Fulcio can run here: the keyless argv is checked, and the run's refusals before cosign."""
    config = example_repo / "tfgov.yaml"
    original = config.read_text()
    config.write_text(original + "stages:\n  sign:\n    options: {keyless: true}\n")
    missing = cli("plan", "sign", "--allow-dirty", cwd=example_repo)
    assert missing.code == 2 and "keyless signing needs a signing_config" in missing.err
    assert "--with-default-services" in missing.err  # how to name the public Sigstore on purpose
    (example_repo / "sc.json").write_text("{}")
    config.write_text(original + "stages:\n  sign:\n    options: {keyless: true, signing_config: sc.json}\n")
    plan = json.loads(cli("plan", "sign", "--allow-dirty", "--format", "json", cwd=example_repo).out)
    argvs = [step["argv"] for step in plan["stages"][0]["steps"] if step.get("argv")]
    cosign = [argv for argv in argvs if argv[0] == "cosign"]
    assert [argv[1] for argv in cosign] == ["sign", *["attest"] * 4]  # the team's config: none made
    assert all("--key" not in argv and str(example_repo / "sc.json") in argv for argv in cosign)
    from tfgov_ci.project import open_project
    from tfgov_ci.stages.sign.cosign import CosignSigner
    from tfgov_ci.stages.sign.interface import SigningKeyError

    monkeypatch.delenv("SIGSTORE_ID_TOKEN", raising=False)
    ctx = open_project(config).context
    with pytest.raises(SigningKeyError, match="OIDC token in SIGSTORE_ID_TOKEN"):
        CosignSigner({"keyless": True, "signing_config": "sc.json"}).usable_key(ctx)
    monkeypatch.setenv("SIGSTORE_ID_TOKEN", "eyJ.token.from-gitlab-id-tokens")
    assert CosignSigner({"keyless": True, "signing_config": "sc.json"}).usable_key(ctx) is None
