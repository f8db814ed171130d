"""The policy outside a pipeline run: ``tfgov-ci policy eval`` on a saved input document, and
``tfgov-ci policy test`` on a folder of saved inputs with the decisions a team expects.

A test case is two files: ``NAME.input.json`` (a policy input, e.g. a ``policy-input.json`` that
a pipeline wrote) and ``NAME.expect.yaml``::

    allow: false
    denied_rules: [non_root]          # optional: exactly these rules deny
    messages_contain: ["runs as root"]  # optional: each appears in some denial
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from tfgov_ci import findings
from tfgov_ci._files import load_yaml
from tfgov_ci.errors import UsageError
from tfgov_ci.stages.policy import document, exceptions
from tfgov_ci.stages.policy.interface import Decision, Engine, evaluate, load_modules, settings


def engine_named(name: str) -> Engine:
    if name == "opa":
        from tfgov_ci.stages.policy.opa import OpaEngine

        return OpaEngine()
    from tfgov_ci.stages.policy.regopy import RegopyEngine

    return RegopyEngine()


def read_document(path: Path) -> dict[str, Any]:
    loaded = findings.read_json(path)  # file and line of a broken document, exit 2
    if not isinstance(loaded, dict):
        raise UsageError(f"{path}: a policy input is a JSON object", "see schemas/policy-input.schema.json")
    return loaded


def evaluate_file(
    input_path: Path,
    *,
    options: Mapping[str, Any],
    project_dir: Path | None,
    policies: Sequence[Path] = (),
    exceptions_file: Path | None = None,
    engine: str = "regopy",
) -> Decision:
    """One evaluation of a saved input with the default bundle, the configured and the given policies."""
    chosen = settings(options)
    chosen = replace(chosen, policies=(*chosen.policies, *(str(p.resolve()) for p in policies)))
    modules = load_modules(project_dir, chosen)
    doc = read_document(input_path)
    if exceptions_file is not None:
        today = exceptions.today()
        entries = exceptions.load(exceptions_file, max_days=chosen.exceptions_max_days, on=today)
        doc = document.reapply(doc, entries, today)
    return evaluate(engine_named(engine), modules, chosen.params, doc, chosen.timeout_s, chosen.mandatory)


@dataclass(frozen=True)
class CaseResult:
    name: str
    passed: bool
    detail: str


def run_tests(
    folder: Path, *, options: Mapping[str, Any], project_dir: Path | None, engine: str = "regopy"
) -> list[CaseResult]:
    cases = sorted(folder.glob("*.input.json"))
    if not cases:
        raise UsageError(
            f"{folder}: no test cases (NAME.input.json with NAME.expect.yaml)",
            "save a policy-input.json from a pipeline run as a case and write what you expect",
        )
    results = []
    for case in cases:
        name = case.name.removesuffix(".input.json")
        expect_file = case.with_name(f"{name}.expect.yaml")
        expect = load_yaml(expect_file).data
        if not isinstance(expect.get("allow"), bool):
            raise UsageError(f"{expect_file}: needs `allow: true` or `allow: false`")
        decision = evaluate_file(case, options=options, project_dir=project_dir, engine=engine)
        results.append(_check(name, expect, decision))
    return results


def _check(name: str, expect: Mapping[str, Any], decision: Decision) -> CaseResult:
    problems = []
    if decision.allow != expect["allow"]:
        problems.append(
            f"expected {'allow' if expect['allow'] else 'deny'}, got {'allow' if decision.allow else 'deny'}"
        )
    denied = sorted({rule for rule, _ in decision.denials})
    if "denied_rules" in expect and sorted(expect["denied_rules"]) != denied:
        problems.append(f"expected denials from {sorted(expect['denied_rules'])}, got {denied}")
    messages = [message for _, message in decision.denials]
    for text in expect.get("messages_contain", []):
        if not any(text in message for message in messages):
            problems.append(f"no denial mentions {text!r}")
    detail = "; ".join(problems) or (f"denied by {', '.join(denied)}" if denied else "allowed")
    return CaseResult(name, not problems, detail)
