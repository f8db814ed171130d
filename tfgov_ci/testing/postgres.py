"""A throwaway PostgreSQL cluster on 127.0.0.1 for tests and benchmarks (Debian's ``postgresql``).

``initdb`` and the server refuse to run as root, so as root (CI) the cluster belongs to ``nobody``
and its commands run through ``runuser``; otherwise as the current user. The server listens on a
free loopback port and a socket in its own folder, with password authentication, and is stopped
(``pg_ctl stop -m immediate``) and deleted on exit.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType

from tfgov_ci.errors import ToolError

USER = "tfgov"
PASSWORD = "pg-s3cret-password"
DATABASE = "inventory"


def bin_dir() -> Path | None:
    """Debian's server binaries (/usr/lib/postgresql/<major>/bin), which are not on PATH."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    return Path(found[-1]).parent if found else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class LocalPostgres:
    """``with LocalPostgres() as pg: pg.url`` -> ``postgresql://tfgov:...@127.0.0.1:PORT/inventory``."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="tfgov-pg.", dir="/tmp"))
        self.data = self.root / "data"
        self.port = _free_port()
        self.url = f"postgresql://{USER}:{PASSWORD}@127.0.0.1:{self.port}/{DATABASE}"
        self._as: list[str] = []
        self._bin = bin_dir()

    def _run(self, *argv: str, env: dict[str, str] | None = None) -> None:
        assert self._bin is not None
        done = subprocess.run(
            [*self._as, str(self._bin / argv[0]), *argv[1:]],
            capture_output=True,
            text=True,
            check=False,
            env={**os.environ, **(env or {})},
            cwd=self.root,
        )
        if done.returncode != 0:
            raise ToolError(
                f"{argv[0]} failed", argv=argv, returncode=done.returncode, stderr_tail=done.stderr
            )

    def start(self) -> LocalPostgres:
        if self._bin is None:
            raise ToolError("the PostgreSQL server is not installed", "apt-get install -y postgresql")
        if os.geteuid() == 0:
            self._as = ["runuser", "-u", "nobody", "--"]
            shutil.chown(self.root, "nobody")
        password_file = self.root / "password"
        password_file.write_text(PASSWORD + "\n")
        if os.geteuid() == 0:
            shutil.chown(password_file, "nobody")
        self._run(
            "initdb", "-D", str(self.data), "-U", USER, "--pwfile", str(password_file),
            "-A", "scram-sha-256", "--no-sync", "-E", "UTF8",
        )  # fmt: skip
        options = f"-k {self.root} -p {self.port} -h 127.0.0.1 -c fsync=off -c full_page_writes=off"
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.root / "log"), "-w", "start")
        self._run(
            "createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", USER, DATABASE,
            env={"PGPASSWORD": PASSWORD},
        )  # fmt: skip
        return self

    def close(self) -> None:
        if self.data.is_dir() and (self.data / "postmaster.pid").exists():
            with contextlib.suppress(ToolError):  # already gone: nothing to stop
                self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> LocalPostgres:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
