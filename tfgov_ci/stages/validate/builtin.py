"""The built-in validator: every check that needs meaning, not just structure.

Run by ``tfgov-ci validate`` and before every ``plan`` and ``run`` (bad input stops the command
before anything is written), and once more as the pipeline's first stage, whose result records
what was checked.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator, Mapping
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar

from tfgov_ci import compat
from tfgov_ci.config import Config
from tfgov_ci.context import Context
from tfgov_ci.errors import Problem
from tfgov_ci.oci import reference
from tfgov_ci.pipeline import (
    STAGES,
    Clock,
    StagePlan,
    StageResult,
    Step,
    backend_choices,
    passed,
    result_path,
)
from tfgov_ci.stages.validate.interface import Findings

CHECKS = (
    "configuration matches schemas/tfgov.schema.json (organisation defaults and locks applied)",
    "base image is pinned by digest and comes from an allowed registry",
    "python / tensorflow / cuda versions are a tested TensorFlow build configuration",
    "requirements file exists; lock and app paths stay inside the repository",
    "every stage backend is known",
    "policy options are known; every policy file is Rego v1 in a tfgov.rules package",
    "each backend's own preflight (buildah, docker: the Dockerfile can build on the pinned base)",
)


class BuiltinValidator:
    stage: ClassVar[str] = "validate"
    name: ClassVar[str] = "builtin"
    tools: ClassVar[tuple[str, ...]] = ()

    def __init__(self, options: Mapping[str, Any]) -> None:
        self.options = options

    def check(self, config: Config, repo_root: Path | None) -> Findings:
        return check(config, repo_root)

    def plan(self, ctx: Context) -> StagePlan:
        return StagePlan(
            stage=self.stage,
            backend=self.name,
            available=True,
            summary=STAGES[self.stage].summary,
            steps=tuple(Step(text) for text in CHECKS),
            inputs=(str(ctx.config.file), *((str(ctx.config.org_file),) if ctx.config.org_file else ())),
            outputs=(str(result_path(ctx.out_dir, self.stage)),),
        )

    def run(self, ctx: Context, plan: StagePlan) -> StageResult:
        clock = Clock.start()
        findings = check(ctx.config, ctx.git.root)
        findings.raise_for_problems()
        base = (
            reference.parse(ctx.config.base.image)
            if ctx.config.base.image != SCRATCH
            else reference.Reference(SCRATCH, SCRATCH, None, None)
        )
        return passed(
            ctx,
            self.stage,
            self.name,
            clock,
            f"{len(CHECKS)} checks passed",
            data={
                "checks": list(CHECKS),
                "image": {"name": ctx.config.image.name, "variant": ctx.config.image.variant},
                "base": {"registry": base.registry, "repository": base.repository, "digest": base.digest},
                "runtime": {
                    "python": ctx.config.runtime.python,
                    "tensorflow": ctx.config.runtime.tensorflow,
                    "cuda": ctx.config.runtime.cuda,
                },
                "compatibility_source": compat.SOURCE,
            },
            warnings=findings.warnings,
        )


def check(config: Config, repo_root: Path | None) -> Findings:
    """All semantic checks of a structurally valid configuration."""
    problems: list[Problem] = []
    warnings: list[str] = []
    problems += _check_base(config, warnings)
    problems += _check_runtime(config, warnings)
    problems += _check_backends(config)
    problems += _check_policy(config)
    problems += _check_preflight(config, warnings)
    if repo_root is not None:
        problems += _check_paths(config, repo_root)
    return Findings(tuple(problems), tuple(warnings))


SCRATCH = "scratch"  # the base-image pipeline's base: none (the schema allows it only there)


def _check_base(config: Config, warnings: list[str]) -> list[Problem]:
    at = ("base", "image")
    if config.base.image == SCRATCH and config.pipeline == "base-image":
        return []  # the central base itself, built from locked Debian packages
    try:
        ref = reference.parse(config.base.image)
    except reference.ReferenceError as exc:
        return [
            config.problem(
                at, f"not an image reference: {exc}", "REGISTRY/REPOSITORY[:TAG]@sha256:<64 hex digits>"
            )
        ]
    problems = []
    if not ref.pinned:
        problems.append(
            config.problem(
                at,
                f"{config.base.image!r} is not pinned by digest",
                "a tag can move; pin it as REF@sha256:<digest> "
                "(`skopeo inspect --format '{{.Digest}}' docker://REF` prints it)",
            )
        )
    allowed = config.base.allowed_registries
    if not allowed:
        warnings.append(
            "base.allowed_registries is empty: a base image from ANY registry is "
            "accepted (set it in the organisation file and lock it)"
        )
    elif ref.registry not in allowed:
        problems.append(
            config.problem(
                at,
                f"registry {ref.registry!r} is not in base.allowed_registries ({', '.join(allowed)})",
                "use the platform team's central base image",
            )
        )
    return problems


def _check_runtime(config: Config, warnings: list[str]) -> list[Problem]:
    runtime, variant = config.runtime, config.image.variant
    problems = []
    if variant == "gpu" and runtime.cuda is None:
        problems.append(
            config.problem(
                ("runtime", "cuda"),
                "the gpu variant needs runtime.cuda",
                "set the CUDA version of the base, e.g. cuda: '12.5'",
            )
        )
    if variant == "cpu" and runtime.cuda is not None:
        problems.append(
            config.problem(
                ("runtime", "cuda"),
                "runtime.cuda is set for the cpu variant",
                "remove it, or set image.variant: gpu",
            )
        )
    row = compat.release(runtime.tensorflow)
    if row is None:
        known = ", ".join(r.version for r in compat.RELEASES)
        problems.append(
            config.problem(
                ("runtime", "tensorflow"),
                f"TensorFlow {runtime.tensorflow} is not in the compatibility table",
                f"known releases: {known} (source: {compat.SOURCE})",
            )
        )
        return problems
    if not row.supports_python(runtime.python):
        others = compat.releases_for_python(runtime.python)
        suggestion = (
            f"TensorFlow {others[0]} supports Python {runtime.python}"
            if others
            else (f"no TensorFlow release in the table supports Python {runtime.python}")
        )
        problems.append(
            config.problem(
                ("runtime", "python"),
                f"TensorFlow {runtime.tensorflow} supports Python {row.python_range()}, not {runtime.python}",
                f"{suggestion} (source: {compat.SOURCE})",
            )
        )
    if variant == "gpu" and runtime.cuda is not None:
        if not compat.cuda_compatible(row, runtime.cuda):
            problems.append(
                config.problem(
                    ("runtime", "cuda"),
                    f"TensorFlow {row.version} was tested with CUDA {row.cuda} (cuDNN {row.cudnn}), "
                    f"not CUDA {runtime.cuda}",
                    f"use CUDA {row.cuda.split('.')[0]}.x at or above {row.cuda}",
                )
            )
        if row.assumed:
            warnings.append(
                f"CUDA {row.cuda} / cuDNN {row.cudnn} for TensorFlow {row.version} is "
                "assumed from the previous release: not yet in TensorFlow's published table"
            )
    return problems


def _check_backends(config: Config) -> list[Problem]:
    problems = []
    for stage, stage_config in config.stages.items():
        choices = backend_choices(stage)
        if stage_config.backend is None:
            continue
        names = stage_config.backend.split("+")
        at: tuple[str | int, ...] = ("stages", stage, "backend")
        if len(names) > 1 and STAGES[stage].combine is None:
            problems.append(
                config.problem(
                    at, f"stage {stage} runs one backend, not several", f"choose one of: {', '.join(choices)}"
                )
            )
            continue
        for name in names:
            if name not in choices:
                problems.append(
                    config.problem(
                        at, f"unknown {stage} backend {name!r}", f"choose one of: {', '.join(choices)}"
                    )
                )
    return problems


def _check_policy(config: Config) -> list[Problem]:
    """The policy options and rule files, as the policy stage will read them (bad Rego, v0 files)."""
    from dataclasses import replace

    from tfgov_ci.errors import ConfigError
    from tfgov_ci.stages.policy.interface import load_modules, settings

    options = config.stage("policy").options
    found: list[Problem] = []
    try:
        chosen = settings(options)
    except ConfigError as exc:  # the rule files are still worth checking
        found += exc.problems
        files = options.get("policies")
        listed = tuple(f for f in files if isinstance(f, str)) if isinstance(files, list) else ()
        chosen = replace(settings({}), policies=listed)
    try:
        load_modules(config.project_dir, chosen)
    except ConfigError as exc:
        found += exc.problems
    return [
        config.problem(tuple(p.key.split(".")), p.message, p.hint) if p.file == "tfgov.yaml" else p
        for p in found
    ]


def _check_preflight(config: Config, warnings: list[str]) -> list[Problem]:
    """Each configured backend's own check of its inputs, for the backends that have one (the
    Dockerfile backends: what cannot work on the pinned base). Validate asks the backend rather
    than knowing each builder: the stages stay independent, and a plug-in brings its own."""
    from tfgov_ci.errors import ConfigError
    from tfgov_ci.pipeline import Preflighted, backend_class, configured_backend, load_pipeline

    try:
        pipeline = load_pipeline(config.pipeline, config.project_dir)
    except ConfigError:
        return []  # reported on its own
    problems: list[Problem] = []
    for stage in pipeline.stages:
        cls = backend_class(stage, configured_backend(config, pipeline, stage))
        if cls is None or not callable(getattr(cls, "preflight", None)):
            continue  # an unknown backend is _check_backends' to report
        backend = cls(config.stage(stage).options)
        if isinstance(backend, Preflighted):
            found, warned = backend.preflight(config)
            problems += found
            warnings += warned
    return problems


def _locks(config: Config) -> bool:
    """Whether the configured pipeline has a lock stage (the base-image pipeline has none)."""
    from tfgov_ci.errors import ConfigError
    from tfgov_ci.pipeline import load_pipeline

    try:
        return "lock" in load_pipeline(config.pipeline, config.project_dir).stages
    except ConfigError:
        return True  # a bad pipeline is reported on its own; check as for the default


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def _check_paths(config: Config, repo_root: Path) -> list[Problem]:
    root = repo_root.resolve()
    project = config.project_dir
    problems = []
    deps = config.dependencies
    for key, value in (("requirements", deps.requirements), ("lock", deps.lock)):
        at: tuple[str | int, ...] = ("dependencies", key)
        if _escapes(value) or not _inside((project / value).resolve(), root):
            problems.append(
                config.problem(
                    at,
                    f"{value!r} is outside the repository",
                    "use a path relative to tfgov.yaml, inside the repository",
                )
            )
        elif key == "requirements" and _locks(config) and not (project / value).is_file():
            problems.append(
                config.problem(
                    at, f"requirements file {value!r} not found", f"create it next to tfgov.yaml ({project})"
                )
            )
    for index, pattern in enumerate(config.app.files):
        at = ("app", "files", index)
        if _escapes(pattern):
            problems.append(
                config.problem(
                    at,
                    f"{pattern!r} leaves the project folder",
                    "app files are relative to tfgov.yaml, without '..'",
                )
            )
            continue
        matches = sorted(glob.glob(pattern, root_dir=project, recursive=True, include_hidden=False))
        if not matches:
            problems.append(
                config.problem(
                    at, f"{pattern!r} matches no file", "check the spelling; paths are relative to tfgov.yaml"
                )
            )
        escaped = next(_links_out(project, matches, root), None)
        if escaped is not None:
            link, target = escaped
            problems.append(
                config.problem(
                    at,
                    f"{link!r} is a symlink to {target}, outside the repository",
                    "copy the file into the repository instead of linking to it",
                )
            )
    return problems


def _links_out(project: Path, matches: list[str], root: Path) -> Iterator[tuple[str, Path]]:
    """Each matched path, or symlink below a matched folder, that resolves outside ``root``."""
    for match in matches:
        path = project / match
        candidates = [path]
        if path.is_dir() and not path.is_symlink():
            for folder, dirs, files in os.walk(path):
                candidates += [Path(folder, name) for name in (*dirs, *files)]
        for candidate in candidates:
            resolved = candidate.resolve()
            if not _inside(resolved, root):
                yield os.path.relpath(candidate, project), resolved


def _escapes(path: str) -> bool:
    pure = PurePosixPath(path)
    return pure.is_absolute() or Path(path).is_absolute() or ".." in pure.parts
