"""What a lock backend promises: a hashed requirements lock for the image's Python and platform,
with the base's own packages as constraints, written whole or not at all."""

from __future__ import annotations

import re
import shutil
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from tfgov_ci import __version__, tools
from tfgov_ci._files import atomic_write_json, atomic_write_text
from tfgov_ci.context import Context
from tfgov_ci.errors import GateFailed, Problem, TfgovError, UsageError
from tfgov_ci.oci import reference
from tfgov_ci.oci.registry import Registry, RegistryError
from tfgov_ci.pipeline import STAGES, Clock, StagePlan, StageResult, Step, passed, result_path
from tfgov_ci.stages.lock import reuse
from tfgov_ci.wheels import Locked, lock_digest, normalise_name, parse_lock

COMPILE_COMMAND = "tfgov-ci run lock"
TREE_SUFFIX = ".tree.json"  # requirements.lock -> requirements.lock.tree.json
LOCK_OUTPUT = "requirements.lock"  # in the compile's temporary folder
CONSTRAINTS = "base-constraints.txt"  # the base's packages, in the same folder

if TYPE_CHECKING:
    from tfgov_ci.config import Config
    from tfgov_ci.pipeline import PipelineDef


@dataclass(frozen=True)
class Resolution:
    """A lock as it would be written now, and what it was resolved for."""

    text: str
    platform: str
    constraints: tuple[str, ...]
    reused: str | None = None  # when the reused resolution was made (None: resolved now)
    warnings: tuple[str, ...] = ()


def compare(old: list[Locked], new: list[Locked]) -> list[str]:
    """What changed between two locks, one line a package: '+ name==v', '- name==v', '~ name a -> b'."""
    before = {r.name: r.version for r in old}
    after = {r.name: r.version for r in new}
    lines = [f"+ {n}=={after[n]}" for n in sorted(after.keys() - before.keys())]
    lines += [f"- {n}=={before[n]}" for n in sorted(before.keys() - after.keys())]
    lines += [
        f"~ {n} {before[n]} -> {after[n]}"
        for n in sorted(before.keys() & after.keys())
        if before[n] != after[n]
    ]
    return lines


class LockStageError(TfgovError):
    """Requirements that cannot be locked (unsatisfiable, unhashable): exit 2."""

    exit_code = 2


def _locker(ctx: Context, pipeline_def: PipelineDef) -> Any:
    from tfgov_ci import pipeline

    backend = pipeline.instantiate(ctx, "lock", pipeline.chosen_backend(ctx, pipeline_def, "lock"))
    if backend is None or not hasattr(backend, "resolve"):
        raise UsageError("this lock backend is not available yet", "use stages.lock.backend: uv")
    return backend


def write_lock(ctx: Context, pipeline_def: PipelineDef) -> str:
    """`tfgov-ci lock`: the lock stage, run on its own; its result is written as usual."""
    from tfgov_ci import pipeline

    backend = _locker(ctx, pipeline_def)
    result = backend.lock(ctx, may_reuse=False)  # asked for a lock: resolved, never kept
    pipeline.write_result(ctx, result)
    return f"wrote {ctx.config.dependencies.lock}: {result.message}; commit it"


def check_lock(ctx: Context, pipeline_def: PipelineDef) -> str:
    """`tfgov-ci lock --check`: :class:`GateFailed` when a lock now would differ; writes nothing."""
    lock = ctx.config.project_dir / ctx.config.dependencies.lock
    resolution = _locker(ctx, pipeline_def).resolve(ctx)
    if lock.is_file() and lock.read_text() == resolution.text:
        return f"ok: {lock.name} is current (requirements, base and platform unchanged)"
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp) / lock.name
        fresh.write_text(resolution.text)
        changes = compare(parse_lock(lock) if lock.is_file() else [], parse_lock(fresh))
    detail = "; ".join(changes) if changes else "same packages, other hashes or base"
    raise GateFailed(f"{lock.name} is stale: {detail}", "run `tfgov-ci lock` and commit the result")


def base_labels(ctx: Context) -> dict[str, str]:
    """The base image's labels, from its config only (skopeo inspect --config)."""
    ref = reference.parse(ctx.config.base.image)
    try:
        config = Registry.of(ref, ctx.config.registries).config(ref)
    except RegistryError as exc:  # the lock's input is wrong, not a tool: exit 2, as for a bad requirement
        message = exc.message if "not found" not in exc.message else f"base image {ref} not found"
        raise LockStageError(
            message, "check the pinned digest" if "not found" in exc.message else exc.hint
        ) from None
    found: dict[str, str] = config.get("config", {}).get("Labels") or {}
    return found


class Compiler(ABC):
    """A lock backend that runs a compile tool (uv, pip-compile) on requirements.txt, with the
    base's packages as constraints; the lock's header, tree and result are the same for all."""

    stage: ClassVar[str] = "lock"
    name: ClassVar[str]
    tool: ClassVar[str]  # the compile tool, as the plan names it
    tools: ClassVar[tuple[str, ...]]  # skopeo (the base's labels) and the compile tool

    def __init__(self, options: Mapping[str, Any]) -> None:
        self.options = options

    @abstractmethod
    def _argv(self, ctx: Context, platform: str, output: str, constraints: str | None) -> list[str]:
        """The compile command (argv[0] is the tool's name, as the plan shows it)."""

    @abstractmethod
    def _executable(self) -> list[str]:
        """What actually runs in place of argv[0]."""

    def _settings(self, ctx: Context) -> Mapping[str, str | bytes] | None:
        """Whatever else decides the compile's answer (its configuration files and variables),
        for the reuse key (:mod:`~tfgov_ci.stages.lock.reuse`); None: this backend cannot tell,
        so it resolves every run."""
        return None

    def _check_target(self, ctx: Context, platform_tag: str) -> None:  # noqa: B027 (optional hook)
        """Refuse to lock when this backend cannot resolve for the base's Python and platform;
        uv resolves for any, so by default nothing to refuse."""

    def plan(self, ctx: Context) -> StagePlan:
        cfg = ctx.config
        lock = cfg.project_dir / cfg.dependencies.lock
        ref = reference.parse(cfg.base.image)
        registry = Registry.of(ref, cfg.registries)
        with registry.access.skopeo_args("", planned=True) as args:
            inspect = registry.inspect_argv(ref, args, config=True)
        work = "<temporary dir>"
        compile_argv = self._argv(ctx, "<base platform>", f"{work}/{LOCK_OUTPUT}", f"{work}/{CONSTRAINTS}")
        hours = self._window()
        kept = (
            " (skipped, the lock kept as it is, when the same inputs were resolved to it within "
            f"{hours:g} h: {reuse.OPTION})"
            if self._reuse_key(ctx, hours, "<base platform>", "") is not None
            else ""
        )
        return StagePlan(
            stage=self.stage,
            backend=self.name,
            available=True,
            summary=STAGES[self.stage].summary,
            tools=self.tools,
            steps=(
                Step(
                    "read the base's Python packages and platform from its labels", tuple(inspect), "skopeo"
                ),
                Step(
                    f"resolve with hashes, the base's packages as constraints; then {lock.name}" + kept,
                    tuple(compile_argv),
                    self.tool,
                    optional=bool(kept),
                ),
            ),
            inputs=(str(cfg.project_dir / cfg.dependencies.requirements),),
            outputs=(str(lock), str(result_path(ctx.out_dir, self.stage))),
        )

    def preflight(self, config: Config) -> tuple[tuple[Problem, ...], tuple[str, ...]]:
        """``reuse_hours`` checked by ``validate``, with its line."""
        problem = reuse.window_problem(self.options)
        if problem is None:
            return (), ()
        return (config.problem(("stages", "lock", "options", "reuse_hours"), problem, reuse.WINDOW_HINT),), ()

    def _window(self) -> float:
        problem = reuse.window_problem(self.options)
        if problem:
            raise LockStageError(f"tfgov.yaml: {reuse.OPTION}: {problem}", reuse.WINDOW_HINT)
        return reuse.window(self.options)

    def _reuse_key(self, ctx: Context, hours: float, platform: str, constraints: str) -> str | None:
        """The key of a resolution of these inputs (:mod:`~tfgov_ci.stages.lock.reuse`); None when
        it is not kept: ``reuse_hours`` 0, a backend that cannot tell what else decides its answer,
        or requirements that name other files, URLs or variables."""
        cfg = ctx.config
        requirements = cfg.project_dir / cfg.dependencies.requirements
        if not hours or not requirements.is_file():
            return None
        text = requirements.read_bytes()
        settings = self._settings(ctx)
        if settings is None or not reuse.self_contained(text.decode(errors="replace")):
            return None
        return reuse.key(
            {
                **{f"setting {name}": value for name, value in settings.items()},
                "tfgov-ci": __version__,
                "backend": self.name,
                "argv": "\0".join(self._argv(ctx, platform, LOCK_OUTPUT, CONSTRAINTS)),
                "tool": _identity(self._executable()),
                "requirements": text,
                "constraints": constraints,
                "base": cfg.base.image,
            }
        )

    def resolve(self, ctx: Context, *, may_reuse: bool = False) -> Resolution:
        """Resolve the requirements for the base (nothing written): the lock text and its facts.
        ``may_reuse``: keep the lock on disk when a resolution of the very same inputs made it within
        ``reuse_hours`` (the stage; `tfgov-ci lock` and ``lock --check`` always resolve)."""
        cfg = ctx.config
        ref = reference.parse(cfg.base.image)
        labels = base_labels(ctx)
        platform_tag = labels.get("io.tfgov.python.platform", "manylinux_2_36_x86_64")
        major, minor = platform_tag.split("_")[1:3]
        platform = f"x86_64-manylinux_{major}_{minor}"
        self._check_target(ctx, platform_tag)
        provided = [item for item in labels.get("io.tfgov.python.packages", "").split(",") if "==" in item]
        requirements = cfg.project_dir / cfg.dependencies.requirements
        check_requirements(
            requirements, provided, allow_unhashable=bool(self.options.get("allow_unhashable"))
        )
        lock = cfg.project_dir / cfg.dependencies.lock
        # Always a constraints file, empty for a base without Python packages: one command shape.
        constraints_text = "".join(f"{item}\n" for item in provided)
        hours = self._window()
        key = self._reuse_key(ctx, hours, platform, constraints_text)
        made = reuse.found(key, lock, hours) if key and may_reuse else None
        if made is not None:
            return Resolution(lock.read_text(), platform, tuple(provided), reused=made)
        with tempfile.TemporaryDirectory(prefix="tfgov-lock.") as tmp:
            constraints = str(Path(tmp) / CONSTRAINTS)
            Path(constraints).write_text(constraints_text)
            output = Path(tmp) / LOCK_OUTPUT
            if lock.is_file():  # the tools keep the versions of an existing output file that still fit
                shutil.copyfile(lock, output)
            argv = self._argv(ctx, platform, str(output), constraints)
            done = tools.run(
                argv, executable=self._executable(), cwd=str(cfg.project_dir), check=False, timeout=1800
            )
            if done.returncode != 0:
                explanation = [line for line in done.stderr.strip().splitlines() if line.strip()][-8:]
                raise LockStageError(
                    "the requirements cannot be locked: " + " ".join(line.strip() for line in explanation),
                    "the base's packages are constraints: keep their versions in requirements.txt",
                )
            # The constraints file lives in a temporary folder: name it for what it is, so that the
            # same inputs give the same lock in any folder, on any machine.
            body = output.read_text().replace(f"-c {constraints}", "-c base image packages")
        header = (
            f"# Written by `{COMPILE_COMMAND}` ({self.name}) for Python {cfg.runtime.python} on {platform},\n"
            f"# base {ref.digest}: its packages are constraints. Do not edit by hand.\n"
        )
        problem = reuse.keep(key, header + body, hours) if key else None
        return Resolution(header + body, platform, tuple(provided), warnings=(problem,) if problem else ())

    def run(self, ctx: Context, plan: StagePlan) -> StageResult:
        return self.lock(ctx, may_reuse=True)

    def lock(self, ctx: Context, *, may_reuse: bool) -> StageResult:
        """Resolve (or keep, ``may_reuse``), then write the lock and its tree: the stage's result."""
        clock = Clock.start()
        cfg = ctx.config
        resolution = self.resolve(ctx, may_reuse=may_reuse)
        lock = cfg.project_dir / cfg.dependencies.lock
        tree_path = lock.with_name(lock.name + TREE_SUFFIX)
        tree = dependency_tree(resolution.text)
        if resolution.reused is None:  # a reused resolution is the lock on disk, byte for byte
            atomic_write_text(lock, resolution.text)
        atomic_write_json(tree_path, tree)
        locked = parse_lock(lock)
        how = (
            f"; kept: the same inputs resolved at {resolution.reused}, within reuse_hours"
            if resolution.reused
            else ""
        )
        return passed(
            ctx,
            self.stage,
            self.name,
            clock,
            f"{len(locked)} packages locked for Python {cfg.runtime.python} on {resolution.platform}{how}",
            outputs={"lock": str(lock), "tree": str(tree_path)},
            data={
                "lock_digest": lock_digest(lock),
                "packages": len(locked),
                "platform": resolution.platform,
                "python": cfg.runtime.python,
                "constraints": list(resolution.constraints),
                "roots": tree["roots"],
                "reused_from": resolution.reused,
            },
            warnings=resolution.warnings,
        )


def check_requirements(path: Path, provided: list[str], *, allow_unhashable: bool) -> None:
    """Refuse what would replace a base package, and what cannot be hashed, naming file and line."""
    from packaging.requirements import InvalidRequirement, Requirement

    base = {normalise_name(item.split("==")[0]): item.split("==")[1] for item in provided}
    problems: list[str] = []
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith(("-e", "--editable", ".", "/", "file:")) or "://" in line.split("@", 1)[-1][:12]:
            if not allow_unhashable:
                problems.append(
                    f"{path.name}:{number}: '{line}' is a URL or local path: it cannot be locked by hash"
                )
            continue
        if line.startswith("-"):
            continue
        try:
            req = Requirement(line)
        except InvalidRequirement as exc:
            problems.append(f"{path.name}:{number}: {exc}")
            continue
        if req.url and not allow_unhashable:
            problems.append(f"{path.name}:{number}: '{line}' is a URL: it cannot be locked by hash")
            continue
        pinned = base.get(normalise_name(req.name))
        if pinned is not None and req.specifier and not req.specifier.contains(pinned, prereleases=True):
            problems.append(
                f"{path.name}:{number}: the base pins {req.name} {pinned}; "
                f"{path.name} asks for {req.specifier}"
            )
    if problems:
        raise LockStageError(
            "; ".join(problems),
            "keep the base's versions (upgrading them makes a snowflake image), and use index packages "
            "(or set stages.lock.options.allow_unhashable: true, knowing such packages are not hash-checked)",
        )


def dependency_tree(lock_text: str) -> dict[str, Any]:
    """Who pulled in what, from the lock's ``# via`` annotations: {packages, roots}."""
    packages: dict[str, dict[str, Any]] = {}
    current: str | None = None
    in_via = False
    for raw in lock_text.splitlines():
        line = raw.strip()
        match = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", line)
        if match and not raw.startswith(" "):
            current = normalise_name(match.group(1))
            packages[current] = {"version": match.group(2), "required_by": []}
            in_via = False
            continue
        if current is None or not line.startswith("#"):
            continue
        comment = line.lstrip("#").strip()
        if comment.startswith("via"):
            in_via = True
            comment = comment[3:].strip()
        if in_via and comment.startswith("-c "):
            continue  # a constraint (the base's packages), not a dependent
        if in_via and comment:
            who = "requirements" if comment.startswith("-r ") else normalise_name(comment.split()[0])
            packages[current]["required_by"].append(who)
    roots = sorted(name for name, info in packages.items() if "requirements" in info["required_by"])
    for info in packages.values():
        info["required_by"] = sorted(set(info["required_by"]) - {"requirements"})
    return {"schema_version": 1, "roots": roots, "packages": dict(sorted(packages.items()))}


def _identity(executable: list[str]) -> str:
    """The compile tool's binary as the key sees it: its path, size and modification time (an
    upgrade changes them), without starting it."""
    parts = []
    for arg in executable:
        path = Path(arg)
        stat = path.stat() if path.is_absolute() and path.is_file() else None
        parts.append(f"{arg}:{stat.st_size}:{stat.st_mtime_ns}" if stat else arg)
    return "\0".join(parts)
