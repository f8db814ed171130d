"""What a lock backend promises: a hashed requirements lock for the image's Python and platform,
with the base's own packages as constraints, written whole or not at all."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from tfgov_ci.context import Context
from tfgov_ci.errors import GateFailed, TfgovError, UsageError
from tfgov_ci.wheels import Locked, parse_lock

if TYPE_CHECKING:
    from tfgov_ci.pipeline import PipelineDef


@dataclass(frozen=True)
class Resolution:
    """A lock as it would be written now, and what it was resolved for."""

    text: str
    platform: str
    constraints: tuple[str, ...]


class Locker(Protocol):
    def resolve(self, ctx: Context) -> Resolution: ...


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
    result = backend.run(ctx, backend.plan(ctx))
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
