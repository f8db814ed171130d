"""cosign 3's signature bundles, read and checked in-process with a public key.

The checks ``cosign verify --key K --insecure-ignore-tlog`` and ``cosign verify-attestation``
make of a bundle, without a process per check: the sign stage's default (a key, no transparency
log) is what an air-gapped admission check meets most, and five cosign processes were most of
verify's time (bench/sign.py). A bundle (``application/vnd.dev.sigstore.bundle.v0.3+json``, one
per signature or attestation) is listed where cosign lists it: the OCI 1.1 referrers API, or where
a registry has none, the referrers tag fallback. It holds a DSSE envelope: an in-toto statement
as its payload, signed over DSSE's pre-authentication encoding (``DSSEv1 <len> <type> <len>
<payload>``). A statement counts only when one of the envelope's signatures verifies with the key
(ECDSA P-256 with SHA-256, the key ``cosign generate-key-pair`` makes), its subject is this
image's digest (cosign skips a bundle of another artifact), and it is read from the payload that
verified, never from the bundle's other fields. The image's signature is a statement of type
``SIGN_PREDICATE`` (stricter than ``cosign verify``, which takes any verified bundle). Every
manifest and blob is checked against its digest as it is read, over the registry's API with the
credentials and CA tfgov-ci has; a referrer made for another image, gone, or malformed is
skipped.

Everything else goes to cosign itself (:mod:`tfgov_ci.stages.sign.verify`): keyless (a Fulcio
certificate chain), a trusted root (a transparency log to check), a KMS key or a key of another
kind, the legacy ``.sig`` and ``.att`` tags, and a registry whose API this reader cannot use
(credentials only in a docker auth file): :func:`public_key` or :func:`read` then answer None.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tfgov_ci.oci import referrers
from tfgov_ci.oci.reference import Reference
from tfgov_ci.oci.registry import HttpRefused, Registry, RegistryError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import ec

BUNDLE_TYPE = "application/vnd.dev.sigstore.bundle"  # cosign 3's artifactType, before "v0.3+json"
BUNDLE_MEDIA_TYPE = f"{BUNDLE_TYPE}.v0.3+json"  # the bundles cosign 3 writes
SIGN_PREDICATE = "https://sigstore.dev/cosign/sign/v1"  # the statement cosign 3's `sign` signs
IN_TOTO = "application/vnd.in-toto+json"
READERS = 8  # registry reads at once (small documents: the registry's latency, not CPU)


def public_key(key: str | None) -> ec.EllipticCurvePublicKey | None:
    """The key a file holds when it is an ECDSA P-256 public key in PEM (what ``cosign
    generate-key-pair`` makes); None for a KMS or other key reference, or another kind of key
    (cosign checks those, with the hashes it chooses for them)."""
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    if key is None or "://" in key:
        return None
    try:
        loaded = load_pem_public_key(Path(key).read_bytes())
    except (OSError, ValueError, TypeError):
        return None  # cosign says what is wrong with it
    if isinstance(loaded, ec.EllipticCurvePublicKey) and isinstance(loaded.curve, ec.SECP256R1):
        return loaded
    return None


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE's pre-authentication encoding: what a DSSE signature signs."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def _verifies(key: ec.EllipticCurvePublicKey, signature: bytes, message: bytes) -> bool:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    try:
        key.verify(signature, message, ec.ECDSA(hashes.SHA256()))  # ASN.1 DER, as cosign signs
    except InvalidSignature:
        return False
    return True


def statement(bundle: Mapping[str, Any], key: ec.EllipticCurvePublicKey) -> dict[str, Any] | None:
    """The in-toto statement of a bundle's DSSE envelope when one of its signatures verifies with
    ``key``; None otherwise (another key, a changed payload, not a DSSE bundle)."""
    envelope = bundle.get("dsseEnvelope")
    if not isinstance(envelope, Mapping) or envelope.get("payloadType") != IN_TOTO:
        return None
    try:
        payload = base64.b64decode(str(envelope.get("payload", "")), validate=True)
        signatures = [
            base64.b64decode(str(s.get("sig", "")), validate=True) for s in envelope.get("signatures", [])
        ]
    except (binascii.Error, AttributeError, TypeError):
        return None
    message = pae(IN_TOTO, payload)
    if not any(_verifies(key, signature, message) for signature in signatures):
        return None
    try:
        found = json.loads(payload)
    except ValueError:
        return None
    return found if isinstance(found, dict) else None


@dataclass(frozen=True)
class Read:
    """What the image's bundles say: every statement that verified with the key, by predicate
    type (oldest first)."""

    statements: Mapping[str, Sequence[dict[str, Any]]]

    def of(self, kind: str) -> Sequence[dict[str, Any]]:
        return self.statements.get(kind, ())


def maybe_bundle(entry: Mapping[str, Any]) -> bool:
    """Whether an entry of a referrers index may be a cosign 3 bundle: not an SBOM tfgov-ci
    attached, and of the bundle's type or of none said (cosign 3 lists its config's empty type
    there, and skopeo's re-encoding drops it: the manifest says what it is)."""
    annotations = entry.get("annotations", {})
    return (
        isinstance(annotations, dict)
        and not annotations.get(referrers.FORMAT_ANNOTATION)
        and str(entry.get("artifactType") or referrers.EMPTY_CONFIG).startswith(
            (BUNDLE_TYPE, referrers.EMPTY_CONFIG)
        )
        and isinstance(entry.get("digest"), str)
    )


def read(
    registry: Registry, pinned: Reference, index: bytes | None, key: ec.EllipticCurvePublicKey
) -> Read | None:
    """The bundles ``index`` lists for ``pinned``, each read and checked: the image's
    :func:`~tfgov_ci.oci.referrers.listing` as read already (the OCI 1.1 referrers API's where the
    registry has one, else the referrers tag fallback's, as cosign chooses). A statement counts
    only when it verifies with the key and its subject is this digest (as cosign skips a bundle of
    another artifact); a malformed referrer is skipped. None when there is no list: the caller asks
    cosign then."""
    if index is None:
        return None
    try:
        listed = [e for e in json.loads(index).get("manifests", []) if isinstance(e, dict)]
    except (ValueError, AttributeError):
        return None
    entries = [e for e in listed if maybe_bundle(e)]

    def one(entry: Mapping[str, Any]) -> tuple[str, dict[str, Any]] | None:
        try:
            manifest = json.loads(
                registry.read(Reference(pinned.registry, pinned.repository, None, entry["digest"]))
            )
            if not str(manifest.get("artifactType", "")).startswith(BUNDLE_TYPE):
                return None  # another referrer
            if manifest.get("subject", {}).get("digest") != pinned.digest:
                return None  # listed here, made for another image
            layer = manifest["layers"][0]["digest"]
            bundle = json.loads(
                registry.read(Reference(pinned.registry, pinned.repository, None, layer), blob=True)
            )
            created = str(manifest.get("annotations", {}).get("org.opencontainers.image.created", ""))
        except HttpRefused as exc:
            if exc.code == 404:
                return None  # listed, gone: cosign skips it too
            raise
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            return None  # malformed: skipped
        return (created, bundle) if isinstance(bundle, dict) else None

    try:
        with ThreadPoolExecutor(max_workers=READERS) as pool:
            found = [b for b in pool.map(one, entries) if b is not None]
    except RegistryError:
        return None
    statements: dict[str, list[dict[str, Any]]] = {}
    for _, bundle in sorted(found, key=lambda b: b[0]):
        verified = statement(bundle, key)
        if verified is not None and _about(verified, str(pinned.digest)):
            statements.setdefault(str(verified.get("predicateType", "")), []).append(verified)
    return Read(statements)


def _about(statement: Mapping[str, Any], digest: str) -> bool:
    """Whether one of the statement's subjects is ``digest``."""
    subjects = statement.get("subject")
    hexdigest = digest.removeprefix("sha256:")
    return isinstance(subjects, list) and any(
        isinstance(s, dict) and isinstance(s.get("digest"), dict) and s["digest"].get("sha256") == hexdigest
        for s in subjects
    )
