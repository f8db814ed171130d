"""How plans and runs look to a person: the plan as text, progress lines, the summary table."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from tfgov_ci import _resources
from tfgov_ci.pipeline import PipelinePlan, StagePlan, StageResult

if TYPE_CHECKING:
    from rich.console import Console


def shown(path: str | None) -> str:
    """A path relative to the working directory when it lies below it; as given otherwise."""
    if not path:
        return "-"
    try:
        return os.path.relpath(path) if Path(path).resolve().is_relative_to(Path.cwd()) else path
    except ValueError:
        return path


def _relative(arg: str) -> str:
    """An argument with the working directory's prefix dropped, for reading (not for running)."""
    here = str(Path.cwd()) + "/"
    return arg.replace(here, "").replace(str(Path.cwd().resolve()) + "/", "")


def _pipeline_file(path: str) -> str:
    builtin = _resources.data_dir("pipelines")
    return f"pipelines/{Path(path).name}" if Path(path).parent == builtin else shown(path)


def plan_text(plan: PipelinePlan) -> str:
    ctx = plan.context
    when = dt.datetime.fromtimestamp(ctx["commit_time"], dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    state = "DIRTY" if ctx["dirty"] else "clean"
    where = ctx["branch"] or ("detached HEAD" if ctx["detached"] else "-")
    ci = ctx["ci"]
    ci_text = ci["provider"] + (f" pipeline {ci['pipeline_id']}" if ci["pipeline_id"] else "")
    lines = [
        f"pipeline  {plan.pipeline} ({_pipeline_file(plan.pipeline_file)})",
        f"commit    {ctx['commit']} ({where}, {state}, committed {when})",
        f"ci        {ci_text}",
        f"config    {shown(ctx['config'])} ({ctx['config_digest'][:19]}...)",
        f"out       {shown(ctx['out_dir'])}",
    ]
    if plan.image_repository:
        lines.append(f"image     {plan.image_repository}")
        lines += [f"{'tags' if i == 0 else '':<10}{tag}" for i, tag in enumerate(plan.image_tags)]
    lines.append("")
    for number, stage in enumerate(plan.stages, 1):
        lines += _stage_lines(number, stage)
    available = sum(s.available for s in plan.stages)
    lines.append(f"{len(plan.stages)} stages, {available} available in this version; nothing was run")
    return "\n".join(lines) + "\n"


def _stage_lines(number: int, stage: StagePlan) -> list[str]:
    flag = "" if stage.available else "  (not available yet)"
    lines = [f"{number}. {stage.stage} [{stage.backend}]{flag}", f"   {stage.summary}"]
    if stage.tools:
        lines.append(f"   tools:   {', '.join(stage.tools)}")
    for step in stage.steps:
        if step.argv:  # "maybe": a step that may not run; its description, under it, says when
            verb = "maybe:   " if step.optional else "run:     "
            lines.append(f"   {verb}{' '.join(_relative(arg) for arg in step.argv)}")
            if step.optional:
                lines.append(f"            {_relative(step.description)}")
        else:
            lines.append(f"   check:   {_relative(step.description)}")
    lines += [f"   reads:   {shown(path)}" for path in stage.inputs]
    lines += [f"   writes:  {shown(path)}" for path in stage.outputs]
    lines += [f"   image:   {ref}" for ref in stage.images]
    lines += [f"   note:    {note}" for note in stage.notes]
    lines.append("")
    return lines


_MARK = {
    "passed": "[green]✔[/]",
    "failed": "[red]✖[/]",
    "error": "[red]✖[/]",
    "not-available": "[yellow]–[/]",
    "not-run": "[dim]·[/]",
}


class RichReporter:
    """Progress on stderr, one line a stage; the summary table on stdout."""

    def __init__(self, stream: TextIO | None = None) -> None:
        from rich.console import Console

        self.err: Console = Console(stderr=True, highlight=False)
        self.out: Console = Console(file=stream, highlight=False)

    def stage_started(self, plan: StagePlan) -> None:
        self.err.print(f"[bold]▶ {plan.stage}[/] [dim]({plan.backend})[/]")

    def stage_finished(self, result: StageResult) -> None:
        mark = _MARK.get(result.status, "?")
        detail = f": {result.message}" if result.message else ""
        self.err.print(f"{mark} {result.stage} {result.status} in {result.duration_s:.2f}s{detail}")
        for warning in result.warnings:
            self.err.print(f"[yellow]warning:[/] {warning}")

    def summary(self, record: dict[str, object], record_path: Path) -> None:
        from rich.table import Table

        table = Table(title=f"tfgov-ci run: {record['status']}", title_justify="left")
        for column in ("stage", "backend", "status", "time", "message"):
            table.add_column(column)
        stages = record["stages"]
        assert isinstance(stages, list)
        for entry in stages:
            duration = entry.get("duration_s")
            table.add_row(
                entry["stage"],
                entry["backend"],
                f"{_MARK.get(entry['status'], '')} {entry['status']}",
                f"{duration:.2f}s" if duration is not None else "",
                entry.get("message", ""),
            )
        self.out.print(table)
        self.out.print(f"record: {shown(str(record_path))}")
