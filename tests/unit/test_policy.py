"""The Rego gate with regopy: each default rule on crafted inputs, and every way it fails closed."""

from __future__ import annotations

import copy
import ctypes
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from tests.helpers import ROOT, CliResult
from tfgov_ci.errors import ConfigError
from tfgov_ci.stages.policy.interface import Decision, evaluate, load_modules, settings
from tfgov_ci.stages.policy.regopy import RegopyEngine

DIGEST = "sha256:" + "a" * 64
LABELS = {
    "org.opencontainers.image.revision": "c0ffee",
    "org.opencontainers.image.created": "2026-01-02T03:04:05Z",
    "org.opencontainers.image.title": "hello",
    "org.opencontainers.image.base.name": "127.0.0.1:5000/platform/py-base",
    "org.opencontainers.image.base.digest": DIGEST,
    "io.tfgov.lock.digest": DIGEST,
}


def good_input() -> dict[str, Any]:
    """An input every default rule allows."""
    return {
        "schema_version": 1,
        "config": {
            "image": {"name": "hello"},
            "base": {
                "image": f"127.0.0.1:5000/platform/py-base@{DIGEST}",
                "allowed_registries": ["127.0.0.1:5000"],
            },
        },
        "context": {"commit": "c0ffee", "branch": "main", "git_tags": [], "dirty": False, "ci": {}},
        "image": {
            "repository": "127.0.0.1:5000/ml/hello",
            "digest": DIGEST,
            "tags": ["c0ffee", "main"],
            "labels": dict(LABELS),
            "size": 50_000_000,
            "config": {"User": "65532:65532", "Labels": dict(LABELS)},
            "base": {"digest": DIGEST, "ref": f"127.0.0.1:5000/platform/py-base@{DIGEST}"},
        },
        "sbom": {
            "packages": 2,
            "components": [
                {"name": "libc6", "version": "2.36-9", "type": "deb", "purl": "pkg:deb/debian/libc6@2.36-9"},
                {"name": "PyYAML", "version": "6.0.2", "type": "pypi", "purl": "pkg:pypi/pyyaml@6.0.2"},
            ],
        },
        "drift": [],
        "vulnerabilities": [
            vuln("CVE-2099-0009", "MEDIUM", fixed=True),
            vuln("CVE-2099-0008", "CRITICAL", fixed=False),
        ],
        "excepted": [],
        "exceptions": {"used": [], "expired": [], "stale": [], "outdated": []},
        "today": "2026-11-26",
    }


def vuln(id_: str, severity: str, *, fixed: bool) -> dict[str, Any]:
    return {
        "id": id_,
        "aliases": [],
        "package": {"name": "pyyaml", "type": "pypi", "purl": "pkg:pypi/pyyaml@6.0.2"},
        "installed_version": "6.0.2",
        "fixed_versions": ["6.0.3"] if fixed else [],
        "severity": severity,
        "fix_state": "fixed" if fixed else "not-fixed",
        "cvss_score": None,
        "scanners": ["trivy"],
    }


def decide(
    document: dict[str, Any], options: dict[str, Any] | None = None, project: Path | None = None
) -> Decision:
    chosen = settings(options or {})
    modules = load_modules(project, chosen)
    return evaluate(RegopyEngine(), modules, chosen.params, document, chosen.timeout_s, chosen.mandatory)


def denied_by(decision: Decision) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for rule, message in decision.denials:
        out.setdefault(rule, []).append(message)
    return out


def test_the_good_input_matches_its_schema_and_passes_every_default_rule() -> None:
    schema = json.loads((ROOT / "schemas/policy-input.schema.json").read_text())
    jsonschema.validate(good_input(), schema)
    decision = decide(good_input())
    assert decision.allow, decision.denials
    assert [r.name for r in decision.rules] == [
        "base",
        "exceptions",
        "labels",
        "locked",
        "naming",
        "no_latest",
        "non_root",
        "production_tools",
        "size",
        "vulnerabilities",
    ]


def mutate(change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    doc = copy.deepcopy(good_input())
    change(doc)
    return doc


CASES: list[tuple[str, Callable[[dict[str, Any]], None], str]] = [
    (
        "vulnerabilities",
        lambda d: d["vulnerabilities"].append(vuln("CVE-2099-0001", "HIGH", fixed=True)),
        "HIGH CVE-2099-0001 in pyyaml 6.0.2 (fixed in 6.0.3)",
    ),
    (
        "exceptions",
        lambda d: d["exceptions"]["expired"].append(
            {
                "id": "CVE-2099-0002",
                "package": "libc6",
                "scope": "*",
                "reason": "r",
                "owner": "platform@example.com",
                "approved_by": "sec",
                "expires": "2026-11-01",
                "where": "tfgov-exceptions.yaml:10",
            }
        ),
        "exception CVE-2099-0002 for libc6 expired on 2026-11-01 "
        "(tfgov-exceptions.yaml:10, owner platform@example.com)",
    ),
    ("non_root", lambda d: d["image"]["config"].update(User="0"), "the image runs as root"),
    ("non_root", lambda d: d["image"]["config"].pop("User"), "the image runs as root"),
    ("no_latest", lambda d: d["image"]["tags"].append("latest"), "tagged 'latest'"),
    ("naming", lambda d: d["config"]["image"].update(name="Hello_World"), 'image name "Hello_World" breaks'),
    ("base", lambda d: d["image"]["base"].pop("digest"), "is not pinned by digest"),
    (
        "base",
        lambda d: d["config"]["base"].update(image=f"docker.io/library/python@{DIGEST}"),
        "the base comes from docker.io, which is not an allowed registry (127.0.0.1:5000)",
    ),
    (
        "labels",
        lambda d: d["image"]["labels"].pop("io.tfgov.lock.digest"),
        "required label io.tfgov.lock.digest",
    ),
    (
        "production_tools",
        lambda d: d["sbom"]["components"].append(
            {"name": "bash", "version": "5.2", "type": "deb", "purl": "pkg:deb/debian/bash@5.2"}
        ),
        "bash 5.2 (deb)",
    ),
    (
        "production_tools",
        lambda d: d["sbom"]["components"].append(
            {"name": "pip", "version": "24.0", "type": "pypi", "purl": "pkg:pypi/pip@24.0"}
        ),
        "pip 24.0 (pypi)",
    ),
    (
        "locked",
        lambda d: d["drift"].append(
            {
                "kind": "unlocked",
                "subject": "requests",
                "message": "requests 2.32.3 is in the image but not locked",
            }
        ),
        "drift (unlocked): requests 2.32.3",
    ),
    (
        "size",
        lambda d: d["image"].update(size=5_000_000_000),
        "the image is 5000 MB, above the limit of 4000 MB",
    ),
]


@pytest.mark.parametrize(
    ("rule", "change", "message"), CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)]
)
def test_each_default_rule_denies_its_case_and_only_that_rule_does(
    rule: str, change: Callable[[dict[str, Any]], None], message: str
) -> None:
    decision = decide(mutate(change))
    assert not decision.allow
    denials = denied_by(decision)
    assert list(denials) == [rule]
    assert any(message in m for m in denials[rule]), denials


def test_parameters_move_the_gate() -> None:
    doc = good_input()  # MEDIUM with a fix, CRITICAL without one
    assert decide(doc).allow
    medium = decide(doc, {"severity_threshold": "MEDIUM"})
    assert denied_by(medium) == {"vulnerabilities": ["MEDIUM CVE-2099-0009 in pyyaml 6.0.2 (fixed in 6.0.3)"]}
    unfixed = decide(doc, {"fixable_only": False})
    assert denied_by(unfixed) == {"vulnerabilities": ["CRITICAL CVE-2099-0008 in pyyaml 6.0.2 (no fix yet)"]}
    debug = mutate(
        lambda d: d["sbom"]["components"].append({"name": "bash", "version": "5", "type": "deb", "purl": "p"})
    )
    assert decide(debug, {"production": False, "allowed_tools": ["bash"]}).allow
    assert decide(mutate(lambda d: d["image"].update(size=5_000_000_000)), {"max_image_mb": 6000}).allow


def team_policy(tmp_path: Path, name: str, text: str) -> Path:
    folder = tmp_path / "policies"
    folder.mkdir(exist_ok=True)
    (folder / f"{name}.rego").write_text(text)
    return folder


def test_a_team_rule_joins_the_bundle(tmp_path: Path) -> None:
    team_policy(
        tmp_path,
        "owner_label",
        """package tfgov.rules.owner_label

import rego.v1

deny contains "every image names its owning team (label io.example.team)" if {
\tnot input.image.labels["io.example.team"]
}
""",
    )
    decision = decide(good_input(), {"policies": ["policies"]}, tmp_path)
    assert denied_by(decision) == {
        "owner_label": ["every image names its owning team (label io.example.team)"]
    }


def test_a_v0_policy_file_is_refused_before_evaluation_with_its_line(tmp_path: Path) -> None:
    team_policy(tmp_path, "old", 'package tfgov.rules.old\n\ndeny[msg] { msg := "x" }\n')
    with pytest.raises(ConfigError) as raised:
        decide(good_input(), {"policies": ["policies"]}, tmp_path)
    (problem,) = raised.value.problems
    assert problem.file.endswith("old.rego") and problem.line == 1
    assert "must use Rego v1" in problem.message and "never deny" in (problem.hint or "")


def test_every_json_type_reaches_rego_as_it_was(tmp_path: Path) -> None:
    """The input goes in through rego-cpp's C API value by value. Each JSON type, nesting,
    Unicode, quotes, backslashes, control characters and a 64-bit integer must equal the same
    value written as a literal in a policy, and a string must come back out unchanged."""
    tricky = 'é 漢字 "quoted" back\\slash\ttab\nline'
    extra = {
        "text": tricky,
        "wrapped": '"in quotes"',
        "big": 2**40,
        "negative": -3,
        "float": 7.25,
        "yes": True,
        "no": False,
        "nothing": None,
        "list": [1, "x", [], {}, [None, 0.5]],
        "nested": {"k": {"deeper": ['a"b']}, 'key "with" quotes': "v"},
    }
    literal = json.dumps(extra, ensure_ascii=False)
    team_policy(
        tmp_path,
        "echo",
        "package tfgov.rules.echo\n\nimport rego.v1\n\n"
        f'deny contains "differs from the literal" if input.extra != {literal}\n\n'
        "deny contains input.extra.text\n",
    )
    decision = decide({**good_input(), "extra": extra}, {"policies": ["policies"]}, tmp_path)
    assert denied_by(decision) == {"echo": [tricky]}


def test_rego_cpp_keeps_a_failed_input_in_error() -> None:
    """The input builder checks rego-cpp's input once, at the end: right only while a failed call
    leaves the input in error for every later call, as rego-cpp 1.x does."""
    from regopy.rego_shared import rego

    raw = ctypes.CDLL(rego._name)
    handle = ctypes.c_void_p(rego.regoNewInput())
    try:
        assert raw.regoInputString(handle, b"key") == 0
        assert raw.regoInputObject(handle, 1) != 0  # a string is not an object item
        assert raw.regoInputString(handle, b"later") != 0
        assert raw.regoInputValidate(handle) != 0
    finally:
        rego.regoFreeInput(handle)


def test_a_deny_of_the_wrong_type_fails_closed(tmp_path: Path) -> None:
    """A rule that yields an object (what a v0 `deny[msg]` becomes in regopy) is a denial."""
    team_policy(tmp_path, "objecty", 'package tfgov.rules.objecty\n\nimport rego.v1\n\ndeny := {"x": true}\n')
    decision = decide(good_input(), {"policies": ["policies"]}, tmp_path)
    assert not decision.allow
    assert denied_by(decision)["objecty"] == [
        "deny is an object, not a set of messages: a Rego v0 rule? denied (fail-closed)"
    ]


def test_an_undefined_decision_fails_closed(tmp_path: Path) -> None:
    team_policy(tmp_path, "quiet", "package tfgov.rules.quiet\n\nimport rego.v1\n\nallow := true\n")
    decision = decide(good_input(), {"policies": ["policies"]}, tmp_path)
    assert denied_by(decision) == {"quiet": ["its deny rule is undefined: denied (fail-closed)"]}


def test_an_evaluation_error_fails_closed(tmp_path: Path) -> None:
    team_policy(
        tmp_path,
        "conflict",
        "package tfgov.rules.conflict\n\nimport rego.v1\n\nx := 1\nx := 2\n\ndeny := []\n",
    )
    decision = decide(good_input(), {"policies": ["policies"]}, tmp_path)
    assert not decision.allow and decision.rules == ()
    assert (
        decision.errors[0].startswith("the policy failed to evaluate") and "fail-closed" in decision.errors[0]
    )


def test_a_parse_error_names_file_and_line(tmp_path: Path) -> None:
    folder = team_policy(
        tmp_path, "broken", "package tfgov.rules.broken\n\nimport rego.v1\n\ndeny contains msg if {\n"
    )
    decision = decide(good_input(), {"policies": ["policies"]}, tmp_path)
    assert not decision.allow
    assert f"{folder / 'broken.rego'}:5: " in decision.errors[0]


def test_a_policy_that_loops_is_stopped_at_the_time_limit_and_denies(tmp_path: Path) -> None:
    team_policy(
        tmp_path,
        "slow",
        """package tfgov.rules.slow

import rego.v1

deny contains "never" if {
\tsome i in numbers.range(1, 100000000)
\ti < 0
}
""",
    )
    decision = decide(good_input(), {"policies": ["policies"], "timeout_s": 1}, tmp_path)
    assert not decision.allow
    assert decision.errors == ("the policy did not finish within 1 s (a loop?): denied (fail-closed)",)


def test_mandatory_rules_cannot_be_disabled_and_must_evaluate() -> None:
    with pytest.raises(ConfigError, match="non_root is mandatory"):
        settings({"disable": ["non_root"], "mandatory": ["non_root"]})
    assert decide(mutate(lambda d: d["image"]["config"].update(User="0")), {"disable": ["non_root"]}).allow
    missing = decide(good_input(), {"mandatory": ["signed"]})
    assert missing.errors == ("mandatory rule signed did not evaluate (no such rule loaded)",)


def test_unknown_or_bad_options_are_config_errors() -> None:
    with pytest.raises(ConfigError) as raised:
        settings({"severity": "HIGH", "severity_threshold": "SEVERE", "fixable_only": "yes"})
    keys = [p.key for p in raised.value.problems]
    assert keys == [
        "stages.policy.options.severity",
        "stages.policy.options.severity_threshold",
        "stages.policy.options.fixable_only",
    ]


def test_policy_eval_and_policy_test_from_the_cli(tmp_path: Path, cli: Callable[..., CliResult]) -> None:
    (tmp_path / "good.input.json").write_text(json.dumps(good_input()))
    bad = mutate(lambda d: d["image"]["config"].update(User="root"))
    (tmp_path / "root.input.json").write_text(json.dumps(bad))
    allowed = cli("policy", "eval", "--input", "good.input.json", cwd=tmp_path)
    assert allowed.code == 0 and allowed.out.strip().endswith("allowed")
    denied = cli("policy", "eval", "--input", "root.input.json", "--format", "json", cwd=tmp_path)
    assert denied.code == 1
    assert json.loads(denied.out)["denials"][0]["rule"] == "non_root"
    cases = tmp_path / "policy-tests"
    cases.mkdir()
    for name in ("good", "root"):
        (cases / f"{name}.input.json").write_text((tmp_path / f"{name}.input.json").read_text())
    (cases / "good.expect.yaml").write_text("allow: true\n")
    (cases / "root.expect.yaml").write_text(
        "allow: false\ndenied_rules: [non_root]\nmessages_contain: [runs as root]\n"
    )
    tested = cli("policy", "test", cwd=tmp_path)
    assert tested.code == 0, tested.out
    assert "PASS root: denied by non_root" in tested.out and "2 passed, 0 failed" in tested.out
    (cases / "good.expect.yaml").write_text("allow: false\n")
    failing = cli("policy", "test", cwd=tmp_path)
    assert failing.code == 1 and "FAIL good: expected deny, got allow" in failing.out


def test_policy_eval_with_an_exceptions_file_re_applies_it(
    tmp_path: Path, cli: Callable[..., CliResult]
) -> None:
    from tfgov_ci.stages.policy import exceptions

    doc = mutate(lambda d: d["vulnerabilities"].append(vuln("CVE-2099-0001", "HIGH", fixed=True)))
    (tmp_path / "input.json").write_text(json.dumps(doc))
    assert cli("policy", "eval", "--input", "input.json", cwd=tmp_path).code == 1
    expires = exceptions.today().isoformat()
    (tmp_path / "exc.yaml").write_text(f"""version: 1
exceptions:
  - id: CVE-2099-0001
    package: PyYAML
    reason: accepted for one day while the upgrade is tested
    owner: ml@example.com
    approved_by: security@example.com
    expires: {expires}
""")
    result = cli("policy", "eval", "--input", "input.json", "--exceptions", "exc.yaml", cwd=tmp_path)
    assert result.code == 0, result.out + result.err


def test_the_opa_engine_without_opa_installed_is_a_tool_error_with_a_hint(
    tmp_path: Path, cli: Callable[..., CliResult], monkeypatch: pytest.MonkeyPatch
) -> None:
    """opa is not installable here: this checks only the missing-binary path of the opa engine."""
    monkeypatch.setenv("PATH", str(tmp_path))
    (tmp_path / "input.json").write_text(json.dumps(good_input()))
    result = cli("policy", "eval", "--input", "input.json", "--engine", "opa", cwd=tmp_path)
    assert result.code == 3
    assert "opa is not installed" in result.err and "regopy backend" in result.err


def test_the_opa_engine_runs_the_command_its_plan_shows(
    example_repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """opa is not installable here, so a stand-in `opa` on PATH answers with an empty rule set: this
    checks only that the command the engine starts is the one the policy stage's plan shows, and
    that it is recorded for the stage's result; the real opa's evaluation is not tested here."""
    from tfgov_ci import pipeline, tools
    from tfgov_ci.project import open_project
    from tfgov_ci.stages.policy.opa import OpaEngine, OpaPolicy

    stand_in = tmp_path / "bin" / "opa"
    stand_in.parent.mkdir()
    stand_in.write_text('#!/bin/sh\necho \'{"result": [{"expressions": [{"value": {}}]}]}\'\n')
    stand_in.chmod(0o755)
    monkeypatch.setenv("PATH", f"{stand_in.parent}:/usr/bin:/bin")
    project = open_project(example_repo / "tfgov.yaml")
    planned = OpaPolicy({}).plan(project.context).steps
    modules = load_modules(None, settings({}))
    with tools.recording() as ran:
        assert OpaEngine().start(modules, {}, {}, 10)() == {}
    assert [c.executable for c in ran] == [str(stand_in)]
    assert ran[0].argv[:2] == ("opa", "eval") and ran[0].argv.count("--data") == len(modules) + 1
    assert pipeline.disagreements(planned, [c.argv for c in ran]) == []


def test_junit_has_one_case_per_rule_and_a_failing_case_for_an_engine_error(tmp_path: Path) -> None:
    from xml.etree import ElementTree as ET

    from tfgov_ci.stages.policy import reports

    denied = decide(mutate(lambda d: d["image"]["tags"].append("latest")))
    suite = ET.fromstring(reports.junit(denied, "img", 0.1)).find("testsuite")
    assert suite is not None and (suite.get("tests"), suite.get("failures")) == ("10", "1")
    team_policy(
        tmp_path, "broken", "package tfgov.rules.broken\n\nimport rego.v1\n\ndeny contains msg if {\n"
    )
    broken = decide(good_input(), {"policies": ["policies"]}, tmp_path)
    suite = ET.fromstring(reports.junit(broken, "img", 0.1)).find("testsuite")
    assert suite is not None
    (case,) = list(suite.iter("testcase"))
    failure = case.find("failure")
    assert case.get("name") == "engine" and failure is not None and "broken.rego:5" in (failure.text or "")


def test_validate_finds_a_bad_policy_option_and_a_v0_team_file_with_their_lines(
    example_repo: Path, cli: Callable[..., CliResult]
) -> None:
    from tests.helpers import git

    config = example_repo / "tfgov.yaml"
    config.write_text(
        config.read_text()
        + "stages:\n  policy:\n    options:\n      severity: HIGH\n      policies: [rules]\n"
    )
    (example_repo / "rules").mkdir()
    (example_repo / "rules" / "old.rego").write_text('package tfgov.rules.old\n\ndeny[msg] { msg := "x" }\n')
    git(example_repo, "add", "-A")
    git(example_repo, "commit", "-qm", "policy options")
    lines = config.read_text().splitlines()
    result = cli("validate", cwd=example_repo)
    assert result.code == 2
    assert (
        f"tfgov.yaml:{lines.index('      severity: HIGH') + 1}: stages.policy.options.severity: unknown"
        in result.err
    )
    assert "rules/old.rego:1: policy files must use Rego v1" in result.err


def with_components(*names: str) -> dict[str, Any]:
    return mutate(
        lambda d: d["sbom"]["components"].extend(
            {"name": n, "version": "1", "type": "deb", "purl": f"pkg:deb/debian/{n}@1"} for n in names
        )
    )


def test_a_model_image_with_a_shell_is_still_denied_whatever_the_tools_image_allows() -> None:
    shell = with_components("dash")
    assert denied_by(decide(shell)) == {
        "production_tools": ["dash 1 (deb) is in a production image: no shells or package managers"]
    }
    # the tools image's exception lives in the tools image's own policy options, not in the defaults
    assert settings({}).params["allowed_tools"] == []


def test_a_tools_image_may_carry_only_the_tools_its_policy_names() -> None:
    tools_image = {"production": False, "allowed_tools": ["dash", "pip"]}
    assert decide(with_components("dash", "pip"), tools_image).allow
    decision = decide(with_components("dash", "pip", "apt", "bash"), tools_image)
    assert denied_by(decision) == {
        "production_tools": [
            "apt 1 (deb) is not in allowed_tools of this non-production image",
            "bash 1 (deb) is not in allowed_tools of this non-production image",
        ]
    }


def test_production_false_must_name_what_it_allows_and_allowed_tools_needs_production_false() -> None:
    with pytest.raises(ConfigError) as unnamed:
        settings({"production": False})
    assert "stages.policy.options.production: a non-production image names the shells" in str(unnamed.value)
    with pytest.raises(ConfigError) as production:
        settings({"allowed_tools": ["dash"]})
    assert "allowed_tools: only a non-production image may carry shells" in str(production.value)
    with pytest.raises(ConfigError) as stray:
        settings({"production": False, "allowed_tools": ["git"]})
    assert "git is not a forbidden package: nothing to allow" in str(stray.value)
