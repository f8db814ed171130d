"""How a registry is reached: TLS by default, plain HTTP only on loopback or when said loudly."""

from __future__ import annotations

import json
from pathlib import Path

from tfgov_ci.oci.registry import access, is_loopback


def test_loopback_hosts() -> None:
    assert is_loopback("127.0.0.1:5000") and is_loopback("localhost:5000") and is_loopback("[::1]:5000")
    assert not is_loopback("registry.example.com") and not is_loopback("10.0.0.1:5000")


def test_remote_registries_verify_tls_and_insecure_is_loud() -> None:
    assert access("harbor.corp.example", {}, {}).tls_verify is True
    unsafe = access("harbor.corp.example", {"harbor.corp.example": {"insecure": True}}, {})
    assert unsafe.tls_verify is False
    assert unsafe.warning and "TLS verification is OFF" in unsafe.warning
    assert access("127.0.0.1:5000", {}, {}).tls_verify is False
    assert access("127.0.0.1:5000", {}, {}).warning is None


def test_a_custom_ca_turns_verification_on_even_for_loopback(tmp_path: Path) -> None:
    ca = tmp_path / "ca.crt"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    reg = access("127.0.0.1:5000", {"127.0.0.1:5000": {"ca_file": str(ca)}}, {})
    assert reg.tls_verify is True
    with reg.skopeo_args("dest") as args:
        assert args[0] == "--dest-tls-verify=true"
        cert_dir = Path(args[1].split("=", 1)[1])
        assert (cert_dir / "ca.crt").read_text() == ca.read_text()


def test_credentials_come_from_the_environment_into_a_private_auth_file() -> None:
    env = {"TFGOV_REGISTRY_USER": "bot", "TFGOV_REGISTRY_PASSWORD": "pw-1"}
    reg = access("harbor.corp.example", {}, env)
    assert "pw-1" in reg.secrets
    with reg.skopeo_args("") as args:
        assert not any("pw-1" in arg for arg in args)
        authfile = Path(next(a for a in args if a.startswith("--authfile=")).split("=", 1)[1])
        assert authfile.stat().st_mode & 0o777 == 0o600
        assert "harbor.corp.example" in json.loads(authfile.read_text())["auths"]
    assert not authfile.exists()  # gone after use


def test_gitlab_registry_credentials_apply_to_the_gitlab_registry_only() -> None:
    env = {
        "CI_REGISTRY": "registry.gitlab.example",
        "CI_REGISTRY_USER": "gitlab-ci-token",
        "CI_REGISTRY_PASSWORD": "job-token",
    }
    assert access("registry.gitlab.example", {}, env).user == "gitlab-ci-token"
    assert access("harbor.corp.example", {}, env).user is None
