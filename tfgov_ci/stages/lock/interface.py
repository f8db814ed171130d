"""What a lock backend promises: a hashed requirements lock for the image's Python and platform,
with the base's own packages as constraints, written whole or not at all."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from tfgov_ci.context import Context
from tfgov_ci.errors import TfgovError
from tfgov_ci.wheels import Locked


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
