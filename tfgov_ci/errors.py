"""Every error tfgov-ci raises on purpose, each with a hint and an exit code.

Exit codes (DESIGN.md): 0 passed; 1 a gate failed; 2 usage or configuration error; 3 a tool or
internal error; 130 interrupted. The one top-level handler in :mod:`tfgov_ci._cli` maps these
classes to codes; nothing else calls ``sys.exit``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, Self

EXIT_OK = 0
EXIT_GATE = 1
EXIT_USAGE = 2
EXIT_TOOL = 3
EXIT_INTERRUPTED = 130


class TfgovError(Exception):
    """Base of every deliberate failure: a message, a hint on what to do, an exit code."""

    exit_code = EXIT_TOOL

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def lines(self) -> list[str]:
        """The lines shown to the user, without a traceback."""
        line = f"error: {self.message}"
        if self.hint:
            line += f" (hint: {self.hint})"
        return [line]


class UsageError(TfgovError):
    """The command line asked for something that cannot be done as asked."""

    exit_code = EXIT_USAGE


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an input file, located as precisely as we can."""

    file: str
    key: str  # dotted key path ("image.name", "app.files[2]"); "" for the whole file
    message: str
    hint: str | None = None
    line: int | None = None  # 1-based

    def render(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        text = f"{where}: {self.key}: {self.message}" if self.key else f"{where}: {self.message}"
        return f"{text} (hint: {self.hint})" if self.hint else text


class ConfigError(UsageError):
    """One or more problems in tfgov.yaml, the organisation file or a pipeline file."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(problems)
        first = self.problems[0].render() if self.problems else "invalid configuration"
        super().__init__(first)

    def lines(self) -> list[str]:
        return [f"error: {p.render()}" for p in self.problems]


class ContextError(UsageError):
    """The git checkout or CI environment cannot give what was asked (not a repo, dirty tree)."""


class StageInputError(UsageError):
    """A stage was asked to run without the earlier results it reads from the out directory."""


class GateFailed(TfgovError):
    """A gate (policy, scan, verify) said no. Not a malfunction: the answer is 'no'."""

    exit_code = EXIT_GATE


class NotAvailableError(TfgovError):
    """A stage or backend that this version of tfgov-ci does not implement yet."""

    exit_code = EXIT_TOOL


class Ran(Protocol):
    """What a tool run left behind (tools.Completed): argv already redacted."""

    @property
    def argv(self) -> tuple[str, ...]: ...

    @property
    def returncode(self) -> int: ...

    @property
    def stderr(self) -> str: ...


class ToolError(TfgovError):
    """An external tool failed or is missing. argv is already redacted."""

    exit_code = EXIT_TOOL

    def __init__(
        self,
        message: str,
        hint: str | None = None,
        *,
        argv: Sequence[str] = (),
        returncode: int | None = None,
        stderr_tail: str = "",
    ) -> None:
        super().__init__(message, hint)
        self.argv = tuple(argv)
        self.returncode = returncode
        self.stderr_tail = stderr_tail

    @classmethod
    def of_run(cls, done: Ran, message: str, hint: str | None = None) -> Self:
        """A failed run as this error: its command, exit code and the end of its stderr."""
        return cls(message, hint, argv=done.argv, returncode=done.returncode, stderr_tail=done.stderr[-1500:])

    def lines(self) -> list[str]:
        out = super().lines()
        if self.argv:
            out.append(f"  command: {' '.join(self.argv)}")
        if self.returncode is not None:
            out.append(f"  exit code: {self.returncode}")
        out.extend(f"  | {line}" for line in self.stderr_tail.splitlines())
        return out
