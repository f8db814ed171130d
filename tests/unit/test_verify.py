"""verify's judgement of a provenance it has already checked the signature of (the real cosign runs
in tests/integration/test_sign.py; these are the rules on the decoded predicate)."""

from __future__ import annotations

from typing import Any

from tfgov_ci.stages.sign.interface import BUILD_TYPE
from tfgov_ci.stages.sign.verify import TRUSTED_BUILDERS, Expected, provenance_checks


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
