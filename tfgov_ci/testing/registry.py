"""A throwaway local OCI registry (CNCF distribution, Debian's ``docker-registry``) for tests and
demos: plain HTTP, htpasswd (bcrypt) auth, or TLS with a self-signed CA; 127.0.0.1 only.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from tfgov_ci.errors import ToolError


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class LocalRegistry:
    """``with LocalRegistry() as reg: reg.host`` -> "127.0.0.1:PORT"."""

    user: str | None = None
    password: str | None = None
    tls: bool = False
    root: Path | None = None
    access_log: bool = False  # log each request, for :meth:`requests`

    def __post_init__(self) -> None:
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.ca_file: Path | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> LocalRegistry:
        binary = shutil.which("docker-registry")
        if binary is None:
            raise ToolError("docker-registry is not installed", "apt-get install -y docker-registry")
        self._tmp = tempfile.TemporaryDirectory(prefix="tfgov-registry.")
        base = Path(self._tmp.name)
        data = self.root or base / "data"
        self.port = free_port()
        lines = [
            "version: 0.1",
            f"log: {{level: error, accesslog: {{disabled: {str(not self.access_log).lower()}}}}}",
            f"storage: {{filesystem: {{rootdirectory: {data}}}, delete: {{enabled: true}}}}",
            "http:",
            f"  addr: {self.host}",
        ]
        if self.tls:
            self.ca_file = self._certificate(base)
            lines.append(f"  tls: {{certificate: {base / 'server.crt'}, key: {base / 'server.key'}}}")
        if self.user and self.password:
            htpasswd = subprocess.run(
                ["htpasswd", "-Bbn", self.user, self.password], check=True, capture_output=True, text=True
            ).stdout
            (base / "htpasswd").write_text(htpasswd)
            lines.append(f"auth: {{htpasswd: {{realm: tfgov-test, path: {base / 'htpasswd'}}}}}")
        (base / "config.yml").write_text("\n".join(lines) + "\n")
        self._serve()
        return self

    def _serve(self) -> None:
        assert self._tmp is not None
        log = self.log.open("ab")
        binary = shutil.which("docker-registry") or "docker-registry"
        config = Path(self._tmp.name) / "config.yml"
        self.process = subprocess.Popen([binary, "serve", str(config)], stdout=log, stderr=log)
        self._wait(self.log)

    @property
    def log(self) -> Path:
        assert self._tmp is not None
        return Path(self._tmp.name) / "registry.log"

    def requests(self, since: int = 0) -> list[tuple[str, str]]:
        """(method, path) of each request logged after byte ``since`` of :attr:`log`, in order
        (with ``access_log``: distribution logs each in the combined log format)."""
        with self.log.open("rb") as handle:
            handle.seek(since)
            text = handle.read().decode(errors="replace")
        return re.findall(r'"([A-Z]+) (\S+) HTTP/[0-9.]+"', text)

    def restart(self) -> None:
        """Start again on the same port with the same storage (after :meth:`stop`)."""
        self.stop()
        self._serve()

    @property
    def storage(self) -> Path:
        assert self._tmp is not None
        return self.root or Path(self._tmp.name) / "data"

    def _wait(self, log: Path) -> None:
        scheme = "https" if self.tls else "http"
        deadline = time.monotonic() + 20
        import ssl

        context = ssl.create_default_context(cafile=str(self.ca_file)) if self.ca_file else None
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise ToolError("docker-registry exited at start", stderr_tail=log.read_text()[-1000:])
            try:
                urllib.request.urlopen(f"{scheme}://{self.host}/v2/", timeout=1, context=context)
                return
            except urllib.error.HTTPError:  # 401: up, and asking for credentials
                return
            except OSError:
                time.sleep(0.1)
        raise ToolError(f"docker-registry did not answer on {self.host} within 20 s")

    @staticmethod
    def _certificate(base: Path) -> Path:
        """A CA and a server certificate for IP 127.0.0.1 signed by it."""

        def openssl(*args: str) -> None:
            subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=base)

        openssl(
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "2",
            "-subj",
            "/CN=tfgov-test-ca",
        )
        openssl(
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        )
        (base / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
        openssl(
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "2",
            "-extfile",
            "san.ext",
        )
        return base / "ca.crt"

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def close(self) -> None:
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self) -> LocalRegistry:
        return self.start()

    def __exit__(
        self, *exc: tuple[type[BaseException] | None, BaseException | None, TracebackType | None]
    ) -> None:
        self.close()
