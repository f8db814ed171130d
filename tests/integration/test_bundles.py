"""The in-process bundle reader against the real local registry, on referrers written here by the
distribution API itself: what counts (a bundle signed with the key, made for this image, its
statement about this digest) and what is skipped without a crash (another image's statement, a
manifest made for another image, a referrer that is gone, malformed ones). The bundles cosign
itself writes are read in tests/integration/test_sign.py."""

from __future__ import annotations

import base64
import hashlib
import json
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from tests.helpers import require_tools
from tfgov_ci.oci.reference import Reference
from tfgov_ci.oci.registry import Access, Registry
from tfgov_ci.stages.sign import bundles
from tfgov_ci.testing.registry import LocalRegistry

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
BUNDLE = "application/vnd.dev.sigstore.bundle.v0.3+json"
EMPTY = "application/vnd.oci.empty.v1+json"
POLICY = "https://tfgov-ci.dev/attestations/policy/v1"
LATER = "2026-06-01T00:00:00Z"


class Pusher:
    """Blobs and manifests PUT straight through the distribution API (a monolithic upload)."""

    def __init__(self, host: str, repository: str) -> None:
        self.base, self.repository = f"http://{host}/v2/{repository}", repository

    def blob(self, data: bytes) -> dict[str, Any]:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        start = urllib.request.Request(f"{self.base}/blobs/uploads/", method="POST")
        with urllib.request.urlopen(start) as response:
            location = response.headers["Location"]
        where = location if location.startswith("http") else self.base.split("/v2/")[0] + location
        url = f"{where}{'&' if '?' in where else '?'}digest={digest}"
        put = urllib.request.Request(url, data, {"Content-Type": "application/octet-stream"}, method="PUT")
        urllib.request.urlopen(put).close()
        return {"mediaType": EMPTY, "digest": digest, "size": len(data)}

    def manifest(self, doc: dict[str, Any], tag: str | None = None) -> dict[str, Any]:
        data = json.dumps(doc).encode()
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        kind = doc.get("mediaType", OCI_MANIFEST)
        put = urllib.request.Request(
            f"{self.base}/manifests/{tag or digest}", data, {"Content-Type": kind}, method="PUT"
        )
        urllib.request.urlopen(put).close()
        return {
            "mediaType": kind,
            "digest": digest,
            "size": len(data),
            "artifactType": doc.get("artifactType"),
        }


def image(pusher: Pusher, n: int) -> dict[str, Any]:
    config = pusher.blob(json.dumps({"architecture": "amd64", "os": "linux", "n": n}).encode())
    config["mediaType"] = "application/vnd.oci.image.config.v1+json"
    return pusher.manifest({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config, "layers": []})


def envelope(key: ec.EllipticCurvePrivateKey, statement: dict[str, Any]) -> dict[str, Any]:
    payload = json.dumps(statement).encode()
    signature = key.sign(bundles.pae(bundles.IN_TOTO, payload), ec.ECDSA(hashes.SHA256()))
    signatures = [{"sig": base64.b64encode(signature).decode()}]
    return {"mediaType": BUNDLE, "dsseEnvelope": {"payload": base64.b64encode(payload).decode(),
            "payloadType": bundles.IN_TOTO, "signatures": signatures}}  # fmt: skip


def about(digest: str, kind: str = POLICY) -> dict[str, Any]:
    subject = [{"digest": {"sha256": digest.removeprefix("sha256:")}}]
    return {"_type": "https://in-toto.io/Statement/v1", "predicateType": kind, "subject": subject,
            "predicate": {"allow": True}}  # fmt: skip


@pytest.fixture
def registry() -> Iterator[LocalRegistry]:
    require_tools("docker-registry")
    with LocalRegistry() as reg:
        yield reg


def test_only_bundles_signed_with_the_key_made_for_this_image_about_this_digest_count(
    registry: LocalRegistry,
) -> None:
    pusher = Pusher(registry.host, "ml/app")
    key, stranger = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    target, other = image(pusher, 1), image(pusher, 2)

    def referrer(bundle: object, subject: dict[str, Any], created: str) -> dict[str, Any]:
        layer = pusher.blob(json.dumps(bundle).encode())
        layer["mediaType"] = BUNDLE
        return pusher.manifest({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": BUNDLE,
            "config": {**pusher.blob(b"{}"), "mediaType": EMPTY}, "layers": [layer],
            "subject": {"mediaType": OCI_MANIFEST, "digest": subject["digest"], "size": subject["size"]},
            "annotations": {"org.opencontainers.image.created": created},
        })  # fmt: skip

    genuine = referrer(envelope(key, about(target["digest"])), target, "2026-01-01T00:00:00Z")
    listed = [
        genuine,
        # another image's statement, validly signed, copied under a manifest made for this one
        referrer(envelope(key, about(other["digest"])), target, LATER),
        # a manifest made for another image, listed here
        referrer(envelope(key, about(target["digest"], "https://example.com/o/v1")), other, LATER),
        # signed with another key
        referrer(envelope(stranger, about(target["digest"], "https://example.com/k/v1")), target, LATER),
        # malformed: signatures not a list, a bundle that is no object
        referrer({"dsseEnvelope": {"payloadType": bundles.IN_TOTO, "payload": "e30=",
                   "signatures": 5}}, target, ""),
        referrer(["not", "a", "bundle"], target, ""),
        # gone: listed, never pushed
        {"mediaType": OCI_MANIFEST, "digest": "sha256:" + "d" * 64, "size": 2, "artifactType": BUNDLE},
        {"mediaType": OCI_MANIFEST, "digest": 5},
    ]  # fmt: skip
    index = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                        "manifests": listed}).encode()  # fmt: skip
    pinned = Reference(registry.host, "ml/app", None, target["digest"])
    read = bundles.read(Registry(Access(registry.host, False, None, None)), pinned, index, key.public_key())
    assert read is not None
    assert read.statements == {POLICY: [about(target["digest"])]}  # the genuine one alone
    broken = bundles.read(
        Registry(Access(registry.host, False, None, None)), pinned, b"[1, 2]", key.public_key()
    )
    assert broken is None  # an index that is no index: cosign's to answer
