"""Locked wheels into image layers: parse the lock, fetch each wheel once, install it into a layer.

The lock is a requirements file with exact versions and ``--hash`` options (what the lock stage
writes, and ``uv pip compile --generate-hashes`` prints). Wheels are fetched for the *image's*
Python and platform, never the host's, checked against the lock's hashes, and kept in a cache by
hash. Installing is done here, not by pip: members stream from the wheel straight into the layer
(no build-time dependency resolution, no bytecode, no host paths in scripts), and every member is
checked against the wheel's RECORD while it streams.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import re
import sys
import tempfile
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

from tfgov_ci import tools
from tfgov_ci.errors import TfgovError, ToolError
from tfgov_ci.oci.layer import LayerBuilder

_NAME = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?==([^\s;]+)")
_HASH = re.compile(r"--hash=sha256:([0-9a-f]{64})")
INSTALLER = "tfgov-ci\n"


class LockError(TfgovError):
    """A lock file that cannot be built from (missing hashes, not exact, unparsable)."""

    exit_code = 2


class WheelError(ToolError):
    """A wheel that cannot be had for the image's platform, or does not match its lock."""


@dataclass(frozen=True)
class Locked:
    name: str  # normalised: lowercase, runs of -_. as -
    version: str
    hashes: tuple[str, ...]  # sha256 hex digests the lock allows
    line: int


def normalise_name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_lock(path: Path) -> list[Locked]:
    """Every pinned requirement of a hashed requirements file; anything loose is an error."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise LockError(f"lock file {path} not found", "run `tfgov-ci run lock` first") from None
    out: list[Locked] = []
    problems: list[str] = []
    logical, start = "", 0
    lines = text.splitlines()
    for number, raw in enumerate([*lines, ""], 1):
        stripped = raw.split(" #", 1)[0].strip() if not raw.lstrip().startswith("#") else ""
        if logical == "":
            start = number
        if stripped.endswith("\\"):
            logical += " " + stripped[:-1]
            continue
        logical = (logical + " " + stripped).strip()
        if not logical:
            continue
        if logical.startswith("-"):  # --index-url and friends: the lock stage's business
            logical = ""
            continue
        match = _NAME.match(logical)
        hashes = tuple(_HASH.findall(logical))
        if match is None:
            problems.append(f"{path}:{start}: '{logical.split()[0]}' is not pinned with ==")
        elif not hashes:
            problems.append(f"{path}:{start}: {match.group(1)} has no --hash")
        else:
            out.append(Locked(normalise_name(match.group(1)), match.group(3), hashes, start))
        logical = ""
    if problems:
        raise LockError("; ".join(problems), "regenerate the lock: `tfgov-ci run lock`")
    return out


def lock_digest(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def manylinux_platforms(glibc: tuple[int, int], arch: str = "x86_64") -> list[str]:
    """pip's --platform list for a glibc: pip does not expand manylinux_2_X downwards itself."""
    major, minor = glibc
    tags = [f"manylinux_{major}_{m}_{arch}" for m in range(minor, 16, -1)]
    tags += [f"manylinux2014_{arch}", f"manylinux2010_{arch}", f"manylinux1_{arch}"]
    return tags


@dataclass(frozen=True)
class Target:
    """The Python an image runs: what wheels must be built for, and where they install."""

    python: str  # "3.11"
    platforms: tuple[str, ...]
    site_packages: str  # "/usr/local/lib/python3.11/dist-packages"
    scripts_dir: str  # "/usr/local/bin"
    executable: str  # "/usr/bin/python3.11"

    @property
    def key(self) -> str:
        return f"cp{self.python.replace('.', '')}-{self.platforms[0]}-{self.site_packages}-{self.executable}"


class WheelCache:
    """Wheels by sha256, fetched with pip for the target (not the host), checked on the way in."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path_for(self, digest: str) -> Path | None:
        folder = self.root / digest
        found = sorted(folder.glob("*.whl")) if folder.is_dir() else []
        return found[0] if found else None

    def fetch(self, locked: list[Locked], target: Target, index_args: Iterable[str] = ()) -> dict[str, Path]:
        """The wheel file of every locked requirement, downloading only what is not cached."""
        found: dict[str, Path] = {}
        missing: list[Locked] = []
        for req in locked:
            cached = next((p for p in map(self.path_for, req.hashes) if p is not None), None)
            if cached is None:
                missing.append(req)
            else:
                found[req.name] = cached
        if missing:
            found.update(self._download(missing, target, list(index_args)))
        return found

    def _download(self, missing: list[Locked], target: Target, index_args: list[str]) -> dict[str, Path]:
        self.root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self.root, prefix=".download.") as tmp:
            req_file = Path(tmp) / "requirements.txt"
            req_file.write_text(
                "".join(
                    f"{r.name}=={r.version} " + " ".join(f"--hash=sha256:{h}" for h in r.hashes) + "\n"
                    for r in missing
                )
            )
            argv = download_argv(
                target.python,
                [arg for platform in target.platforms for arg in ("--platform", platform)],
                index_args,
                str(Path(tmp) / "wheels"),
                str(req_file),
            )
            done = tools.run(argv, executable=[sys.executable, "-m", "pip"], check=False, timeout=1800)
            if done.returncode != 0:
                raise WheelError(
                    *_explain_download_failure(done.stderr, target),
                    argv=done.argv,
                    returncode=done.returncode,
                    stderr_tail=done.stderr.strip()[-1500:],
                )
            out: dict[str, Path] = {}
            wanted = {h: r for r in missing for h in r.hashes}
            for wheel in sorted((Path(tmp) / "wheels").glob("*.whl")):
                digest = _sha256_file(wheel)
                req = wanted.get(digest)
                if req is None:  # pip checked hashes already; this is belt and braces
                    raise WheelError(f"{wheel.name} matches no hash in the lock")
                folder = self.root / digest
                folder.mkdir(exist_ok=True)
                wheel.replace(folder / wheel.name)
                out[req.name] = folder / wheel.name
        return out


def download_argv(
    python: str, platforms: list[str], index_args: list[str], dest: str, requirements: str
) -> list[str]:
    """``pip download`` of hashed wheels for another Python and platform (argv[0] "pip": it runs as
    this Python's ``-m pip``); a plan passes placeholders."""
    return [
        "pip",
        "download",
        "--quiet",
        "--no-deps",
        "--only-binary=:all:",
        "--require-hashes",
        "--python-version",
        python,
        "--implementation",
        "cp",
        "--abi",
        f"cp{python.replace('.', '')}" if not python.startswith("<") else "<cp abi>",
        "--dest",
        dest,
        *platforms,
        *index_args,
        "-r",
        requirements,
    ]


def _explain_download_failure(stderr: str, target: Target) -> tuple[str, str]:
    match = re.search(r"No matching distribution found for ([^\s]+)", stderr)
    if match:
        return (
            f"no wheel of {match.group(1)} for Python {target.python} on {target.platforms[0]}",
            "pick a version that publishes a wheel for this platform, or build one into your index",
        )
    if "THESE PACKAGES DO NOT MATCH THE HASHES" in stderr:
        return (
            "a downloaded wheel does not match the lock's hash",
            "regenerate the lock: `tfgov-ci run lock`",
        )
    return ("could not download the locked wheels", "check the package index and the network")


def _sha256_file(path: Path) -> str:
    sha = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            sha.update(chunk)
    return sha.hexdigest()


# --- installing a wheel into a layer ---------------------------------------------------------------

_SCRIPT = """#!{executable}
# -*- coding: utf-8 -*-
import re
import sys
from {module} import {import_name}
if __name__ == "__main__":
    sys.argv[0] = re.sub(r"(-script\\.pyw|\\.exe)?$", "", sys.argv[0])
    sys.exit({call}())
"""


@dataclass(frozen=True)
class Installed:
    name: str
    version: str
    files: int


class _RecordCheck:
    """Wraps a wheel member so its bytes are hashed as they stream, and checked at the end."""

    def __init__(self, handle: IO[bytes], expected: str | None, member: str, wheel: str) -> None:
        self.handle, self.expected, self.member, self.wheel = handle, expected, member, wheel
        self.sha = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self.handle.read(size)
        self.sha.update(data)
        return data

    def __enter__(self) -> _RecordCheck:
        return self

    def __exit__(self, *exc: object) -> None:
        self.handle.close()
        if exc[0] is None and self.expected is not None:
            actual = "sha256=" + base64.urlsafe_b64encode(self.sha.digest()).rstrip(b"=").decode()
            if actual != self.expected:
                raise WheelError(
                    f"{self.wheel}: {self.member} does not match the wheel's RECORD",
                    "the wheel is corrupted; clear the wheel cache",
                )


def install_into(builder: LayerBuilder, wheel: Path, target: Target) -> Installed:
    """Add a wheel's files to ``builder`` as an installation at ``target`` (PEP 427/491)."""
    archive = zipfile.ZipFile(wheel)
    names = archive.namelist()
    dist_info = next((n.split("/")[0] for n in names if n.split("/")[0].endswith(".dist-info")), None)
    if dist_info is None:
        raise WheelError(f"{wheel.name} has no .dist-info folder", "the wheel is malformed")
    data_dir = dist_info.removesuffix(".dist-info") + ".data"
    name, version = dist_info.removesuffix(".dist-info").rsplit("-", 1)
    record = _read_record(archive, f"{dist_info}/RECORD")
    site = PurePosixPath(target.site_packages)
    prefix = PurePosixPath(target.scripts_dir).parent  # /usr/local
    installed_paths: list[str] = []
    count = 0
    for info in archive.infolist():
        member = info.filename
        if member.endswith("/") or member == f"{dist_info}/RECORD":
            continue
        parts = PurePosixPath(member).parts
        mode = 0o755 if (info.external_attr >> 16) & 0o111 else 0o644
        if parts[0] == data_dir:
            scheme, rest = parts[1], PurePosixPath(*parts[2:])
            destinations = {
                "purelib": site,
                "platlib": site,
                "scripts": PurePosixPath(target.scripts_dir),
                "data": prefix,
                "headers": prefix / "include" / "python" / name,
            }
            if scheme not in destinations:
                raise WheelError(f"{wheel.name}: unknown data scheme {scheme!r}")
            destination = destinations[scheme] / rest
            if scheme == "scripts":
                body = archive.read(member)
                if body.startswith(b"#!python"):  # PEP 427: point it at the image's interpreter
                    first, _, tail = body.partition(b"\n")
                    body = b"#!" + target.executable.encode() + first[len(b"#!python") :] + b"\n" + tail
                builder.add_bytes(str(destination), body, 0o755)
                installed_paths.append(str(destination))
                count += 1
                continue
        else:
            destination = site / member
        expected = record.get(member)

        def opener(m: str = member, e: str | None = expected) -> IO[bytes]:
            return _RecordCheck(archive.open(m), e, m, wheel.name)  # type: ignore[return-value]

        builder.add_file(str(destination), opener, info.file_size, mode)
        installed_paths.append(str(destination))
        count += 1
    for script_name, (module, attr) in _console_scripts(archive, dist_info).items():
        body = _SCRIPT.format(
            executable=target.executable, module=module, import_name=attr.split(".")[0], call=attr
        ).encode()
        path = PurePosixPath(target.scripts_dir) / script_name
        builder.add_bytes(str(path), body, 0o755)
        installed_paths.append(str(path))
        count += 1
    builder.add_bytes(str(site / dist_info / "INSTALLER"), INSTALLER.encode())
    installed_paths.append(str(site / dist_info / "INSTALLER"))
    builder.add_bytes(
        str(site / dist_info / "RECORD"), _record_text(installed_paths, site, dist_info, record, names)
    )
    return Installed(normalise_name(name), version, count + 2)


def _read_record(archive: zipfile.ZipFile, path: str) -> dict[str, str]:
    try:
        text = archive.read(path).decode()
    except KeyError:
        return {}
    return {row[0]: row[1] for row in csv.reader(io.StringIO(text)) if len(row) >= 2 and row[1]}


def _console_scripts(archive: zipfile.ZipFile, dist_info: str) -> dict[str, tuple[str, str]]:
    try:
        text = archive.read(f"{dist_info}/entry_points.txt").decode()
    except KeyError:
        return {}
    scripts: dict[str, tuple[str, str]] = {}
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("["):
            section = line.strip("[]").strip()
        elif section == "console_scripts" and "=" in line:
            name, _, spec = line.partition("=")
            module, _, attr = spec.split("[")[0].strip().partition(":")
            scripts[name.strip()] = (module.strip(), attr.strip() or "main")
    return dict(sorted(scripts.items()))


def _record_text(
    paths: list[str], site: PurePosixPath, dist_info: str, record: dict[str, str], members: list[str]
) -> bytes:
    """RECORD as installed: paths relative to site-packages, hashes from the wheel where unchanged."""
    import os

    by_destination = {str(site / m): record.get(m, "") for m in members}
    rows = []
    for path in sorted(paths):
        rel = os.path.relpath(path, str(site))
        rows.append(f"{rel},{by_destination.get(path, '')},")
    rows.append(f"{dist_info}/RECORD,,")
    return ("\n".join(rows) + "\n").encode()
