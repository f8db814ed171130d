"""verify's judgement of a provenance it has already checked the signature of (the real cosign runs
in tests/integration/test_sign.py; these are the rules on the decoded predicate)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tfgov_ci.errors import ConfigError
from tfgov_ci.predicates import BUILD_TYPE
from tfgov_ci.stages.sign.verify import (
    TRUSTED_BUILDERS,
    Check,
    Expected,
    Trust,
    Verdict,
    cosign_argv,
    provenance_checks,
)


def provenance(**external: Any) -> dict[str, Any]:
    return {
        "buildDefinition": {
            "buildType": BUILD_TYPE,
            "externalParameters": {
                "repository": "https://gitlab.example.com/ml/hello.git",
                "ref": "refs/heads/main",
                "commit": "a" * 40,
                "config": {"path": "tfgov.yaml", "digest": "sha256:" + "b" * 64},
                "pipeline": "tf-image",
                **external,
            },
            "resolvedDependencies": [
                {
                    "uri": "git+https://gitlab.example.com/ml/hello.git@refs/heads/main",
                    "digest": {"gitCommit": "a" * 40},
                },
                {
                    "uri": "docker://harbor.example.com/platform/tf-base@sha256:" + "c" * 64,
                    "name": "base image",
                },
            ],
        },
        "runDetails": {"builder": {"id": TRUSTED_BUILDERS[0]}},
    }


def failed(checks: list[Any]) -> dict[str, str]:
    return {c.name: c.reason for c in checks if not c.passed}


def test_a_provenance_that_matches_every_expectation_passes() -> None:
    expected = Expected(
        repository="https://gitlab.example.com/ml/hello.git",
        commit="a" * 40,
        branch="main",
        config="tfgov.yaml",
        bases=("harbor.example.com/platform/tf-base",),
    )
    checks = provenance_checks(provenance(), expected)
    assert failed(checks) == {}
    assert {c.name for c in checks} >= {"build type", "builder", "external parameters", "commit", "base"}


def test_an_unknown_external_parameter_fails_as_slsa_verification_says() -> None:
    checks = provenance_checks(provenance(debug_mode=True), Expected())
    assert failed(checks) == {"external parameters": "unknown external parameter(s): debug_mode"}


def test_another_branch_an_untrusted_builder_and_a_base_off_the_allowlist_each_fail() -> None:
    predicate = provenance(ref="refs/heads/feature")
    predicate["runDetails"]["builder"]["id"] = "https://evil.example.com/builder"
    checks = provenance_checks(
        predicate, Expected(branch="main", bases=("harbor.example.com/platform/other",))
    )
    assert failed(checks) == {
        "builder": "https://evil.example.com/builder is not a trusted builder",
        "branch": "'refs/heads/feature', expected 'refs/heads/main'",
        "base": "harbor.example.com/platform/tf-base is not allowed",
    }


def test_keyless_verification_passes_the_identity_and_issuer_to_cosign() -> None:
    """No Fulcio can run here: only the argv that a keyless verify hands cosign is checked."""
    keyless = Trust(identity="https://gitlab.example.com/ml/hello//.gitlab-ci.yml@refs/heads/main",
                    issuer="https://gitlab.example.com")  # fmt: skip
    argv = cosign_argv("verify", keyless, "harbor.example.com/ml/hello@sha256:" + "a" * 64, tls_verify=True)
    assert argv == [
        "cosign",
        "verify",
        "--certificate-identity",
        "https://gitlab.example.com/ml/hello//.gitlab-ci.yml@refs/heads/main",
        "--certificate-oidc-issuer",
        "https://gitlab.example.com",
        "harbor.example.com/ml/hello@sha256:" + "a" * 64,
    ]  # the public Sigstore's root through TUF, and its transparency log checked
    private = Trust(
        identity="ci@example.com", issuer="https://gitlab.example.com", trusted_root="/etc/root.json"
    )
    assert private.cosign_args()[-2:] == ["--trusted-root", "/etc/root.json"]
    # A key alone: no transparency log (what the sign stage makes by default, air-gapped).
    key = cosign_argv("verify-attestation", Trust(key="/k.pub"), "reg/x@sha256:1", tls_verify=False,
                      extra=("--type", "https://slsa.dev/provenance/v1"))  # fmt: skip
    assert key[2:6] == ["--key", "/k.pub", "--insecure-ignore-tlog", "--allow-insecure-registry"]
    assert key[-3:] == ["--type", "https://slsa.dev/provenance/v1", "reg/x@sha256:1"]
    for wrong in ({}, {"key": "/k.pub", "identity": "x", "issuer": "y"}, {"identity": "x"}):
        with pytest.raises(ValueError, match="exactly one"):
            Trust(**wrong)


def test_team_rules_read_the_attested_documents_and_fail_closed(tmp_path: Path) -> None:
    """--policy: the team's Rego v1 rules over what was verified, with the real regopy engine."""
    from tfgov_ci.commands.verify import policy_input, team_checks
    from tfgov_ci.predicates import SBOM_PREDICATE, SLSA_PROVENANCE
    from tfgov_ci.stages.policy.interface import team_modules

    (tmp_path / "small.rego").write_text(
        "package tfgov.rules.small\nimport rego.v1\n"
        "deny contains msg if { input.sbom.packages > 100; "
        'msg := sprintf("%d packages", [input.sbom.packages]) }\n'
    )
    (tmp_path / "main_only.rego").write_text(
        "package tfgov.rules.main_only\nimport rego.v1\n"
        'deny contains "not built from main" if { '
        'input.provenance.buildDefinition.externalParameters.ref != "refs/heads/main" }\n'
    )
    modules = team_modules([tmp_path])
    verdict = Verdict(
        "reg/ml/hello:v1",
        "sha256:" + "d" * 64,
        "bundles (referrers tag fallback)",
        (Check("signature", True, "signed"),),
        {SLSA_PROVENANCE: provenance(), SBOM_PREDICATE: {"packages": 250}},
    )
    assert policy_input(verdict)["image"] == {"name": "reg/ml/hello:v1", "digest": "sha256:" + "d" * 64}
    checks = {c.name: c for c in team_checks(modules, verdict)}
    assert checks["rule main_only"].passed
    assert not checks["rule small"].passed and checks["rule small"].reason == "250 packages"
    assert not verdict.adding(list(checks.values())).allowed
    # A v0 file is refused before anything runs, with its line: it would never deny.
    (tmp_path / "v0.rego").write_text('package tfgov.rules.v0\ndeny[msg] { msg := "x" }\n')
    with pytest.raises(ConfigError, match="Rego v1"):
        team_modules([tmp_path])
