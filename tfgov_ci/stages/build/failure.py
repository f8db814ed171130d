"""Why a Dockerfile build failed: the step, its line in the team's Dockerfile, the likely cause.

The builders say which step failed in their own words (buildah: ``building at STEP "RUN ..."``;
the Engine's classic builder: ``Step 4/6 : RUN ...``) and why in the runtime's (``exec:
"/bin/sh": stat /bin/sh: no such file or directory``). Preflight catches most of this before a
build; what gets through (a script whose ``#!`` names a shell, a program the base lacks, a step
that fails on its own) is explained here, as :class:`~tfgov_ci.stages.build.interface.BuildError`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from tfgov_ci.errors import ConfigError
from tfgov_ci.stages.build.dockerfile import Dockerfile, Instruction, read

_BUILDAH_STEP = re.compile(r'building at STEP "(.*?)": ', re.S)
_DOCKER_STEP = re.compile(r"^Step \d+/\d+ : (.*)$", re.M)
_NOT_FOUND = re.compile(
    r'exec: "([^"]+)": (?:executable file not found|stat \S+: no such file)|fork/exec (\S+?):? no such file'
)
_CAUSES: tuple[tuple[re.Pattern[str], str, str], ...] = (
    (
        re.compile(r"No module named pip"),
        "the pinned base has no pip (the lock is installed by tfgov-ci's native builder)",
        "drop the pip step and build with the native builder, or ask the platform team for a base with pip",
    ),
    (
        re.compile(
            r"Temporary failure in name resolution|Network is unreachable|Could not resolve host|"
            r"Failed to establish a new connection|No matching distribution found"
        ),
        "the step reached for the network, and the build has none",
        "everything a build uses comes from the repository, the lock or the base",
    ),
    (
        re.compile(r"[Pp]ermission denied"),
        "the step runs as the base's non-root user (65532) and wrote where it may not",
        "write under the WORKDIR or /tmp, or put USER root before the step "
        "(the image still runs as app.user)",
    ),
    (
        re.compile(r"checking on sources|COPY failed|ADD failed|no source files were specified"),
        "a file it copies is not in the build context",
        "check the path, .dockerignore and stages.build.options.context",
    ),
)


@dataclass(frozen=True)
class Explained:
    message: str
    hint: str


def explain(dockerfile_path: Path, output: str, backend: str) -> Explained:
    """The failed step and its likely cause, from the builder's ``output``."""
    try:
        dockerfile: Dockerfile | None = read(dockerfile_path)
    except ConfigError:
        dockerfile = None  # preflight has said so; explain from the output alone
    step = _failed_step(output, backend)
    where = ""
    if step is not None:
        where = f" at step `{_short(step)}`"
        lines = _lines_of(dockerfile, step) if dockerfile is not None else []
        if lines and dockerfile is not None:
            where += f" ({dockerfile.shown}:{', '.join(map(str, lines))})"
    cause, hint = _cause(output, step or "")
    return Explained(f"{backend} build failed{where}: {cause}", hint)


def _failed_step(output: str, backend: str) -> str | None:
    if backend == "buildah":
        found = _BUILDAH_STEP.findall(output)
        return found[-1] if found else None
    found = _DOCKER_STEP.findall(output)
    return found[-1].strip() if found else None


def _lines_of(dockerfile: Dockerfile, step: str) -> list[int]:
    """The lines of the instructions that read as ``step`` (buildah and Docker print an
    instruction as its keyword, flags and arguments joined by spaces; Docker keeps a JSON array)."""
    wanted = _normal(step)
    found = []
    for instruction in (i for s in dockerfile.stages for i in (s.start, *s.instructions)):
        if wanted in (_normal(_as_buildah(instruction)), _normal(instruction.original)):
            found.append(instruction.line)
    return found


def _as_buildah(instruction: Instruction) -> str:
    return " ".join((instruction.keyword, *instruction.flags, *instruction.args))


def _normal(text: str) -> str:
    return " ".join(text.replace("\\\n", " ").split()).lower()


def _cause(output: str, step: str) -> tuple[str, str]:
    missing = _NOT_FOUND.search(output)
    if missing is not None:
        program = missing.group(1) or missing.group(2)
        if program in ("/bin/sh", "/bin/bash", "sh", "bash"):
            return (
                f"{program} is not in the pinned base (distroless: no shell, by design), and this step "
                "is in shell form",
                'write it in exec form, one program and its arguments: RUN ["/usr/bin/python3", "script.py"]',
            )
        return (
            f"{program} is not in the pinned base, or it is a script whose #! line names a program "
            "that is not (a shell, say)",
            "run what the base has (its Python: /usr/bin/python3 script.py), or ask the platform team "
            "to add the program to the central base",
        )
    for pattern, cause, hint in _CAUSES:
        if pattern.search(output):
            return cause, hint
    return "the step exited with an error", "see the build output below"


def _short(text: str, width: int = 80) -> str:
    one = " ".join(text.split())
    return one if len(one) <= width else one[: width - 3] + "..."
