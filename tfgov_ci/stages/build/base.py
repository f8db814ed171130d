"""The central base image as a governed pipeline's build (``pipeline: base-image``).

The platform team's base repository holds ``tfgov-base.yaml`` and its committed lock; this
backend builds it exactly as ``tfgov-ci base build`` does (same lock, same digest), tags it with
the commit tags, and hands the usual build result to the stages after it: sbom, scan, policy,
publish, so the base gets the same evidence and gate as every model image.

Options (``stages.build.options``): ``definition`` (default ``tfgov-base.yaml`` beside
tfgov.yaml), ``compresslevel``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from tfgov_ci._files import cache_dir
from tfgov_ci.context import Context
from tfgov_ci.errors import ConfigError
from tfgov_ci.oci.layer import DEFAULT_COMPRESSLEVEL
from tfgov_ci.pipeline import STAGES, Clock, StagePlan, StageResult, Step, result_path
from tfgov_ci.stages.build import base_factory
from tfgov_ci.stages.build.interface import built, describe, handoff_steps, layout_path, replace_layout
from tfgov_ci.wheels import lock_digest


class BaseImageBuilder:
    stage: ClassVar[str] = "build"
    name: ClassVar[str] = "base"
    tools: ClassVar[tuple[str, ...]] = ("apt-get", "dpkg-deb", "pip", "skopeo")

    def __init__(self, options: Mapping[str, Any]) -> None:
        self.options = options

    def _definition_path(self, ctx: Context) -> Path:
        return ctx.config.project_dir / str(self.options.get("definition", "tfgov-base.yaml"))

    def plan(self, ctx: Context) -> StagePlan:
        definition = self._definition_path(ctx)
        commands: list[Step] = []
        if definition.is_file():
            loaded = base_factory.load_definition(definition)
            if loaded.lock.is_file():  # without it the stage refuses to run: nothing to show
                commands = [
                    Step(what, tuple(argv), tool, optional)
                    for what, argv, tool, optional in base_factory.planned_commands(loaded, cache_dir())
                ]
        return StagePlan(
            stage=self.stage,
            backend=self.name,
            available=True,
            summary=STAGES[self.stage].summary,
            steps=(
                Step(
                    f"the Debian packages and wheels that {definition.name}'s lock names (cached, or fetched)"
                ),
                *commands,
                Step(
                    "a distroless layer of the packages, a layer of the wheels; tagged with the commit tags"
                ),
                *handoff_steps(ctx),
            ),
            inputs=(str(definition), str(result_path(ctx.out_dir, "validate"))),
            outputs=(str(layout_path(ctx)), str(result_path(ctx.out_dir, self.stage))),
        )

    def run(self, ctx: Context, plan: StagePlan) -> StageResult:
        clock = Clock.start()
        path = self._definition_path(ctx)
        definition = base_factory.load_definition(path)
        problems = []
        if not definition.lock.is_file():
            problems.append(
                ctx.config.problem(
                    ("stages", "build", "options"),
                    f"{definition.lock.name} is missing: a pipeline builds the base from its committed lock",
                    f"run `tfgov-ci base build --definition {path.name} --update-lock` and commit the lock",
                )
            )
        if definition.python != ctx.config.runtime.python:
            problems.append(
                ctx.config.problem(
                    ("runtime", "python"),
                    f"{path.name} builds Python {definition.python}; tfgov.yaml: {ctx.config.runtime.python}",
                    "make them agree",
                )
            )
        if problems:
            raise ConfigError(problems)
        compresslevel = int(self.options.get("compresslevel", DEFAULT_COMPRESSLEVEL))
        with replace_layout(ctx) as staging:
            base_factory.build(definition, staging, cache_dir(), compresslevel=compresslevel)
            nothing_under = {"ref": "scratch", "digest": None, "layers": 0}
            data = describe(ctx, staging, None, nothing_under, lock_digest(definition.lock))
        return built(ctx, self.stage, self.name, clock, data)
