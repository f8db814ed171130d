"""How the sign stage reads a registry's refusal in cosign's stderr: by whole words, because the
digests cosign names in the same message are hex and hold "412" or "403" often enough."""

from __future__ import annotations

import pytest

from tfgov_ci import tools
from tfgov_ci.stages.sign.cosign import _failure

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
    assert says in str(_failure(failed(stderr), "sign", "r"))
