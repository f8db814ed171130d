"""A private, throwaway Docker Engine for tests and benchmarks, started the safe way for a shared
machine: its own data, exec root and socket, no bridge, no NAT rules, no iptables changes."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

from tfgov_ci.errors import ToolError

# Containers may not ask for more open files than the machine's hard limit (20000 here);
# dockerd's own default would make every RUN step fail with "error setting rlimit type 7".
NOFILE = "nofile=20000:20000"


class LocalDockerd:
    """``with LocalDockerd() as engine: engine.host`` -> ``unix:///tmp/tfgov-dockerd.../docker.sock``."""

    def __init__(self) -> None:
        # a short path: a unix socket path is limited to about 100 bytes
        self.root = Path(tempfile.mkdtemp(prefix="tfgov-dockerd.", dir="/tmp"))
        self.socket = self.root / "docker.sock"
        self.host = f"unix://{self.socket}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> LocalDockerd:
        if shutil.which("dockerd") is None:
            raise ToolError("dockerd is not installed", "apt-get install -y docker.io")
        log = (self.root / "dockerd.log").open("wb")
        self.process = subprocess.Popen(
            [
                "dockerd",
                "--data-root",
                str(self.root / "data"),
                "--exec-root",
                str(self.root / "exec"),
                "-H",
                self.host,
                "--pidfile",
                str(self.root / "docker.pid"),
                "--storage-driver",
                "overlay2",
                "--bridge=none",
                "--iptables=false",
                "--ip-masq=false",
                "--ip6tables=false",
                "--default-ulimit",
                NOFILE,
            ],
            stdout=log,
            stderr=log,
        )
        deadline = time.monotonic() + 60
        while not self.socket.exists() and self.process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        if not self.socket.exists():
            self.close()
            raise ToolError(
                "dockerd did not start", stderr_tail=(self.root / "dockerd.log").read_text()[-2000:]
            )
        return self

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for mount in ("exec/netns/default", "data"):  # what dockerd leaves mounted
            subprocess.run(["umount", "-R", str(self.root / mount)], check=False, capture_output=True)
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> LocalDockerd:
        return self.start()

    def __exit__(
        self, *exc: tuple[type[BaseException] | None, BaseException | None, TracebackType | None]
    ) -> None:
        self.close()
