"""The in-process check of a DSSE envelope, on envelopes signed here with a fresh P-256 key (the
kind `cosign generate-key-pair` makes). tests/integration/test_sign.py checks the bundles the real
cosign writes to a real registry, and that cosign itself accepts the same evidence."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from tfgov_ci.stages.sign import bundles

STATEMENT = {"_type": "https://in-toto.io/Statement/v1", "predicateType": "https://example.com/p/v1",
             "subject": [{"digest": {"sha256": "a" * 64}}], "predicate": {"allow": True}}  # fmt: skip


def sign(
    key: ec.EllipticCurvePrivateKey, payload: bytes, payload_type: str = bundles.IN_TOTO
) -> dict[str, Any]:
    signature = key.sign(bundles.pae(payload_type, payload), ec.ECDSA(hashes.SHA256()))
    return {
        "mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
        "dsseEnvelope": {
            "payload": base64.b64encode(payload).decode(),
            "payloadType": payload_type,
            "signatures": [{"sig": base64.b64encode(signature).decode()}],
        },
    }


def test_pae_is_dsse_s_encoding() -> None:
    # the example of DSSE's protocol.md
    assert bundles.pae("http://example.com/HelloWorld", b"hello world") == (
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )


def test_a_statement_counts_only_when_its_signature_verifies_with_the_key() -> None:
    key, other = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    payload = json.dumps(STATEMENT).encode()
    assert bundles.statement(sign(key, payload), key.public_key()) == STATEMENT
    assert bundles.statement(sign(other, payload), key.public_key()) is None  # another key
    changed = sign(key, payload)
    changed["dsseEnvelope"]["payload"] = base64.b64encode(payload.replace(b"true", b"false")).decode()
    assert bundles.statement(changed, key.public_key()) is None  # the payload changed after signing
    retyped = sign(key, payload)
    retyped["dsseEnvelope"]["payloadType"] = "application/json"
    assert bundles.statement(retyped, key.public_key()) is None  # not an in-toto statement
    wrong_type = sign(key, payload, "application/json")
    wrong_type["dsseEnvelope"]["payloadType"] = bundles.IN_TOTO
    assert bundles.statement(wrong_type, key.public_key()) is None  # signed as another type
    garbled = sign(key, payload)
    garbled["dsseEnvelope"]["signatures"][0]["sig"] = "not base64!"
    assert bundles.statement(garbled, key.public_key()) is None
    assert bundles.statement({"messageSignature": {}}, key.public_key()) is None  # not a DSSE bundle


def test_only_a_p256_key_file_is_checked_in_process_the_rest_goes_to_cosign(tmp_path: Path) -> None:
    def pem(key: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey) -> str:
        path = tmp_path / f"{type(key).__name__}-{id(key)}.pub"
        path.write_bytes(
            key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        return str(path)

    assert bundles.public_key(pem(ec.generate_private_key(ec.SECP256R1()))) is not None
    assert bundles.public_key(pem(ec.generate_private_key(ec.SECP384R1()))) is None
    assert bundles.public_key(pem(ed25519.Ed25519PrivateKey.generate())) is None
    assert bundles.public_key("awskms:///alias/tfgov") is None and bundles.public_key(None) is None
    (tmp_path / "garbage.pub").write_text("not a key")
    assert bundles.public_key(str(tmp_path / "garbage.pub")) is None  # cosign then says what is wrong
    assert bundles.public_key(str(tmp_path / "missing.pub")) is None


@pytest.mark.parametrize("payload", [b"[1, 2]", b"not json"])
def test_a_payload_that_is_no_statement_counts_for_nothing(payload: bytes) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    assert bundles.statement(sign(key, payload), key.public_key()) is None
