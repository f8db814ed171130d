"""The policy stage, whichever engine evaluates the Rego: input, exceptions, decision, reports.

Outputs (``<out>/policy/``): ``policy-input.json`` (the document, to replay with ``tfgov-ci policy
eval``), ``decision.json``, ``summary.md``, ``junit.xml``, ``gl-container-scanning-report.json``.
They are written whether the image is allowed or denied; a denial then fails the stage (exit 1).
"""

from __future__ import annotations

import datetime as dt
import gc
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from tfgov_ci import findings
from tfgov_ci._files import atomic_write_json, atomic_write_text
from tfgov_ci.context import Context
from tfgov_ci.pipeline import STAGES, Clock, StagePlan, StageResult, Step, passed, read_result, result_path
from tfgov_ci.stages.policy import document, exceptions, reports
from tfgov_ci.stages.policy.interface import Engine, begin, denied, load_modules, settings

OUTPUTS = {
    "input": "policy-input.json",
    "decision": "decision.json",
    "summary": "summary.md",
    "junit": "junit.xml",
    "gitlab": "gl-container-scanning-report.json",
}


class PolicyGate:
    stage: ClassVar[str] = "policy"
    name: ClassVar[str]
    engine: ClassVar[type[Engine]]
    tools: ClassVar[tuple[str, ...]] = ()

    def __init__(self, options: Mapping[str, Any]) -> None:
        self.options = options

    def plan(self, ctx: Context) -> StagePlan:
        chosen = settings(self.options)
        modules = load_modules(ctx.config.project_dir, chosen)
        out = result_path(ctx.out_dir, self.stage).parent
        exceptions_file = ctx.config.project_dir / chosen.exceptions
        rules = ", ".join(m.name for m in modules)
        return StagePlan(
            stage=self.stage,
            backend=self.name,
            available=True,
            summary=STAGES[self.stage].summary,
            tools=self.tools,
            steps=(
                Step(
                    f"apply the governed exceptions ({exceptions_file.name})"
                    if exceptions_file.is_file()
                    else "no governed exceptions file: every finding counts"
                ),
                Step(
                    f"evaluate {len(modules)} Rego v1 rules ({rules}) over one input document",
                    tuple(self.engine().argv("<temporary dir>", modules) or ()),
                    tool=self.tools[0] if self.tools else None,
                ),
                Step("write the decision, Markdown summary, JUnit and GitLab container-scanning reports"),
            ),
            inputs=tuple(str(result_path(ctx.out_dir, s)) for s in STAGES[self.stage].needs),
            outputs=(
                *(str(out / name) for name in OUTPUTS.values()),
                str(result_path(ctx.out_dir, self.stage)),
            ),
        )

    def run(self, ctx: Context, plan: StagePlan) -> StageResult:
        # The stage makes hundreds of thousands of small objects that hold no cycles (10,000
        # findings, their input document, the reports); Python's cycle collector would walk them
        # again and again for nothing (0.05 s of the stage). Collection resumes when it ends.
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            return self._run(ctx, plan)
        finally:
            if was_enabled:
                gc.enable()

    def _run(self, ctx: Context, plan: StagePlan) -> StageResult:
        clock = Clock.start()
        started = dt.datetime.now(dt.UTC)
        chosen = settings(self.options)
        modules = load_modules(ctx.config.project_dir, chosen)
        today = exceptions.today()
        exceptions_file = ctx.config.project_dir / chosen.exceptions
        entries = (
            exceptions.load(exceptions_file, max_days=chosen.exceptions_max_days, on=today)
            if exceptions_file.is_file()
            else []
        )
        scan = read_result(ctx, "scan")
        report = findings.load(Path(scan.outputs["findings"]))
        doc, applied = document.build(ctx, report, entries, today)
        t0 = time.monotonic()
        # The engine evaluates in another process; the reports that do not depend on its decision
        # are written meanwhile (on two cores, about half the stage's time for 10,000 findings).
        finish = begin(self.engine(), modules, chosen.params, doc, chosen.timeout_s, chosen.mandatory)
        image = f"{doc['image']['repository']}@{doc['image']['digest']}"
        out = result_path(ctx.out_dir, self.stage).parent
        paths = {key: out / name for key, name in OUTPUTS.items()}
        atomic_write_json(paths["input"], doc, compact=True)
        scanners = [s.to_json() for s in report.scanners]
        gitlab = reports.gitlab_container_scanning(
            report.findings, image, scanners, started, dt.datetime.now(dt.UTC), _operating_system(doc)
        )
        atomic_write_json(paths["gitlab"], gitlab, compact=True)
        decision = finish()
        eval_s = time.monotonic() - t0
        atomic_write_json(
            paths["decision"], {**decision.to_json(), "image": image, "exceptions": applied.to_json()}
        )
        atomic_write_text(paths["summary"], reports.markdown(decision, image, applied, report.findings))
        atomic_write_text(paths["junit"], reports.junit(decision, image, eval_s))
        if not decision.allow:
            raise denied(decision)
        counts = exceptions.count(applied)
        warnings = tuple(
            [f"stale exception {e.id} for {e.package} ({e.where}): it matches nothing" for e in applied.stale]
            + [
                f"outdated exception {e.id} for {e.package} ({e.where}): "
                f"fixed in {', '.join(f.fixed_versions)}"
                for e, f in applied.outdated
            ]
            + (
                [
                    "not a production image (stages.policy.options.production: false): it may carry "
                    f"{', '.join(chosen.params['allowed_tools'])}; never deploy it"
                ]
                if chosen.params["production"] is False
                else []
            )
        )
        return passed(
            ctx,
            self.stage,
            self.name,
            clock,
            f"allowed: {len(decision.rules)} rules passed; {len(applied.findings)} findings counted, "
            f"{counts['excepted_findings']} excepted",
            outputs={key: str(path) for key, path in paths.items()},
            data={
                "allow": True,
                "engine": decision.engine,
                "rules": [r.name for r in decision.rules],
                "exceptions": counts,
                "evaluation_s": round(eval_s, 3),
            },
            warnings=warnings,
        )


def _operating_system(doc: Mapping[str, Any]) -> str:
    return "Debian" if doc.get("sbom", {}).get("by_type", {}).get("deb") else "Unknown"
