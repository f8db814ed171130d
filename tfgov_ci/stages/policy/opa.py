"""The ``opa`` CLI as the policy engine, for sites that already run Open Policy Agent.

The same bundle, data and input as the regopy engine, through ``opa eval`` with a time limit;
anything but a value (a parse error, an evaluation error, a timeout) fails closed.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
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
            for index, module in enumerate(modules):
                (folder / _module_file(index, module)).write_text(module.text, encoding="utf-8")
            (folder / "data.json").write_text(json.dumps(data), encoding="utf-8")
            (folder / "input.json").write_text(json.dumps(document), encoding="utf-8")
            argv = self.argv(str(folder), modules)
            executable = tools.which("opa")
            started = time.monotonic()
            proc = subprocess.Popen(
                [executable, *argv[1:]], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
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
                tools.record(argv, executable, proc.returncode, time.monotonic() - started)
            if proc.returncode != 0:
                raise EvaluationFailed(f"opa eval failed: {(err.strip() or out.strip())[-500:]}")
            result = json.loads(out).get("result") or []
            return result[0]["expressions"][0]["value"] if result else None

        return wait

    def argv(self, folder: str, modules: Sequence[Module]) -> list[str]:
        argv = ["opa", "eval", "--format", "json", "--v1-compatible"]
        for index, module in enumerate(modules):
            argv += ["--data", f"{folder}/{_module_file(index, module)}"]
        return [*argv, "--data", f"{folder}/data.json", "--input", f"{folder}/input.json", QUERY]


def _module_file(index: int, module: Module) -> str:
    return f"{index:03d}-{module.file.name}"


class OpaPolicy(PolicyGate):
    name = "opa"
    engine = OpaEngine
    tools = ("opa",)
