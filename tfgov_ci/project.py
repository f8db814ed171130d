"""Open a model project: config, validation, commit context and pipeline, in one call.

``plan``, ``run`` and ``validate`` all start here, so bad input stops every command the same way,
before anything is written.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from tfgov_ci import config as config_mod
from tfgov_ci.config import Config
from tfgov_ci.context import TFGOV_DIR, Context, discover, read_git
from tfgov_ci.errors import ConfigError, ContextError
from tfgov_ci.pipeline import PipelineDef, load_pipeline
from tfgov_ci.stages.validate.builtin import check
from tfgov_ci.stages.validate.interface import Findings

DEFAULT_OUT = f"{TFGOV_DIR}/out"


@dataclass(frozen=True)
class Project:
    config: Config
    context: Context
    pipeline: PipelineDef
    warnings: tuple[str, ...]


def validate(config_path: Path, org_path: Path | None = None) -> tuple[Config, Findings]:
    """Load and check a configuration; problems raise :class:`ConfigError` (all of them)."""
    config = config_mod.load(config_path, org_path)
    problems = []
    repo_root = None
    try:
        repo_root = read_git(config.project_dir).root
    except ContextError as exc:
        problems.append(config.problem((), exc.message, exc.hint))
    findings = check(config, repo_root)
    try:
        load_pipeline(config.pipeline, config.project_dir)
    except ConfigError as exc:
        problems.extend(exc.problems)
    findings = Findings((*problems, *findings.problems), findings.warnings)
    findings.raise_for_problems()
    return config, findings


def open_project(
    config_path: Path,
    *,
    org_path: Path | None = None,
    out_dir: Path | None = None,
    allow_dirty: bool = False,
    force_retag: bool = False,
    env: Mapping[str, str] | None = None,
) -> Project:
    config, findings = validate(config_path, org_path)
    out = out_dir if out_dir is not None else config.project_dir / DEFAULT_OUT
    context = discover(config, out.resolve(), allow_dirty=allow_dirty, force_retag=force_retag, env=env)
    pipeline = load_pipeline(config.pipeline, config.project_dir)
    return Project(config, context, pipeline, findings.warnings)
