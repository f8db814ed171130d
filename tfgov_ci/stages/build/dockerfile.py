"""A Dockerfile as the builders read it: instructions with their lines, grouped into stages.

The text is parsed by the official parser (BuildKit's ``parser`` package, the one Docker and
buildah use, through the ``dockerfile`` package's binding), so line continuations, comments,
parser directives (``# escape=``), heredocs and the exec form's JSON arrays mean here what they
mean to the builders. On top of it this module checks what the parser leaves to later steps
(unknown instructions, missing arguments, no ``FROM``) and groups the instructions into stages.

Every problem is a :class:`~tfgov_ci.errors.Problem` with the Dockerfile's path and line, raised
as a :class:`~tfgov_ci.errors.ConfigError` (exit 2). Used by the build backends' preflight (run by
``validate``), by their explanation of a failed step, and by ``tfgov-ci init --from-dockerfile``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import dockerfile as _official  # type: ignore[import-not-found]  # a Go extension: nothing for mypy to read

from tfgov_ci._files import display_path
from tfgov_ci.errors import ConfigError, Problem

# What Docker's and buildah's Dockerfile frontends accept (BuildKit's instructions package).
INSTRUCTIONS = frozenset(
    {
        "ADD",
        "ARG",
        "CMD",
        "COPY",
        "ENTRYPOINT",
        "ENV",
        "EXPOSE",
        "FROM",
        "HEALTHCHECK",
        "LABEL",
        "MAINTAINER",
        "ONBUILD",
        "RUN",
        "SHELL",
        "STOPSIGNAL",
        "USER",
        "VOLUME",
        "WORKDIR",
    }
)
# The fewest arguments each instruction takes (the builders refuse fewer, at build time).
_MIN_ARGS = {"ADD": 2, "COPY": 2, "FROM": 1, "RUN": 1, "WORKDIR": 1, "USER": 1, "EXPOSE": 1, "ENV": 1}
_VARIABLE = re.compile(r"\$(?:\{(\w+)(?::?[-+]([^}]*))?\}|(\w+))")


@dataclass(frozen=True)
class Instruction:
    """One instruction. ``args``: the exec form's argv, else the parser's words (for a shell-form
    ``RUN``, ``CMD`` or ``ENTRYPOINT``: one string, the command line with continuations joined)."""

    keyword: str  # upper case: RUN, COPY, ...
    args: tuple[str, ...]
    exec_form: bool
    flags: tuple[str, ...]  # --from=build, --chown=1:1, ...
    line: int  # 1-based, where it starts
    end_line: int
    original: str
    heredocs: tuple[str, ...] = ()  # the heredocs' names (<<EOF: "EOF")
    onbuild: str | None = None  # ONBUILD's instruction (args are then that instruction's)

    @property
    def command(self) -> str:
        """What it runs, as one line (exec form: the argv joined by spaces)."""
        return " ".join(self.args)

    def flag(self, name: str) -> str | None:
        """The value of ``--name=value``, or None."""
        for item in self.flags:
            key, _, value = item.partition("=")
            if key == f"--{name}":
                return value
        return None


@dataclass(frozen=True)
class Stage:
    """A ``FROM`` and what follows it, up to the next ``FROM``."""

    index: int
    image: str  # as written (ARG references unexpanded)
    name: str | None  # FROM ... AS name (lower case, as the builders compare it)
    start: Instruction  # the FROM
    instructions: tuple[Instruction, ...]
    parent: int | None  # the earlier stage it builds on (FROM <stage name or index>), else None

    @property
    def line(self) -> int:
        return self.start.line


@dataclass(frozen=True)
class Dockerfile:
    path: Path
    shown: str  # the path as messages show it
    args: Mapping[str, str | None]  # ARGs declared before the first FROM, with their defaults
    stages: tuple[Stage, ...] = field(default=())

    @property
    def final(self) -> Stage:
        """The stage the image is (the last one)."""
        return self.stages[-1]

    def problem(self, line: int | None, message: str, hint: str | None = None) -> Problem:
        return Problem(self.shown, "", message, hint, line)

    def expand(self, text: str) -> tuple[str, tuple[str, ...]]:
        """``text`` with ``$VAR`` / ``${VAR}`` / ``${VAR:-default}`` taken from the ARGs before the
        first FROM (what a FROM may use), and the names that had no value."""
        unknown: list[str] = []

        def value(match: re.Match[str]) -> str:
            name = match.group(1) or match.group(3)
            found = self.args.get(name)
            if found is not None:
                return found
            if match.group(2) is not None and match.group(0).startswith("${" + name + ":-"):
                return match.group(2)
            unknown.append(name)
            return match.group(0)

        return _VARIABLE.sub(value, text), tuple(unknown)


def read(path: Path) -> Dockerfile:
    """Read and parse the Dockerfile at ``path``; every problem raises :class:`ConfigError`."""
    shown = display_path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([Problem(shown, "", "file not found")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([Problem(shown, "", f"cannot read: {exc}")]) from None
    return parse(text, path, shown)


def parse(text: str, path: Path, shown: str | None = None) -> Dockerfile:
    """Parse Dockerfile ``text`` (read from ``path``)."""
    shown = shown or display_path(path)
    try:
        commands = _official.parse_string(text)
    except _official.GoParseError as exc:
        if "no instructions" in str(exc):
            raise ConfigError(
                [Problem(shown, "", "no instructions: the file is empty or only comments", "start with FROM")]
            ) from None
        raise ConfigError(
            [
                Problem(
                    shown,
                    "",
                    f"Dockerfile syntax error: {exc}",
                    "see https://docs.docker.com/reference/dockerfile/",
                    _error_line(text, str(exc)),
                )
            ]
        ) from None
    instructions = [_instruction(c) for c in commands]
    problems = [p for p in (_check(i, shown) for i in instructions) if p is not None]
    if problems:
        raise ConfigError(problems)
    return _stages(instructions, path, shown)


def _instruction(command: object) -> Instruction:
    c = command  # the binding's namedtuple: cmd, sub_cmd, json, original, start_line, end_line, ...
    return Instruction(
        keyword=str(c.cmd).upper(),  # type: ignore[attr-defined]
        args=tuple(str(v) for v in c.value),  # type: ignore[attr-defined]
        exec_form=bool(c.json),  # type: ignore[attr-defined]
        flags=tuple(str(f) for f in c.flags),  # type: ignore[attr-defined]
        line=int(c.start_line),  # type: ignore[attr-defined]
        end_line=int(c.end_line),  # type: ignore[attr-defined]
        original=str(c.original),  # type: ignore[attr-defined]
        heredocs=tuple(str(h.name) for h in c.heredocs),  # type: ignore[attr-defined]
        onbuild=str(c.sub_cmd).upper() if c.sub_cmd else None,  # type: ignore[attr-defined]
    )


def _check(instruction: Instruction, shown: str) -> Problem | None:
    keyword = instruction.keyword
    if keyword not in INSTRUCTIONS:
        hint = "check the spelling; the instructions are " + ", ".join(sorted(INSTRUCTIONS))
        if not keyword[:1].isalpha():
            hint = "a JSON array (exec form) continued on the next line needs a '\\' at the end of the line"
        return Problem(shown, "", f"unknown instruction {keyword!r}", hint, instruction.line)
    # "RUN " with nothing else: the parser keeps one empty word
    words = [a for a in instruction.args if a.strip()]
    least = _MIN_ARGS.get(instruction.onbuild or keyword, 0)
    if len(words) < least:
        needs = "an argument" if least == 1 else f"at least {least} arguments"
        return Problem(shown, "", f"{keyword} needs {needs}", None, instruction.line)
    return None


def _stages(instructions: list[Instruction], path: Path, shown: str) -> Dockerfile:
    args: dict[str, str | None] = {}
    stages: list[Stage] = []
    names: dict[str, int] = {}
    current: Instruction | None = None
    body: list[Instruction] = []
    problems: list[Problem] = []

    def close() -> None:
        if current is None:
            return
        words = list(current.args)
        image, name = words[0], None
        if len(words) == 3 and words[1].upper() == "AS":
            name = words[2].lower()
        elif len(words) != 1:
            problems.append(
                Problem(
                    shown, "", "FROM takes IMAGE [AS NAME]", "e.g. FROM ${TFGOV_BASE} AS app", current.line
                )
            )
        parent = names.get(image.lower())
        if parent is None and image.isdigit() and int(image) < len(stages):
            parent = int(image)
        stages.append(Stage(len(stages), image, name, current, tuple(body), parent))
        if name is not None:
            names[name] = len(stages) - 1

    for instruction in instructions:
        if instruction.keyword == "FROM":
            close()
            current, body = instruction, []
        elif current is None:
            if instruction.keyword != "ARG":
                problems.append(
                    Problem(
                        shown,
                        "",
                        f"{instruction.keyword} before the first FROM",
                        "only ARG may come before FROM",
                        instruction.line,
                    )
                )
                continue
            for word in instruction.args:
                key, eq, value = word.partition("=")
                args[key] = unquote(value) if eq else None
        else:
            body.append(instruction)
    close()
    if not stages and not problems:
        problems.append(
            Problem(
                shown,
                "",
                "no FROM instruction",
                "a Dockerfile starts with FROM IMAGE (ARGs may come first)",
                1,
            )
        )
    if problems:
        raise ConfigError(problems)
    return Dockerfile(path, shown, args, tuple(stages))


def unquote(word: str) -> str:
    """A word as the builders' shell-word processing gives it: quotes removed, ``\\"`` unescaped."""
    if len(word) >= 2 and word[0] == word[-1] and word[0] in "\"'":
        inner = word[1:-1]
        return inner if word[0] == "'" else re.sub(r"\\(.)", r"\1", inner)
    return word


def _error_line(text: str, error: str) -> int | None:
    """The line a parse error is on: the parser does not say, so find the shortest prefix of the
    file that fails with the same error (a Dockerfile is short; each parse takes microseconds)."""
    lines = text.splitlines(keepends=True)
    for end in range(1, len(lines) + 1):
        try:
            _official.parse_string("".join(lines[:end]))
        except _official.GoParseError as exc:
            if str(exc) == error:
                return end
    return None
