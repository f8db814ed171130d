"""``tfgov-ci verify IMAGE``: may this image run? The question an admission controller asks.

The tag (if one is given) is resolved to a digest once; every check is made against that digest:
the signature, each attestation's signature (cosign's own verify commands, offline with the key,
or keyless with an identity and issuer), that the provenance's subject is this digest, that its
builder is trusted, that its external parameters are the ones expected and none unknown (SLSA's
verification rules), that the base is allowed, that the attested SBOM digest is the SBOM stored
beside the image, and that the attested policy decision allowed it. Each check is one verdict line
with its reason; one failure is a "no".

Both signature layouts are read: cosign 3 bundles (OCI 1.1 referrers, or the referrers tag
fallback ``sha256-<hex>``) and the legacy ``sha256-<hex>.sig`` / ``.att`` tags; the verdict says
which it found. The cosign calls and registry reads are independent of each other and run at once.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from tfgov_ci import tools
from tfgov_ci.oci import reference, referrers
from tfgov_ci.oci.reference import Reference
from tfgov_ci.oci.registry import Registry, RegistryError, resolve
from tfgov_ci.predicates import (
    BUILD_TYPE,
    NAMESPACE,
    POLICY_PREDICATE,
    RECORD_PREDICATE,
    SBOM_PREDICATE,
    SCAN_PREDICATE,
    SLSA_PROVENANCE,
)

KNOWN_EXTERNAL = frozenset({"repository", "ref", "commit", "config", "pipeline"})
TRUSTED_BUILDERS = (f"{NAMESPACE}/builders/gitlab", f"{NAMESPACE}/builders/jenkins")
REQUIRED = (SLSA_PROVENANCE, SBOM_PREDICATE, SCAN_PREDICATE, POLICY_PREDICATE)
# At once: measured on 2 cores with the TensorFlow example (bench/sign.py), verify took 1.82 s one
# call at a time, 1.50 s two at a time, 1.71 s four at a time (cosign calls slow each other down).
WORKERS = max(2, os.cpu_count() or 2)
BUNDLE_TYPE = "application/vnd.dev.sigstore.bundle"  # cosign 3's artifactType, before "v0.3+json"


@dataclass(frozen=True)
class Trust:
    """Whose signature counts: a public key (a file or a KMS URI), or, keyless, the certificate's
    identity and OIDC issuer; and the trust root. Without ``trusted_root``, a key is checked alone
    (no transparency log: what the sign stage makes by default, air-gapped) and keyless uses the
    public Sigstore's root, which cosign fetches through TUF."""

    key: str | None = None
    identity: str | None = None
    issuer: str | None = None
    trusted_root: str | None = None  # a private Sigstore's trusted_root.json (Fulcio, Rekor, TSA)

    def __post_init__(self) -> None:
        if (self.key is None) == (self.identity is None) or (self.identity is None) != (self.issuer is None):
            raise ValueError("a key, or an identity and an issuer: exactly one of the two")

    def cosign_args(self) -> list[str]:
        if self.key is not None:
            args = ["--key", self.key]
        else:
            args = [
                "--certificate-identity",
                str(self.identity),
                "--certificate-oidc-issuer",
                str(self.issuer),
            ]
        if self.trusted_root is not None:
            return [*args, "--trusted-root", self.trusted_root]
        return [*args, "--insecure-ignore-tlog"] if self.key is not None else args

    @property
    def who(self) -> str:
        return "the key" if self.key is not None else f"{self.identity} ({self.issuer})"


def cosign_argv(
    command: str, trust: Trust, by_digest: str, *, tls_verify: bool, extra: Sequence[str] = ()
) -> list[str]:
    """``cosign verify`` or ``verify-attestation`` for one image, by digest."""
    insecure = [] if tls_verify else ["--allow-insecure-registry"]
    return ["cosign", command, *trust.cosign_args(), *insecure, *extra, by_digest]


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    reason: str


@dataclass(frozen=True)
class Expected:
    """What the caller expects of the provenance; None: not checked."""

    repository: str | None = None
    commit: str | None = None
    branch: str | None = None
    config: str | None = None
    builders: tuple[str, ...] = TRUSTED_BUILDERS
    bases: tuple[str, ...] = ()  # allowed base repositories (REGISTRY/REPO); empty: any
    mirror_of: tuple[str, ...] = ()  # repositories (REGISTRY/REPO) this one mirrors: their signatures count


@dataclass(frozen=True)
class Verdict:
    image: str
    digest: str
    layout: str  # which signature layout was found
    checks: tuple[Check, ...] = field(default_factory=tuple)
    # predicate type -> the attested predicate, each verified: what --policy rules read
    documents: Mapping[str, Any] = field(default_factory=dict)

    @property
    def allowed(self) -> bool:
        return bool(self.checks) and all(check.passed for check in self.checks)

    def to_json(self) -> dict[str, Any]:
        return {
            "image": self.image,
            "digest": self.digest,
            "allowed": self.allowed,
            "signature_layout": self.layout,
            "checks": [{"name": c.name, "passed": c.passed, "reason": c.reason} for c in self.checks],
            "attested": sorted(self.documents),
        }

    def adding(self, checks: Sequence[Check]) -> Verdict:
        return Verdict(self.image, self.digest, self.layout, (*self.checks, *checks), self.documents)


def _cosign(argv: list[str], registry: Registry, env: Mapping[str, str]) -> tools.Completed:
    return tools.run(
        argv, env={**os.environ, **env}, secrets=registry.access.secrets, check=False, timeout=300
    )


def _statements(done: tools.Completed) -> list[dict[str, Any]]:
    out = []
    for line in done.stdout.splitlines():
        if line.strip().startswith("{"):
            envelope = json.loads(line)
            out.append(json.loads(base64.b64decode(envelope["payload"])))
    return out


def signature_layout(registry: Registry, ref: Reference, index: bytes | None) -> str:
    """Which layouts hold signatures: cosign 3 bundles in the referrers tag fallback ``index``
    (``sha256-<hex>``), the legacy ``sha256-<hex>.sig`` / ``.att`` tags, or none of these (bundles
    behind an OCI 1.1 referrers API, which skopeo cannot list, show as none here)."""
    tag = str(ref.digest).replace(":", "-")

    def there(name: str) -> bool:
        return registry.manifest(Reference(ref.registry, ref.repository, name)) is not None

    legacy = [suffix for suffix in (".sig", ".att") if there(tag + suffix)]
    bundles = False
    for entry in json.loads(index).get("manifests", []) if index else []:
        if entry.get("annotations", {}).get(referrers.FORMAT_ANNOTATION):
            continue  # an SBOM tfgov-ci attached
        kind = entry.get("artifactType")
        # cosign 3 writes its config's type (empty) there, skopeo's re-encoding drops it: the
        # manifest says what it is
        if kind in (None, referrers.EMPTY_CONFIG):
            manifest = registry.manifest(Reference(ref.registry, ref.repository, None, entry["digest"]))
            kind = json.loads(manifest or "{}").get("artifactType", "")
        if str(kind).startswith(BUNDLE_TYPE):
            bundles = True
            break
    found = (["bundles (referrers tag fallback)"] if bundles else []) + (
        [f"legacy {' and '.join(legacy)} tags"] if legacy else []
    )
    return " and ".join(found) or "none"


def verify(
    image: str,
    trust: Trust,
    expected: Expected,
    registries: Mapping[str, Mapping[str, Any]],
    env: Mapping[str, str] | None = None,
    *,
    with_record: bool = False,
) -> Verdict:
    """Every check, against one digest; ``with_record``: the build record's attestation read too
    (optional: for rules that read it), one more cosign call."""
    given = reference.parse(image)
    registry = Registry.of(given, registries, env)
    missing = Verdict(image, "", "none", (Check("image", False, f"no image {given} in the registry"),))
    try:
        pinned = resolve(given, registry)  # a tag: resolved once, here
    except RegistryError as exc:
        if not exc.message.startswith("no image"):
            raise  # the registry could not be read: a tool error, not a "no"
        return missing
    digest = str(pinned.digest)
    by_digest = f"{pinned.registry}/{pinned.repository}@{digest}"
    tls = registry.access.tls_verify
    kinds = (*REQUIRED, RECORD_PREDICATE) if with_record else REQUIRED
    fallback = Reference(pinned.registry, pinned.repository, referrers.fallback_tag(digest))
    with registry.access.docker_config() as cosign_env, ThreadPoolExecutor(max_workers=WORKERS) as pool:

        def cosign(command: str, *extra: str) -> Future[tools.Completed]:
            argv = cosign_argv(command, trust, by_digest, tls_verify=tls, extra=extra)
            return pool.submit(_cosign, argv, registry, cosign_env)

        exists = pool.submit(registry.manifest, pinned) if given.digest else None
        index = pool.submit(registry.manifest, fallback)  # read once: the layout and the SBOM
        signed = cosign("verify")
        attested = {kind: cosign("verify-attestation", "--type", kind) for kind in kinds}
        layout = pool.submit(lambda: signature_layout(registry, pinned, index.result()))
        stored = pool.submit(lambda: _stored_sbom(registry, pinned, index.result()))
        if exists is not None and exists.result() is None:
            return missing
        checks = [Check("image", True, f"{image} is {digest}" if not given.digest else f"{digest}")]
        if signed.result().returncode != 0:
            reason = (
                "never signed: no signature in the registry"
                if layout.result() == "none"
                else f"no signature verifies with {trust.who} ({_last_line(signed.result().stderr)})"
            )
            checks.append(Check("signature", False, reason))
            return Verdict(image, digest, layout.result(), tuple(checks))
        where = layout.result() if layout.result() != "none" else "bundles (OCI 1.1 referrers API)"
        checks.append(Check("signature", True, f"signed by {trust.who}, by digest ({where})"))
        statements: dict[str, dict[str, Any]] = {}  # predicate type -> the verified statement
        for kind in kinds:
            check, statement = _attestation(kind, attested[kind].result(), digest, trust)
            if statement is not None:
                statements[kind] = statement
            if check is not None:
                checks.append(check)
        if statements:
            checks.append(
                _signed_for(list(statements.values()), f"{pinned.registry}/{pinned.repository}", expected)
            )
        statements = {kind: statement["predicate"] for kind, statement in statements.items()}
        if SLSA_PROVENANCE in statements:
            checks += provenance_checks(statements[SLSA_PROVENANCE], expected)
        if SBOM_PREDICATE in statements:
            checks.append(_sbom_check(statements[SBOM_PREDICATE], stored.result()))
        if POLICY_PREDICATE in statements:
            allow = statements[POLICY_PREDICATE].get("allow") is True
            checks.append(
                Check(
                    "policy", allow, "the attested decision allowed it" if allow else "the policy denied it"
                )
            )
        return Verdict(image, digest, where, tuple(checks), statements)


def _signed_for(statements: Sequence[Mapping[str, Any]], repository: str, expected: Expected) -> Check:
    """The repository the evidence was made for: each attestation's signed subject names it (a
    cosign 3 bundle's signature does not, so its attestations say). Evidence copied from another
    repository verifies with the key, but was not made for this one."""
    names = {
        _repository_of(subject.get("name", ""))
        for statement in statements
        for subject in statement.get("subject", [])
    }
    ours = {repository, *expected.mirror_of}
    if names and names <= ours:
        return Check("signed for", True, ", ".join(sorted(names)))
    return Check(
        "signed for",
        False,
        f"the evidence was made for {', '.join(sorted(names - ours)) or 'no repository'}, not {repository}"
        " (a mirror? --mirror-of REGISTRY/REPO)",
    )


def _repository_of(name: str) -> str:
    """``host:port/repo@sha256:...`` or ``host:port/repo:tag`` -> ``host:port/repo``."""
    name = name.split("@", 1)[0]
    head, _, last = name.rpartition("/")
    return f"{head}/{last.split(':', 1)[0]}" if head else name


def _attestation(
    kind: str, done: tools.Completed, digest: str, trust: Trust
) -> tuple[Check | None, dict[str, Any] | None]:
    """One attestation's check and, when it holds, its statement. The build record is optional:
    it is attached after the tags (the record stage records the publish), so an image whose record
    stage has not run yet may still be allowed."""
    name = f"attestation {kind.rsplit('/', 2)[-2]}"
    found = [s for s in _statements(done) if s.get("predicateType") == kind] if done.returncode == 0 else []
    if not found:
        if kind == RECORD_PREDICATE:
            return None, None
        return Check(name, False, f"missing, or not signed by {trust.who} ({_last_line(done.stderr)})"), None
    subjects = [d.get("digest", {}).get("sha256") for d in found[-1].get("subject", [])]
    if digest.removeprefix("sha256:") not in subjects:
        return Check(name, False, f"its subject is not {digest}"), None
    return Check(name, True, f"signed by {trust.who}; its subject is this digest"), found[-1]


def provenance_checks(predicate: Mapping[str, Any], expected: Expected) -> list[Check]:
    checks = []
    definition = predicate.get("buildDefinition", {})
    build_type = definition.get("buildType")
    checks.append(Check("build type", build_type == BUILD_TYPE, f"{build_type}"))
    builder = predicate.get("runDetails", {}).get("builder", {}).get("id", "")
    trusted = builder in expected.builders
    checks.append(
        Check(
            "builder", trusted, f"{builder} is trusted" if trusted else f"{builder} is not a trusted builder"
        )
    )
    external = definition.get("externalParameters", {})
    unknown = sorted(set(external) - KNOWN_EXTERNAL)
    checks.append(
        Check(
            "external parameters",
            not unknown,
            "all known" if not unknown else f"unknown external parameter(s): {', '.join(unknown)}",
        )
    )
    wanted = {
        "repository": (expected.repository, external.get("repository")),
        "commit": (expected.commit, external.get("commit")),
        "branch": (f"refs/heads/{expected.branch}" if expected.branch else None, external.get("ref")),
        "config": (expected.config, (external.get("config") or {}).get("path")),
    }
    for name, (want, got) in wanted.items():
        if want is not None:
            checks.append(
                Check(name, want == got, f"{got}" if want == got else f"{got!r}, expected {want!r}")
            )
    if expected.bases:
        bases = [
            d.get("uri", "").removeprefix("docker://").split("@")[0]
            for d in definition.get("resolvedDependencies", [])
            if d.get("name") == "base image"
        ]
        allowed = bool(bases) and all(b in expected.bases for b in bases)
        checks.append(
            Check("base", allowed, f"{', '.join(bases) or 'none'}" + ("" if allowed else " is not allowed"))
        )
    return checks


def _stored_sbom(registry: Registry, pinned: Reference, index: bytes | None) -> bytes | RegistryError:
    try:
        return referrers.fetch_listed(registry, pinned, index, "cyclonedx")
    except RegistryError as exc:
        return exc


def _sbom_check(predicate: Mapping[str, Any], stored: bytes | RegistryError) -> Check:
    if isinstance(stored, RegistryError):
        return Check("sbom", False, f"no SBOM stored beside the image ({stored.message})")
    digest = "sha256:" + hashlib.sha256(stored).hexdigest()
    if digest != predicate.get("digest"):
        return Check(
            "sbom", False, f"the stored SBOM is {digest}, the attested one {predicate.get('digest')}"
        )
    return Check("sbom", True, f"the stored SBOM is the attested one ({digest})")


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip() and "WARNING" not in line]
    return lines[-1].strip() if lines else "no output"


def render(verdict: Verdict) -> Sequence[str]:
    lines = [f"{'ok  ' if c.passed else 'FAIL'} {c.name}: {c.reason}" for c in verdict.checks]
    lines.append(
        f"{'allowed' if verdict.allowed else 'denied'}: {verdict.image}"
        + (f" ({verdict.digest})" if verdict.digest else "")
    )
    return lines
