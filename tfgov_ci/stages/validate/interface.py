"""What a validate backend promises, and the findings it returns."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Protocol

from tfgov_ci.config import Config
from tfgov_ci.errors import ConfigError, Problem


@dataclass(frozen=True)
class Findings:
    """Problems stop the pipeline (exit 2); warnings are printed and recorded every time."""

    problems: tuple[Problem, ...] = ()
    warnings: tuple[str, ...] = ()

    def raise_for_problems(self) -> None:
        if self.problems:
            raise ConfigError(self.problems)


class Validator(Protocol):
    stage: ClassVar[str]
    name: ClassVar[str]

    def check(self, config: Config, repo_root: Path | None) -> Findings: ...
