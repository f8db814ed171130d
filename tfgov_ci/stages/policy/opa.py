"""The ``opa`` CLI as the policy engine, for sites that already run Open Policy Agent.

The same bundle, data and input as the regopy engine, through ``opa eval`` with a time limit;
anything but a value (a parse error, an evaluation error, a timeout) fails closed.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from tfgov_ci import tools
from tfgov_ci.stages.policy.gate import PolicyGate
from tfgov_ci.stages.policy.interface import QUERY, Engine, EvaluationFailed, Module


class OpaEngine(Engine):
    name = "opa"

    def start(
        self,
        modules: Sequence[Module],
        data: Mapping[str, Any],
        document: Mapping[str, Any],
        timeout_s: float,
    ) -> Callable[[], Any]:
        folder = Path(tempfile.mkdtemp(prefix="tfgov-opa."))
        try:
            argv = [tools.which("opa"), "eval", "--format", "json", "--v1-compatible"]
            for index, module in enumerate(modules):
                path = folder / f"{index:03d}-{module.file.name}"
                path.write_text(module.text, encoding="utf-8")
                argv += ["--data", str(path)]
            (folder / "data.json").write_text(json.dumps(data), encoding="utf-8")
            (folder / "input.json").write_text(json.dumps(document), encoding="utf-8")
            argv += ["--data", str(folder / "data.json"), "--input", str(folder / "input.json"), QUERY]
            proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise

        def wait() -> Any:
            try:
                out, err = proc.communicate(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
                raise EvaluationFailed(
                    f"the policy did not finish within {timeout_s:g} s (a loop?)"
                ) from None
            finally:
                shutil.rmtree(folder, ignore_errors=True)
            if proc.returncode != 0:
                raise EvaluationFailed(f"opa eval failed: {(err.strip() or out.strip())[-500:]}")
            result = json.loads(out).get("result") or []
            return result[0]["expressions"][0]["value"] if result else None

        return wait


class OpaPolicy(PolicyGate):
    name = "opa"
    engine = OpaEngine
    tools = ("opa",)
