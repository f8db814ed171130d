"""How the sign stage reads a registry's refusal in cosign's stderr: by whole words, because the
digests cosign names in the same message are hex and hold "412" or "403" often enough."""

from __future__ import annotations

import pytest

from tfgov_ci import tools
from tfgov_ci.oci import referrers
from tfgov_ci.stages.sign.cosign import _failure, _stored

# The referrers tag of a digest holding both "412" and "403" inside its hex (CI met the first).
DIGEST = "sha256-86dd87c93053f93f92eab62d153d0338093e84122a5901eb58d48b0403011737"


def failed(stderr: str) -> tools.Completed:
    return tools.Completed(("cosign", "sign"), 1, "", stderr)


@pytest.mark.parametrize(
    ("stderr", "says"),
    [
        (
            f"PUT https://r/v2/ml/hello/manifests/{DIGEST}: DENIED: requested access to the resource",
            "refused to store the signature or an attestation (sign): access denied",
        ),
        (
            f"PUT https://r/v2/ml/hello/manifests/{DIGEST}: unexpected status code 412 Precondition Failed",
            "a tag immutability rule covers it",
        ),
        (f"PUT https://r/v2/ml/hello/manifests/{DIGEST}: MANIFEST_INVALID", "cosign failed (sign)"),
    ],
)
def test_a_refusal_is_named_by_its_words_not_by_digits_inside_a_digest(stderr: str, says: str) -> None:
    assert len(DIGEST) == 7 + 64 and "412" in DIGEST and "403" in DIGEST
    # the legacy format: cosign writes the tags itself
    assert says in str(_failure(failed(stderr), "sign", "r", _stored("sign")))


def test_a_bundle_making_cosign_only_reads_so_its_refusal_is_a_read_s() -> None:
    """cosign makes the bundles without uploading them: a 403 then is the registry refusing a read
    of the image, not a store; tfgov-ci's own pushes say the refusals of a store."""
    denied = failed(f"GET https://r/v2/ml/hello/manifests/{DIGEST}: DENIED: requested access to the resource")
    error = _failure(denied, "sign", "r", None)
    assert error.message == "authentication to r failed (cosign reading the image: sign)"
    assert "refused to store" not in str(error)
    assert str(_failure(failed(f"MANIFEST_INVALID {DIGEST}"), "sign", "r", None)).startswith("cosign failed")


@pytest.mark.parametrize(
    "stderr",
    [  # a GCP KMS key the CI's account may not use; an expired OIDC token; no URL of the registry
        "Error: signing [r/ml/hello@sha256:abc]: getting signer: rpc error: code = PermissionDenied",
        "signing: rpc error: code = PermissionDenied desc = Permission "
        "'cloudkms.cryptoKeyVersions.useToSign' "
        "denied on resource",
        "getting signer: POST https://fulcio.corp.example/api/v2/signingCert: 401 Unauthorized",
        "Error: signing [r/ml/hello@sha256:abc]: unexpected status code 403 Forbidden",
    ],
)
def test_a_refusal_that_names_no_registry_url_is_not_called_the_registry_s(stderr: str) -> None:
    """A KMS's or a Fulcio's refusal is not a registry login to check: only a line naming the
    registry's URL with the refusal is said to be the registry's."""
    error = _failure(failed(stderr), "sign", "r", None)
    assert error.message == "cosign failed (sign)" and "TFGOV_REGISTRY_USER" not in str(error)


def test_the_record_stage_s_refusal_says_the_tags_stand_and_to_run_record_again() -> None:
    """The record stage stores its bundle after publish has tagged the image: its refusal must not
    say "nothing was tagged" nor send the user back to sign."""
    immutable = f"PUT https://r/v2/ml/hello/manifests/{DIGEST}: 412 Precondition Failed"
    said = referrers.refusal(immutable, "r", "storing the bundles", _stored("record"))
    assert said is not None
    message, hint = said
    assert "a tag immutability rule covers it" in message
    stand = "the tags publish set stand, the record stage's attestation is not stored: run record again"
    assert hint.endswith(stand)
    assert "nothing was tagged" not in hint and "run sign" not in hint
    sign = referrers.refusal(immutable, "r", "storing the bundles", _stored("sign"))
    assert sign is not None and sign[1].endswith("nothing was tagged, run sign again")


@pytest.mark.parametrize(
    "stderr",
    [  # Harbor's token service on the registry's host; GitLab's on another host
        "GET https://r/service/token?scope=repository%3aml%2fhello%3apull&service=harbor-registry: "
        "UNAUTHORIZED: unauthorized to access repository",
        "GET https://gitlab.corp.example/jwt/auth?scope=repository%3Aml%2Fhello%3Apull: 401 Unauthorized",
    ],
)
def test_a_wrong_password_refused_by_the_token_server_is_an_authentication_failure(stderr: str) -> None:
    assert _failure(failed(stderr), "sign", "r", None).message.startswith("authentication to r failed")


def test_the_legacy_format_says_a_kms_refusal_is_cosign_s_and_a_registry_s_is_the_registry_s() -> None:
    """cosign stores the legacy tags itself: its refusals come through :func:`referrers.refusal`,
    which takes a denial for the registry's only when the line names the registry."""
    kms = "Error: signing [r/ml/hello@sha256:abc]: getting signer: rpc error: code = PermissionDenied"
    assert str(_failure(failed(kms), "sign", "r", _stored("sign"))).startswith("cosign failed (sign)")
    skopeo = f"writing manifest: uploading manifest {DIGEST} to r/ml/hello: denied: requested access"
    assert referrers.refusal(skopeo, "r", "storing the bundles", _stored("sign")) is not None
