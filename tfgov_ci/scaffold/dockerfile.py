"""``tfgov-ci init --from-dockerfile``: what a Dockerfile says, as tfgov.yaml says it.

A Dockerfile in the common style (a TensorFlow image, ``COPY``, ``RUN pip install -r``, a ``CMD``)
describes what tfgov.yaml describes: the TensorFlow version, the files, the requirements, the
environment and the command. This module carries over what has a place in tfgov.yaml and, for
everything else, says what it was, on which line, why it has no place and what to do instead
(other ``RUN`` steps, several processes in one container, a shell script as command, ...). The
result is built by the native builder: the Dockerfile is no longer needed.
"""

from __future__ import annotations

import fnmatch
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from tfgov_ci import compat
from tfgov_ci.stages.build.dockerfile import Dockerfile, Instruction, Stage, unquote
from tfgov_ci.stages.build.preflight import DOWNLOADERS, PACKAGE_MANAGERS, SHELLS, json_form

DEFAULT_PYTHON = "3.11"
_TF_TAG = re.compile(r"(?:^|/)tensorflow/tensorflow(?::([^@\s]+))?")
_PY_TAG = re.compile(r"(?:^|/)python:(3\.[0-9]{1,2})")
_OPERATOR = re.compile(r"\s*(&&|\|\||;|\||&)\s*")
_SECRET = re.compile(r"PASSWORD|PASSWD|SECRET|TOKEN|API_?KEY|PRIVATE_?KEY|CREDENTIAL", re.I)
_SKIP_LISTING = {".git", ".tfgov", "tfgov.yaml", ".dockerignore", "__pycache__"}
# Never carried over from `COPY . .`, whatever .dockerignore says: what holds secrets or a machine.
_NEVER = (
    ".env",
    ".env.*",
    ".venv",
    "venv",
    "*.pem",
    "*.key",
    "id_rsa*",
    "id_ed25519*",
    ".netrc",
    ".npmrc",
    ".pypirc",
)


def _ignored(context: Path) -> tuple[list[str], list[str]]:
    """``.dockerignore``'s patterns (as docker reads them: one a line, ``#`` comments, ``!`` to keep
    again), top-level names only: what `COPY . .` leaves out."""
    path = context / ".dockerignore"
    lines = path.read_text(encoding="utf-8").splitlines() if path.is_file() else []
    patterns = [line.strip().removeprefix("./").rstrip("/") for line in lines]
    patterns = [p for p in patterns if p and not p.startswith("#")]
    return [p for p in patterns if not p.startswith("!")], [p[1:] for p in patterns if p.startswith("!")]


def _copied(name: str, ignore: list[str], keep: list[str]) -> bool:
    if any(fnmatch.fnmatch(name, pattern) for pattern in _NEVER):
        return False
    return not any(fnmatch.fnmatch(name, p) for p in ignore) or any(fnmatch.fnmatch(name, p) for p in keep)


@dataclass(frozen=True)
class Note:
    line: int | None
    text: str


@dataclass
class Migration:
    """What tfgov.yaml gets, and the notes: carried over (with how) and left for a person."""

    tensorflow: str | None = None
    python: str = DEFAULT_PYTHON
    variant: str = "cpu"
    cuda: str | None = None
    files: list[str] = field(default_factory=list)
    workdir: str = "/app"
    env: dict[str, str] = field(default_factory=dict)
    ports: list[int | str] = field(default_factory=list)
    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    requirements: str | None = None
    carried: list[Note] = field(default_factory=list)
    left: list[Note] = field(default_factory=list)

    def took(self, line: int | None, text: str) -> None:
        self.carried.append(Note(line, text))

    def leave(self, line: int | None, text: str) -> None:
        self.left.append(Note(line, text))


def migrate(dockerfile: Dockerfile, context: Path) -> Migration:
    """Translate the final stage (and the stages it builds on) of ``dockerfile``; ``context`` is
    the build context, where COPY's sources are (and where tfgov.yaml goes)."""
    out = Migration()
    chain = _chain(dockerfile)
    for stage in dockerfile.stages:
        if stage not in chain:
            out.leave(
                stage.line,
                f"stage FROM {stage.image}{f' AS {stage.name}' if stage.name else ''} is a build stage: "
                "not carried over (the native builder runs no build steps); build what it makes in CI "
                "before tfgov-ci, and list the result in app.files",
            )
    _from(dockerfile, chain[0], out)
    copies: dict[str, str] = {}  # where a file landed in the image -> its source in the context
    workdir = "/"
    start: dict[str, Instruction] = {}
    for stage in chain:
        cmd_here = False
        for instruction in stage.instructions:
            keyword = instruction.keyword
            if keyword == "WORKDIR":
                workdir = _workdir(instruction, workdir, out)
            elif keyword in ("COPY", "ADD"):
                _copy(instruction, workdir, context, copies, out)
            elif keyword == "RUN":
                _run(instruction, workdir, context, copies, out)
            elif keyword == "ENV":
                _env(instruction, out)
            elif keyword == "EXPOSE":
                _expose(instruction, out)
            elif keyword in ("CMD", "ENTRYPOINT"):
                if keyword == "ENTRYPOINT" and not cmd_here:
                    start.pop("CMD", None)  # an ENTRYPOINT resets an inherited CMD
                cmd_here = cmd_here or keyword == "CMD"
                start[keyword] = instruction
            else:
                _other(instruction, out)
    if workdir != "/":
        out.workdir = workdir
    _start(start, out)
    _requirements_not_in_files(out)
    if not out.files:
        out.leave(None, "no COPY of the app: app.files needs at least one file (edit it)")
    return out


def _chain(dockerfile: Dockerfile) -> list[Stage]:
    chain: list[Stage] = []
    stage: Stage | None = dockerfile.final
    while stage is not None:
        chain.insert(0, stage)
        stage = dockerfile.stages[stage.parent] if stage.parent is not None else None
    return chain


def _from(dockerfile: Dockerfile, stage: Stage, out: Migration) -> None:
    image, unknown = dockerfile.expand(stage.image)
    line = stage.line
    if unknown:
        out.leave(
            line, f"FROM {stage.image}: no default for ARG {', '.join(unknown)}: the version is unknown"
        )
    tf, py = _TF_TAG.search(image), _PY_TAG.search(image)
    if tf:
        tag = tf.group(1) or "latest"
        version = re.match(r"^([0-9]+\.[0-9]+(?:\.[0-9]+)?)", tag)
        if "gpu" in tag:
            out.variant = "gpu"
        if version and compat.release(version.group(1)):
            out.tensorflow = version.group(1)
            out.took(line, f"FROM {image} -> runtime.tensorflow {out.tensorflow}")
        elif not unknown:
            named = version.group(1) if version else tag
            out.leave(
                line,
                f"FROM {image}: TensorFlow {named} is not a release tfgov-ci knows (its tested Python "
                "and CUDA are unknown here): set runtime.tensorflow to one the central base provides",
            )
    elif py:
        out.python = py.group(1)
        out.took(line, f"FROM {image} -> runtime.python {out.python}")
    row = compat.release(out.tensorflow) if out.tensorflow else None
    if row is not None and not row.supports_python(out.python):
        out.python = f"{row.python_max[0]}.{row.python_max[1]}"
    if out.variant == "gpu" and row is not None:
        out.cuda = row.cuda
        out.took(
            line, f"a gpu image -> image.variant gpu, runtime.cuda {row.cuda} (TensorFlow's tested CUDA)"
        )
    elif out.variant == "gpu":  # no CUDA to name: a gpu variant without one would not validate
        out.variant = "cpu"
        out.leave(
            line,
            f"FROM {image}: a gpu image, written as cpu: set image.variant gpu and runtime.cuda (the "
            "base's CUDA) once runtime.tensorflow names a release",
        )
    out.took(
        line,
        f"the base: FROM {image} is replaced by the organisation's central base (base.image), which must "
        "provide this TensorFlow: ask the platform team if it does not",
    )


def _workdir(instruction: Instruction, current: str, out: Migration) -> str:
    path = unquote(instruction.args[0])
    if "$" in path:
        out.leave(instruction.line, f"WORKDIR {path}: variables are not expanded; set app.workdir")
        return current
    new = str(PurePosixPath(current) / path)
    out.took(instruction.line, f"WORKDIR {path} -> app.workdir {new}")
    return new


def _copy(
    instruction: Instruction, workdir: str, context: Path, copies: dict[str, str], out: Migration
) -> None:
    line, keyword = instruction.line, instruction.keyword
    if instruction.flag("from") is not None:
        out.leave(
            line,
            f"{keyword} --from={instruction.flag('from')}: files from another stage or image are "
            "not carried over; build them in CI and list them in app.files",
        )
        return
    if instruction.heredocs:
        out.leave(
            line,
            f"{keyword} <<{instruction.heredocs[0]}: write the text to a file in the repository "
            "and list it in app.files",
        )
        return
    *sources, dest = instruction.args
    dest_dir = str(PurePosixPath(workdir) / dest) if not dest.startswith("/") else dest
    for source in sources:
        if re.match(r"^(https?|git|ssh)://|^git@", source):
            out.leave(
                line,
                f"ADD {source}: a download at build time; commit the file (or fetch it in CI "
                "with a checksum) and list it in app.files",
            )
            continue
        # A COPY source is relative to the build context, even written /like/this.
        clean = source.lstrip("/").removeprefix("./").rstrip("/") or "."
        if clean == ".":
            ignore, keep = _ignored(context)
            every = [
                p
                for p in context.iterdir()
                if p.name not in _SKIP_LISTING and not p.name.startswith("Dockerfile")
            ]
            left = sorted(p.name for p in every if not _copied(p.name, ignore, keep))
            if left:
                out.took(line, f"{keyword} {source}: left out {', '.join(left)} (.dockerignore, or secrets)")
            listing = sorted(
                p.name + ("/" if p.is_dir() else "") for p in every if _copied(p.name, ignore, keep)
            )
            for name in listing:
                _add_file(name.rstrip("/"), out)
                copies[str(PurePosixPath(dest_dir) / name.rstrip("/"))] = name.rstrip("/")
            out.took(
                line,
                f"{keyword} {source} -> app.files: what the folder holds now "
                f"({', '.join(listing)}); review it",
            )
            continue
        if not any(context.glob(clean)):
            out.leave(line, f"{keyword} {source}: not in {context}; add it to app.files once it is")
            continue
        _add_file(clean, out)
        landed = (
            dest_dir
            if len(sources) == 1 and not dest.endswith("/") and dest not in (".", "./")
            else str(PurePosixPath(dest_dir) / PurePosixPath(clean).name)
        )
        copies[landed] = clean
        expected = str(PurePosixPath(out_workdir(workdir)) / clean)
        note = f"{keyword} {source} -> app.files"
        if landed != expected:
            note += f" (it lands at {expected}, not {landed}: app.files keep their paths under app.workdir)"
        out.took(line, note)
    if keyword == "ADD" and any(s.endswith((".tar", ".tar.gz", ".tgz", ".tar.xz")) for s in sources):
        out.leave(
            line, "ADD of an archive unpacks it; app.files copies it as it is: unpack it in the repository"
        )
    if instruction.flags:
        out.leave(
            line,
            f"{keyword} {' '.join(instruction.flags)}: ownership and modes are tfgov-ci's "
            "(root-owned, readable)",
        )


def out_workdir(workdir: str) -> str:
    return workdir if workdir != "/" else "/app"


def _add_file(path: str, out: Migration) -> None:
    if path not in out.files:
        out.files.append(path)


def _run(
    instruction: Instruction, workdir: str, context: Path, copies: dict[str, str], out: Migration
) -> None:
    line = instruction.line
    if instruction.exec_form and not (instruction.args and PurePosixPath(instruction.args[0]).name in SHELLS):
        commands = [list(instruction.args)]
    else:
        script = instruction.command
        if instruction.exec_form:
            rest = list(instruction.args[1:])
            script = rest[rest.index("-c") + 1] if "-c" in rest[:-1] else ""
        commands = [_words(part) for part in _OPERATOR.split(script)[::2] if part.strip()]
    for words in commands:
        while words and (re.match(r"^\w+=", words[0]) or words[0] in ("sudo", "exec")):
            words = words[1:]
        if not words:
            continue
        program = PurePosixPath(words[0]).name
        args = words[1:]
        if program.startswith("python") and args[:1] == ["-m"] and len(args) > 1:
            program, args = args[1], args[2:]
        if re.fullmatch(r"pip[0-9.]*", program) and args[:1] == ["install"]:
            _pip(line, args[1:], workdir, context, copies, out)
        elif program in PACKAGE_MANAGERS:
            packages = [
                a
                for a in args
                if not a.startswith("-") and a not in ("install", "update", "upgrade", "clean")
            ]
            if packages and "install" in args:
                out.leave(
                    line,
                    f"{program} install {' '.join(packages)}: system packages come with the central "
                    "base: ask the platform team to add them (tfgov-base.yaml, debian.packages)",
                )
        elif program == "rm" and any("/var/lib/apt" in a for a in args):
            continue  # apt's clean-up: nothing to carry
        elif program in DOWNLOADERS:
            out.leave(
                line,
                f"{' '.join(words)}: a download at build time; commit the file (or fetch it in CI "
                "with a checksum) and list it in app.files",
            )
        else:
            out.leave(
                line,
                f"RUN {' '.join(words)}: the native builder runs no build steps; make what it makes "
                "in CI before tfgov-ci runs (or commit it) and list it in app.files",
            )


def _pip(
    line: int, args: list[str], workdir: str, context: Path, copies: dict[str, str], out: Migration
) -> None:
    files, packages, index = [], [], []
    skip = False
    for i, arg in enumerate(args):
        if skip:
            skip = False
            continue
        if arg in ("-r", "--requirement") and i + 1 < len(args):
            files.append(args[i + 1])
            skip = True
        elif arg.startswith("--requirement="):
            files.append(arg.split("=", 1)[1])
        elif arg in ("-i", "--index-url", "--extra-index-url", "-f", "--find-links", "-c", "--constraint"):
            index.append(f"{arg} {args[i + 1]}" if i + 1 < len(args) else arg)
            skip = True
        elif not arg.startswith("-"):
            packages.append(arg)
    for name in files:
        inside = str(PurePosixPath(out_workdir(workdir)) / name) if not name.startswith("/") else name
        source = copies.get(inside) or copies.get(str(PurePosixPath(workdir) / name))
        if source is None and (context / name).is_file():
            source = name
        if source is None:
            out.leave(
                line,
                f"pip install -r {name}: cannot tell which file of the repository that is; set "
                "dependencies.requirements",
            )
        elif out.requirements is None:
            out.requirements = source
            out.took(
                line,
                f"pip install -r {name} -> dependencies.requirements {source} (the lock stage "
                "resolves it with hashes; the build installs the lock)",
            )
        else:
            out.leave(
                line,
                f"pip install -r {name}: one requirements file per image: merge it into {out.requirements}",
            )
    wanted = [p for p in packages if p.lower() not in ("pip", "setuptools", "wheel")]
    if wanted:
        out.leave(line, f"pip install {' '.join(wanted)}: add {', '.join(wanted)} to the requirements file")
    if index:
        out.leave(
            line,
            f"pip install {' '.join(index)}: a package index or constraints for the lock stage "
            "(the lock stage's options / your CI's index settings), not the image",
        )


def _env(instruction: Instruction, out: Migration) -> None:
    words = list(instruction.args)
    for name, value in zip(words[::2], words[1::2], strict=False):
        value = unquote(value)
        if _SECRET.search(name):
            out.leave(
                instruction.line, f"ENV {name}: looks like a secret: not carried over (pass it at run time)"
            )
            continue
        out.env[name] = value
        note = f"ENV {name} -> app.env"
        if "$" in value:
            note += " (as written: variables in it are not expanded)"
        out.took(instruction.line, note)


def _expose(instruction: Instruction, out: Migration) -> None:
    for port in instruction.args:
        if re.fullmatch(r"[0-9]{1,5}", port):
            value: int | str = int(port)
        elif re.fullmatch(r"[0-9]{1,5}/(tcp|udp)", port.lower()):
            value = port.lower()
        else:
            out.leave(
                instruction.line, f"EXPOSE {port}: not a port tfgov.yaml can hold (a variable or a range)"
            )
            continue
        if value not in out.ports:
            out.ports.append(value)
        out.took(instruction.line, f"EXPOSE {port} -> app.ports")


def _other(instruction: Instruction, out: Migration) -> None:
    keyword, line = instruction.keyword, instruction.line
    why = {
        "USER": "the image runs as app.user (65532:65532, non-root); root is asked for in tfgov.yaml",
        "ARG": "the native build has no build arguments",
        "LABEL": "tfgov-ci sets the image's OCI labels (source, revision, base, versions)",
        "HEALTHCHECK": "tfgov.yaml has no health check: the orchestrator's probes do that",
        "VOLUME": "declare volumes where the container runs (the orchestrator)",
        "STOPSIGNAL": "the default SIGTERM is what Python handles",
        "SHELL": "there is no shell in the base",
        "ONBUILD": "no image builds on a model image",
        "MAINTAINER": "the repository says who owns the image",
    }.get(keyword, "tfgov.yaml has no place for it")
    out.leave(line, f"{keyword} {_short(instruction.command)}: not carried over: {why}")


def _start(start: dict[str, Instruction], out: Migration) -> None:
    entry, cmd = start.get("ENTRYPOINT"), start.get("CMD")
    if entry is not None:
        argv = _argv(entry, out)
        if argv:
            out.entrypoint = argv
            out.took(entry.line, f"ENTRYPOINT -> app.entrypoint {json_form(argv)}")
    if cmd is not None:
        argv = _argv(cmd, out)
        if argv and (entry is not None or argv[0].endswith(".py")):
            out.cmd = argv
            out.took(cmd.line, f"CMD -> app.cmd {json_form(argv)}")
        elif argv:
            out.entrypoint = argv
            out.took(
                cmd.line,
                f"CMD -> app.entrypoint {json_form(argv)} (the central base's ENTRYPOINT is Python: a CMD "
                "alone would be passed to it as arguments)",
            )


def _argv(instruction: Instruction, out: Migration) -> list[str]:
    """The exec-form argv the instruction means, or [] with a note on why it cannot be carried."""
    keyword, line, args = instruction.keyword, instruction.line, list(instruction.args)
    if instruction.exec_form and not (args and PurePosixPath(args[0]).name in SHELLS):
        return args
    script = instruction.command
    if instruction.exec_form:
        rest = args[1:]
        script = rest[rest.index("-c") + 1] if "-c" in rest[:-1] else ""
    parts = _OPERATOR.split(script)
    processes, operators = [p.strip() for p in parts[::2] if p.strip()], parts[1::2]
    shown = _short(json_form(args) if instruction.exec_form else script, 90)
    if "&" in operators and len(processes) > 1:
        first = _words(processes[0]) if _simple(processes[0]) else []
        out.leave(
            line,
            f"{keyword} {shown}: {len(processes)} processes in one container ("
            + "; ".join(f"`{p}`" for p in processes)
            + "): one process per container. "
            + (f"This image runs the first ({json_form(first)}); " if first else "")
            + "run the others (TensorBoard, say) as their own container or image, or as a sidecar "
            "sharing the log directory",
        )
        return first
    if len(processes) == 1 and _simple(processes[0]):
        argv = _words(processes[0])
        while argv and argv[0] == "exec":
            argv = argv[1:]
        out.took(line, f"{keyword} {shown}: a shell command, carried over in exec form {json_form(argv)}")
        return argv
    out.leave(
        line,
        f"{keyword} {shown}: a shell script (there is no shell in the base): not carried over; put it in a "
        "Python script and make that the entrypoint",
    )
    return []


def _requirements_not_in_files(out: Migration) -> None:
    if out.requirements and out.requirements in out.files and len(out.files) > 1:
        out.files.remove(out.requirements)
        out.took(None, f"{out.requirements} is not copied into the image: it is the lock stage's input")


def _words(command: str) -> list[str]:
    try:
        return shlex.split(command)
    except ValueError:
        return command.split()


def _simple(command: str) -> bool:
    return not re.search(r"[$`*?<>(){}]", command)


def _short(text: str, width: int = 60) -> str:
    one = " ".join(text.split())
    return one if len(one) <= width else one[: width - 3] + "..."
