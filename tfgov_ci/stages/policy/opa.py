"""The ``opa`` CLI as the policy engine, for sites that already run Open Policy Agent.

The same bundle, data and input as the regopy engine, through ``opa eval`` with a time limit;
anything but a value (a parse error, an evaluation error, a timeout) fails closed.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tfgov_ci import tools
from tfgov_ci.errors import ToolError
from tfgov_ci.stages.policy.gate import PolicyGate
from tfgov_ci.stages.policy.interface import QUERY, Engine, EvaluationFailed, Module


class OpaEngine(Engine):
    name = "opa"

    def evaluate(
        self,
        modules: Sequence[Module],
        data: Mapping[str, Any],
        document: Mapping[str, Any],
        timeout_s: float,
    ) -> Any:
        with tempfile.TemporaryDirectory(prefix="tfgov-opa.") as tmp:
            folder = Path(tmp)
            argv = ["opa", "eval", "--format", "json", "--v1-compatible"]
            for index, module in enumerate(modules):
                path = folder / f"{index:03d}-{module.file.name}"
                path.write_text(module.text, encoding="utf-8")
                argv += ["--data", str(path)]
            (folder / "data.json").write_text(json.dumps(data), encoding="utf-8")
            (folder / "input.json").write_text(json.dumps(document), encoding="utf-8")
            argv += ["--data", str(folder / "data.json"), "--input", str(folder / "input.json"), QUERY]
            try:
                done = tools.run(argv, check=False, timeout=timeout_s)
            except ToolError as exc:
                if exc.returncode is None and "did not finish" in exc.message:
                    raise EvaluationFailed(
                        f"the policy did not finish within {timeout_s:g} s (a loop?)"
                    ) from None
                raise
        if done.returncode != 0:
            raise EvaluationFailed(
                f"opa eval failed: {done.stderr.strip()[-500:] or done.stdout.strip()[-500:]}"
            )
        result = json.loads(done.stdout).get("result") or []
        return result[0]["expressions"][0]["value"] if result else None


class OpaPolicy(PolicyGate):
    name = "opa"
    engine = OpaEngine
    tools = ("opa",)
