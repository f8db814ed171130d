"""Preflight of a Dockerfile build: what cannot work on the pinned distroless base, before anything
is built, each with its line, why, and what to do instead.

The central base has no shell, no package manager and no pip (by design: a model image holds the
Python runtime, the locked packages and the app). The buildah and docker backends call
:func:`preflight` from their ``preflight`` method, which ``validate`` runs (and so every ``plan``
and ``run``). Errors stop validate (exit 2): the build would fail, the container could not start,
or the image would hold what the lock and the pinned base are there to keep out. Warnings are
printed and recorded every time: the build works, but not as the Dockerfile reads.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from tfgov_ci.config import Config
from tfgov_ci.errors import ConfigError, Problem
from tfgov_ci.stages.build.dockerfile import Dockerfile, Instruction, Stage, read

SHELLS = frozenset({"sh", "bash", "dash", "ash", "zsh", "ksh", "busybox"})
PACKAGE_MANAGERS = frozenset(
    {"apt-get", "apt", "aptitude", "dpkg", "apk", "yum", "dnf", "microdnf", "zypper", "conda", "mamba"}
)
DOWNLOADERS = frozenset({"curl", "wget", "git"})
_OPERATORS = re.compile(r"&&|\|\||[;&|\n]")
_SECRET_NAME = re.compile(r"PASSWORD|PASSWD|SECRET|TOKEN|API_?KEY|PRIVATE_?KEY|CREDENTIAL", re.I)
_URL = re.compile(r"^(https?|git|ssh)://|^git@", re.I)
_TF_IMAGE = re.compile(r"(?:^|/)tensorflow/tensorflow:([0-9]+\.[0-9]+(?:\.[0-9]+)?)")
BASE_ARG = "TFGOV_BASE"
EXEC_EXAMPLE = 'RUN ["/usr/bin/python3", "script.py"]'


@dataclass(frozen=True)
class Builder:
    """What a backend's builder does with a Dockerfile."""

    name: str
    pins_every_from: bool  # docker: every FROM naming an image; buildah (--from): only the first
    heredocs: str | None  # why heredocs fail, or None when the builder has them
    run_flags: bool  # RUN --mount / --network: buildah has them, the Engine's classic builder not


@dataclass(frozen=True)
class Finding:
    """One thing found: an error stops validate, a warning is printed and recorded."""

    line: int
    what: str
    why: str
    instead: str | None
    error: bool


def dockerfile_path(config: Config, options: Mapping[str, Any]) -> Path:
    """The Dockerfile a Dockerfile backend builds (``stages.build.options.dockerfile``)."""
    return (config.project_dir / str(options.get("dockerfile", "Dockerfile"))).resolve()


def preflight(
    config: Config, options: Mapping[str, Any], builder: Builder
) -> tuple[tuple[Problem, ...], tuple[str, ...]]:
    """The Dockerfile's problems (errors) and warnings, for ``validate``."""
    path = dockerfile_path(config, options)
    if not path.is_file():
        return (
            (
                config.problem(
                    ("stages", "build", "options", "dockerfile"),
                    f"no Dockerfile at {path}",
                    f"the {builder.name} backend builds a Dockerfile: write one, set "
                    "stages.build.options.dockerfile, or use the native builder (`tfgov-ci init "
                    "--from-dockerfile` turns a Dockerfile into tfgov.yaml)",
                ),
            ),
            (),
        )
    try:
        dockerfile = read(path)
    except ConfigError as exc:
        return exc.problems, ()
    found = check(dockerfile, config, builder)
    problems = tuple(dockerfile.problem(f.line, f"{f.what}: {f.why}", f.instead) for f in found if f.error)
    warnings = tuple(
        dockerfile.problem(f.line, f"{f.what}: {f.why}", f.instead).render() for f in found if not f.error
    )
    return problems, warnings


def check(dockerfile: Dockerfile, config: Config, builder: Builder) -> list[Finding]:
    """Every finding, in the order of the file."""
    found: list[Finding] = []
    names = {s.name for s in dockerfile.stages if s.name} | {str(s.index) for s in dockerfile.stages}
    where = _where_stages_run(dockerfile, builder)
    for stage in dockerfile.stages:
        found += _check_from(dockerfile, stage, where, config, builder)
        for instruction in stage.instructions:
            found += _check_instruction(instruction, stage, where[stage.index], names, builder)
    found += _check_final(dockerfile, config)
    return sorted(found, key=lambda f: f.line)


def _where_stages_run(dockerfile: Dockerfile, builder: Builder) -> dict[int, str]:
    """Each stage's root: "base" (the pinned base), "scratch" (empty), or "missing" (an image the
    build does not have: builds never pull)."""
    where: dict[int, str] = {}
    for stage in dockerfile.stages:
        if stage.parent is not None:
            where[stage.index] = where[stage.parent]
        elif stage.index == 0 or builder.pins_every_from:
            where[stage.index] = "base"
        elif stage.image.lower() == "scratch":
            where[stage.index] = "scratch"
        else:
            where[stage.index] = "missing"
    return where


def _check_from(
    dockerfile: Dockerfile, stage: Stage, where: dict[int, str], config: Config, builder: Builder
) -> Iterator[Finding]:
    line, image = stage.line, stage.image
    final = stage.index == len(dockerfile.stages) - 1
    if where[stage.index] == "missing":
        yield Finding(
            line,
            f"FROM {image}",
            f"the {builder.name} backend points only the first FROM at the pinned base, and a build "
            "never pulls: this image is not there",
            f"build this stage on the base too (FROM ${{{BASE_ARG}}} after ARG {BASE_ARG}, or FROM "
            "an earlier stage's name), or use the docker backend, which pins every FROM",
            True,
        )
    elif final and where[stage.index] == "scratch":
        yield Finding(
            line,
            f"FROM {image} (the final stage)",
            "the image would not be built on the pinned base (its labels and SBOM would say it is)",
            f"end with a stage on the base: FROM ${{{BASE_ARG}}}, then COPY --from the others",
            True,
        )
    if stage.parent is not None or where[stage.index] != "base":
        return
    if re.fullmatch(r"\$\{?" + BASE_ARG + r"\}?", image):
        return  # says what happens
    tensorflow = _TF_IMAGE.search(dockerfile.expand(image)[0])
    why = f"the build runs on the pinned base {config.base.image}"
    if tensorflow and tensorflow.group(1) != config.runtime.tensorflow:
        why += (
            f"; TensorFlow comes from it: runtime.tensorflow {config.runtime.tensorflow}, "
            f"not {tensorflow.group(1)}"
        )
    yield Finding(
        line,
        f"FROM {image} is replaced",
        why,
        f"write ARG {BASE_ARG} and FROM ${{{BASE_ARG}}} to say so (tfgov-ci passes it as a build argument)",
        False,
    )


def _check_instruction(
    instruction: Instruction, stage: Stage, root: str, stages: set[str], builder: Builder
) -> Iterator[Finding]:
    keyword, line = instruction.onbuild or instruction.keyword, instruction.line
    if instruction.onbuild:
        return  # runs in images built FROM this one, not in this build
    if instruction.heredocs and builder.heredocs:
        yield Finding(
            line,
            f"{keyword} <<{instruction.heredocs[0]} (a heredoc)",
            builder.heredocs,
            "put the text in a file in the repository and COPY it; a script runs as " + EXEC_EXAMPLE,
            True,
        )
    if keyword == "RUN":
        yield from _check_run(instruction, root, builder)
        yield from _check_from_flag(instruction, "mount", stages)
    elif keyword == "SHELL" and root == "base":
        yield Finding(
            line,
            f"SHELL {instruction.command}",
            "the pinned base has no shell (distroless, by design)",
            "drop it and write each RUN in exec form: " + EXEC_EXAMPLE,
            True,
        )
    elif keyword == "ADD" and any(_URL.match(a) for a in instruction.args[:-1]):
        yield Finding(
            line,
            f"ADD {instruction.command}",
            "downloads at build time: nothing locks or checks what comes back, and the build's "
            "result would depend on a server (the docker backend builds without a network)",
            "commit the file, or fetch it in CI with a checksum before the build, and COPY it",
            True,
        )
    elif keyword == "COPY":
        yield from _check_from_flag(instruction, "from", stages)
    elif keyword == "USER" and root == "base":
        user = instruction.args[0]
        if user.split(":")[0] in ("root", "0"):
            yield Finding(
                line,
                f"USER {user}",
                "the steps after it run as root; the image itself still runs as app.user "
                "(tfgov-ci sets it after the Dockerfile's steps)",
                "keep it only for steps that must write outside the WORKDIR; root at run time is "
                "asked for in tfgov.yaml (app.user), where the non_root policy sees it",
                False,
            )
    elif keyword in ("ENV", "ARG"):
        yield from _check_secrets(instruction)


def _check_run(instruction: Instruction, root: str, builder: Builder) -> Iterator[Finding]:
    line = instruction.line
    if instruction.flags and not builder.run_flags:
        yield Finding(
            line,
            f"RUN {' '.join(instruction.flags)}",
            f"the {builder.name} backend drives the Engine's classic builder, which has no RUN flags",
            "drop the flag, or use the buildah backend",
            True,
        )
    if root == "scratch":
        yield Finding(
            line,
            f"RUN {instruction.command}",
            "this stage is FROM scratch: it holds no program to run",
            "build it FROM an earlier stage on the base",
            True,
        )
        return
    if root != "base":
        return
    programs = _programs(instruction)
    shown = f"RUN {_shown(instruction)}"
    if not instruction.exec_form or (programs and programs[0][0] in SHELLS):
        yield Finding(
            line,
            f"shell-form RUN `{_short(instruction.command)}`" if not instruction.exec_form else shown,
            "it needs /bin/sh, which the pinned base does not have (distroless, by design)",
            _instead_of_run(programs),
            True,
        )
        return
    for program, args in programs:
        if program in PACKAGE_MANAGERS:
            yield Finding(
                line, shown, f"{program} is not in the pinned base", _instead_of_run(programs), True
            )
        elif program in DOWNLOADERS:
            yield Finding(
                line,
                shown,
                f"{program} is not in the pinned base, and nothing checks what it fetches",
                _instead_of_run(programs),
                True,
            )
        elif program == "pip" and "install" in args:
            yield from _check_pip(line, shown, args, builder)


def _check_pip(line: int, shown: str, args: list[str], builder: Builder) -> Iterator[Finding]:
    if _installs_lock(args):  # the lock, with hashes: right, where the base has pip at all
        yield Finding(
            line,
            shown,
            "installs the lock with pip, which the pinned base must carry: the central distroless "
            "base does not, by design, and there the build fails with 'No module named pip'",
            "on the central base, let the native builder install the lock (`tfgov-ci init "
            "--from-dockerfile` writes that tfgov.yaml)",
            False,
        )
        return
    offline = "--no-index" in args
    yield Finding(
        line,
        shown,
        "installs packages the lock does not hold (the sbom stage's drift check reports them)"
        if offline
        else "installs unlocked packages at build time: the lock (resolved with hashes by the lock "
        "stage) is what goes into the image"
        + (", and the docker backend builds without a network" if not builder.run_flags else ""),
        "let the native builder install the lock (`tfgov-ci init --from-dockerfile`); or, on a "
        'base that carries pip, install the lock (build argument TFGOV_LOCK): RUN ["/usr/bin/python3", '
        '"-m", "pip", "install", "--require-hashes", "--no-deps", "-r", "requirements.lock"]',
        not offline,
    )


def _installs_lock(args: list[str]) -> bool:
    files = [args[i + 1] for i, a in enumerate(args[:-1]) if a in ("-r", "--requirement")]
    files += [a.split("=", 1)[1] for a in args if a.startswith("--requirement=")]
    return (
        "--require-hashes" in args
        and bool(files)
        and all(f.endswith(".lock") or "TFGOV_LOCK" in f for f in files)
    )


def _check_from_flag(instruction: Instruction, flag: str, stages: set[str]) -> Iterator[Finding]:
    value = instruction.flag(flag)
    if value is None:
        return
    source = value
    if flag == "mount":  # --mount=type=bind,from=IMAGE,...
        parts = dict(p.partition("=")[::2] for p in value.split(","))
        source = parts.get("from", "")
    if source and source.lower() not in stages:
        yield Finding(
            instruction.line,
            f"{instruction.keyword} --{flag}={value}",
            f"takes files from the image {source}, which is not the pinned base and is in no lock or SBOM",
            "build it in a stage of this Dockerfile (FROM the base), or ask the platform team to add "
            "it to the central base",
            True,
        )


def _check_secrets(instruction: Instruction) -> Iterator[Finding]:
    words = list(instruction.args)
    pairs = (
        [w.partition("=")[::2] for w in words]
        if instruction.keyword == "ARG"
        else list(zip(words[::2], words[1::2], strict=False))
    )
    for name, value in pairs:
        if value and _SECRET_NAME.search(name):
            yield Finding(
                instruction.line,
                f"{instruction.keyword} {name}",
                "a value set here stays in the image's config and history for anyone who can pull it",
                "pass secrets at run time (the orchestrator's secrets), never in the Dockerfile",
                False,
            )


def _check_final(dockerfile: Dockerfile, config: Config) -> Iterator[Finding]:
    """CMD, ENTRYPOINT and HEALTHCHECK: only the final stage's (and those it inherits) reach the image."""
    chain: list[Stage] = []
    stage: Stage | None = dockerfile.final
    while stage is not None:
        chain.insert(0, stage)
        stage = dockerfile.stages[stage.parent] if stage.parent is not None else None
    last: dict[str, Instruction] = {}
    for stage_ in chain:
        cmd_here = False
        for instruction in stage_.instructions:
            if instruction.keyword not in ("CMD", "ENTRYPOINT", "HEALTHCHECK") or instruction.onbuild:
                continue
            if instruction.keyword == "ENTRYPOINT" and not cmd_here:
                last.pop("CMD", None)  # as the builders do: an ENTRYPOINT resets an inherited CMD
            cmd_here = cmd_here or instruction.keyword == "CMD"
            last[instruction.keyword] = instruction
    for keyword in ("ENTRYPOINT", "CMD"):
        if keyword in last:
            yield from _check_start(last[keyword])
    health = last.get("HEALTHCHECK")
    if health is not None and health.args and health.args[0].upper() == "CMD" and not health.exec_form:
        yield Finding(
            health.line,
            f"HEALTHCHECK {_shown(health)}",
            "shell form runs /bin/sh -c, which the pinned base does not have: the check always fails",
            'write it in exec form: HEALTHCHECK CMD ["/usr/bin/python3", "healthcheck.py"]',
            True,
        )
    cmd = last.get("CMD")
    if cmd is not None and "ENTRYPOINT" not in last and cmd.exec_form and cmd.args:
        first = PurePosixPath(cmd.args[0]).name
        if first.startswith("python") and first not in ("python.py",):
            yield Finding(
                cmd.line,
                f"CMD {json_form(cmd.args)} without ENTRYPOINT",
                "a CMD is passed to the base's ENTRYPOINT, and tfgov-ci's bases start Python "
                f"(`tfgov-ci base build`): this runs `python{config.runtime.python} {' '.join(cmd.args)}`",
                f"write it as ENTRYPOINT {json_form(cmd.args)}",
                False,
            )


def _check_start(instruction: Instruction) -> Iterator[Finding]:
    keyword = instruction.keyword
    programs = _programs(instruction)
    processes = _processes(instruction)
    several = len(processes) > 1 and "&" in _script(instruction)
    if instruction.exec_form and not (programs and programs[0][0] in SHELLS):
        return
    why = (
        "shell form runs /bin/sh -c, which the pinned base does not have: the container cannot start"
        if not instruction.exec_form
        else f"{instruction.args[0]} is not in the pinned base: the container cannot start"
    )
    if several:
        instead = (
            f"one process per container: {' and '.join(f'`{p}`' for p in processes)} run side by "
            "side here; make this image run the first, in exec form"
            + (f" ({keyword} {json_form(_words(processes[0]))})" if _simple(processes[0]) else "")
            + ", and the others (TensorBoard, say) as their own container or a sidecar sharing the "
            "log directory"
        )
    else:
        instead = "write it in exec form" + (
            f": {keyword} {json_form(_words(processes[0]))}"
            if len(processes) == 1 and _simple(processes[0])
            else ", one program and its arguments"
        )
    yield Finding(instruction.line, f"{keyword} {_shown(instruction)}", why, instead, True)


# --- what a command line runs -------------------------------------------------------------------


def _script(instruction: Instruction) -> str:
    """The shell script an instruction runs: the shell form's text, or ``sh -c SCRIPT``'s."""
    args = instruction.args
    if not instruction.exec_form:
        return instruction.command
    if args and PurePosixPath(args[0]).name in SHELLS:
        rest = list(args[1:])
        return rest[rest.index("-c") + 1] if "-c" in rest[:-1] else ""
    return ""


def _processes(instruction: Instruction) -> list[str]:
    """The commands of its script, split at the shell's operators (&&, ||, ;, |, &)."""
    return [part.strip() for part in _OPERATORS.split(_script(instruction)) if part.strip()]


def _programs(instruction: Instruction) -> list[tuple[str, list[str]]]:
    """Each program it runs, by name, with its arguments (``python -m pip``: pip)."""
    if instruction.exec_form:
        commands = [list(instruction.args)]
        if commands[0] and PurePosixPath(commands[0][0]).name in SHELLS:
            commands += [_words(p) for p in _processes(instruction)]
    else:
        commands = [_words(p) for p in _processes(instruction)]
    out = []
    for words in commands:
        while words and (re.match(r"^\w+=", words[0]) or words[0] in ("sudo", "exec", "env")):
            words = words[1:]  # VAR=value prefixes, sudo, exec
        if not words:
            continue
        name = PurePosixPath(words[0]).name
        if name.startswith("python") and words[1:3] and words[1] == "-m":
            name, words = words[2], words[2:]
        out.append((re.sub(r"[0-9.]+$", "", name) if name.startswith("pip") else name, words[1:]))
    return out


def _words(command: str) -> list[str]:
    try:
        return shlex.split(command, comments=True)
    except ValueError:  # an unbalanced quote: the builder's shell would say so
        return command.split()


def _simple(command: str) -> bool:
    return not re.search(r"[$`*?<>(){}]", command)


def _instead_of_run(programs: list[tuple[str, list[str]]]) -> str:
    names = {name for name, _ in programs}
    if names & PACKAGE_MANAGERS:
        return (
            "system packages come with the central base: ask the platform team to add them "
            "(tfgov-base.yaml, debian.packages); Python packages go in requirements.txt"
        )
    if "pip" in names:
        return (
            "packages come from the lock: drop this step and let the native builder install the "
            "lock (`tfgov-ci init --from-dockerfile` writes that tfgov.yaml), or install the lock in "
            'exec form on a base with pip: RUN ["/usr/bin/python3", "-m", "pip", "install", '
            '"--require-hashes", "--no-deps", "-r", "requirements.lock"]'
        )
    if names & DOWNLOADERS:
        return "fetch files in CI before the build (with a checksum) and COPY them"
    return f"write it in exec form, one program and its arguments: {EXEC_EXAMPLE}"


def json_form(args: list[str] | tuple[str, ...]) -> str:
    return "[" + ", ".join('"' + a.replace("\\", "\\\\").replace('"', '\\"') + '"' for a in args) + "]"


def _shown(instruction: Instruction) -> str:
    """Its arguments as written: the exec form's JSON array, the shell form's text (shortened)."""
    if instruction.exec_form:
        return _short(json_form(instruction.args), 80)
    return _short(instruction.command)


def _short(text: str, width: int = 60) -> str:
    one = " ".join(text.split())
    return one if len(one) <= width else one[: width - 3] + "..."
