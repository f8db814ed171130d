"""How tfgov-ci reaches a registry through skopeo: TLS, credentials, retries.

Credentials come from the environment (``TFGOV_REGISTRY_USER``/``TFGOV_REGISTRY_PASSWORD``, or
GitLab's ``CI_REGISTRY_USER``/``CI_REGISTRY_PASSWORD`` for ``CI_REGISTRY``) or from the usual
auth files skopeo reads itself (``REGISTRY_AUTH_FILE``, containers' auth.json, docker's
config.json), never from tfgov.yaml. They reach skopeo in a private auth file (mode 0600,
deleted afterwards), never on a command line, and every log line is redacted.
TLS: a custom CA through ``registries.<host>.ca_file``; no verification (which also allows plain
HTTP) only for loopback hosts or where ``registries.<host>.insecure: true`` says so, loudly.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RETRY_TIMES = 3


def is_loopback(host: str) -> bool:
    name = host.rsplit(":", 1)[0] if not host.startswith("[") else host[1 : host.index("]")]
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Access:
    """What skopeo needs to talk to one registry host."""

    host: str
    tls_verify: bool
    ca_file: Path | None
    user: str | None
    password: str | None = None
    warning: str | None = None

    @property
    def secrets(self) -> tuple[str, ...]:
        if not self.password:
            return ()
        basic = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        return (self.password, basic)

    @contextmanager
    def skopeo_args(self, side: str) -> Iterator[list[str]]:
        """Options for one side of a skopeo command: side is "src", "dest" or "" (inspect)."""
        dash = f"--{side}-" if side else "--"
        with tempfile.TemporaryDirectory(prefix="tfgov-registry.") as tmp:
            args = [f"{dash}tls-verify={'true' if self.tls_verify else 'false'}"]
            if self.ca_file is not None:
                certs = Path(tmp) / "certs"
                certs.mkdir()
                shutil.copyfile(self.ca_file, certs / "ca.crt")
                args.append(f"{dash}cert-dir={certs}")
            if self.user and self.password:
                authfile = Path(tmp) / "auth.json"
                fd = os.open(authfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                token = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
                with os.fdopen(fd, "w") as handle:
                    json.dump({"auths": {self.host: {"auth": token}}}, handle)
                args.append(f"{dash}authfile={authfile}")
            yield args


def access(host: str, settings: Mapping[str, Mapping[str, Any]], env: Mapping[str, str]) -> Access:
    """The access for ``host`` from tfgov.yaml's ``registries`` and the environment."""
    entry = settings.get(host, {})
    ca_file = Path(entry["ca_file"]) if entry.get("ca_file") else None
    insecure = bool(entry.get("insecure", False))
    warning = None
    if insecure and not is_loopback(host):
        warning = f"registry {host}: TLS verification is OFF (registries.{host}.insecure: true)"
    tls_verify = ca_file is not None or not (insecure or is_loopback(host))
    user = password = None
    if env.get("TFGOV_REGISTRY_USER") and env.get("TFGOV_REGISTRY_PASSWORD"):
        user, password = env["TFGOV_REGISTRY_USER"], env["TFGOV_REGISTRY_PASSWORD"]
    elif env.get("CI_REGISTRY") == host and env.get("CI_REGISTRY_USER") and env.get("CI_REGISTRY_PASSWORD"):
        user, password = env["CI_REGISTRY_USER"], env["CI_REGISTRY_PASSWORD"]
    return Access(host, tls_verify, ca_file, user, password, warning)


def explain(stderr: str, host: str) -> tuple[str, str]:
    """A skopeo failure against ``host`` as (message, hint): authentication, reachability, TLS."""
    text = stderr.lower()
    if "unauthorized" in text or "authentication required" in text or "denied" in text:
        return (
            f"authentication to {host} failed",
            "check TFGOV_REGISTRY_USER / TFGOV_REGISTRY_PASSWORD (or your auth file)",
        )
    if "connection refused" in text or "no such host" in text or "i/o timeout" in text:
        return (f"registry {host} is unreachable", "is it running, and is the host:port right?")
    if "certificate" in text or "x509" in text or "tls" in text:
        return (f"TLS to {host} failed", f"set registries.{host}.ca_file to the registry's CA")
    return (f"skopeo failed against {host}", "see the end of skopeo's output above")
