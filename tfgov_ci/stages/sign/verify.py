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
which it found. With a key file and no trusted root (the sign stage's default), the bundles cosign
would read (the OCI 1.1 referrers API's, else the referrers tag fallback's) are read and checked
in-process first (:mod:`tfgov_ci.stages.sign.bundles`: the checks cosign makes, without a process
per check); when they hold the signature and every attestation asked for, that "yes" stands.
Anything short of it (a missing or foreign signature, the legacy layout, a registry the reader
cannot read, ``COSIGN_REPOSITORY``), and every other kind of trust, is answered by cosign's own
verify commands, so every "no" and its reason is cosign's. The cosign calls and
registry reads are independent of each other and run at once.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

from tfgov_ci import tools
from tfgov_ci.oci import reference, referrers
from tfgov_ci.oci.reference import Reference
from tfgov_ci.oci.registry import HttpRefused, Registry, RegistryError
from tfgov_ci.predicates import (
    BUILD_TYPE,
    NAMESPACE,
    POLICY_PREDICATE,
    RECORD_PREDICATE,
    SBOM_PREDICATE,
    SCAN_PREDICATE,
    SLSA_PROVENANCE,
)
from tfgov_ci.stages.sign import bundles

KNOWN_EXTERNAL = frozenset({"repository", "ref", "commit", "config", "pipeline"})
TRUSTED_BUILDERS = (f"{NAMESPACE}/builders/gitlab", f"{NAMESPACE}/builders/jenkins")
REQUIRED = (SLSA_PROVENANCE, SBOM_PREDICATE, SCAN_PREDICATE, POLICY_PREDICATE)
# At once: measured on 2 cores with the TensorFlow example (bench/sign.py), verify took 1.82 s one
# call at a time, 1.50 s two at a time, 1.71 s four at a time (cosign calls slow each other down).
WORKERS = max(2, os.cpu_count() or 2)
SBOM_LIMIT = 256 * 1024 * 1024  # bytes read over HTTP for the stored SBOM (more: skopeo's pull)
IN_PROCESS = "tfgov-ci (the bundles read and checked in-process with the key)"


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
    checked_by: str = ""  # what checked the signatures: "cosign", or tfgov-ci's bundle reader

    @property
    def allowed(self) -> bool:
        return bool(self.checks) and all(check.passed for check in self.checks)

    def to_json(self) -> dict[str, Any]:
        return {
            "image": self.image,
            "digest": self.digest,
            "allowed": self.allowed,
            "signature_layout": self.layout,
            "signatures_checked_by": self.checked_by,
            "checks": [{"name": c.name, "passed": c.passed, "reason": c.reason} for c in self.checks],
            "attested": sorted(self.documents),
        }

    def adding(self, checks: Sequence[Check]) -> Verdict:
        return replace(self, checks=(*self.checks, *checks))


def _cosign(argv: list[str], registry: Registry, env: Mapping[str, str]) -> tools.Completed:
    return tools.run(
        argv, env={**os.environ, **env}, secrets=registry.access.secrets, check=False, timeout=300
    )


@dataclass(frozen=True)
class Outcome:
    """One signature check's answer, from cosign or from the bundles read in-process: whether it
    held, the statements that verified (attestations), and why not."""

    ok: bool
    statements: tuple[dict[str, Any], ...] = ()
    why: str = ""

    @classmethod
    def of_cosign(cls, done: tools.Completed) -> Outcome:
        if done.returncode != 0:
            return cls(False, why=_last_line(done.stderr))
        out = []
        for line in done.stdout.splitlines():
            if line.strip().startswith("{"):
                envelope = json.loads(line)
                if "payload" in envelope:
                    out.append(json.loads(base64.b64decode(envelope["payload"])))
        return cls(True, tuple(out))


def _in_process(read: bundles.Read, kinds: Sequence[str]) -> tuple[Outcome, dict[str, Outcome]]:
    """The signature's and each attestation's outcome from the bundles checked in-process (each
    statement there verified with the key, its subject this digest)."""
    signed = Outcome(bool(read.of(bundles.SIGN_PREDICATE)))
    return signed, {kind: Outcome(bool(read.of(kind)), tuple(read.of(kind))) for kind in kinds}


class Reads:
    """verify's registry reads: over the registry's HTTP API while it answers (no process a read),
    by skopeo from the first read it does not (credentials only in a docker auth file, a proxy
    that wants something else), so that the answer is the same either way."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.http = True

    def manifest(self, ref: Reference) -> bytes | None:
        """The manifest ``ref`` names, byte for byte, or None when there is none."""
        if self.http:
            try:
                return self.registry.read(ref)
            except HttpRefused as exc:
                if exc.code == 404:
                    return None
                self.http = False
            except RegistryError:
                self.http = False
        return self.registry.manifest(ref)

    def sbom(self, pinned: Reference, index: bytes | None) -> bytes | RegistryError:
        """The newest CycloneDX SBOM stored beside ``pinned``, or why there is none."""
        try:
            newest = referrers.newest_listed(pinned, index, "cyclonedx")
            if self.http:
                try:
                    at = Reference(pinned.registry, pinned.repository, None, newest["digest"])
                    layer = json.loads(self.registry.read(at))["layers"][0]["digest"]
                    return self.registry.read(
                        Reference(pinned.registry, pinned.repository, None, layer), blob=True
                    )
                except (RegistryError, ValueError, KeyError, IndexError, TypeError):
                    self.http = False
            return referrers.fetch_listed(self.registry, pinned, index, "cyclonedx")
        except RegistryError as exc:
            return exc


def signature_layout(reads: Reads, ref: Reference, listed: referrers.Listing) -> str:
    """Which layouts hold signatures: cosign 3 bundles in the image's referrers ``listed`` (the OCI
    1.1 referrers API, or the referrers tag fallback ``sha256-<hex>``), the legacy
    ``sha256-<hex>.sig`` / ``.att`` tags, or none of these (bundles behind a referrers API that
    cannot be asked here, with only a credential helper's credentials, show as none)."""
    tag = str(ref.digest).replace(":", "-")
    index = listed.index

    def there(name: str) -> bool:
        return reads.manifest(Reference(ref.registry, ref.repository, name)) is not None

    legacy = [suffix for suffix in (".sig", ".att") if there(tag + suffix)]
    holds_bundles = False
    for entry in json.loads(index).get("manifests", []) if index else []:
        if not bundles.maybe_bundle(entry):
            continue
        kind = entry.get("artifactType")
        if kind in (None, referrers.EMPTY_CONFIG):  # the manifest says what it is
            manifest = reads.manifest(Reference(ref.registry, ref.repository, None, entry["digest"]))
            kind = json.loads(manifest or "{}").get("artifactType", "")
        if str(kind).startswith(bundles.BUNDLE_TYPE):
            holds_bundles = True
            break
    found = ([f"bundles ({listed.where})"] if holds_bundles else []) + (
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
    (optional: for rules that read it; one more cosign call where cosign checks the signatures)."""
    given = reference.parse(image)
    registry = Registry.of(given, registries, env)
    reads = Reads(registry)
    missing = Verdict(image, "", "none", (Check("image", False, f"no image {given} in the registry"),))
    named = reads.manifest(given)  # a tag: resolved once, here (a registry it cannot read: exit 3)
    if named is None and reads.http:
        # "none" over HTTP confirmed by skopeo, with the credentials of its auth files: some
        # registries answer 404, not 401, to a read of a private repository without them
        named = registry.manifest(given)
        reads.http = named is None
    if named is None:
        return missing
    digest = str(given.digest) if given.digest else "sha256:" + hashlib.sha256(named).hexdigest()
    pinned = Reference(given.registry, given.repository, given.tag, digest)
    by_digest = f"{pinned.registry}/{pinned.repository}@{digest}"
    tls = registry.access.tls_verify
    kinds = (*REQUIRED, RECORD_PREDICATE) if with_record else REQUIRED
    key = bundles.public_key(trust.key) if trust.trusted_root is None else None
    with registry.access.docker_config() as cosign_env, ThreadPoolExecutor(max_workers=WORKERS) as pool:

        def cosign(command: str, *extra: str) -> Future[Outcome]:
            argv = cosign_argv(command, trust, by_digest, tls_verify=tls, extra=extra)
            return pool.submit(lambda: Outcome.of_cosign(_cosign(argv, registry, cosign_env)))

        # read once: the layout, bundles and SBOM
        listed = pool.submit(referrers.listing, registry, pinned, reads.manifest)
        layout = pool.submit(lambda: signature_layout(reads, pinned, listed.result()))
        stored = pool.submit(lambda: reads.sbom(pinned, listed.result().index))
        # cosign reads another repository's signatures with COSIGN_REPOSITORY: it answers then
        elsewhere = {**os.environ, **(env or {})}.get("COSIGN_REPOSITORY")
        own = key is not None and reads.http and not elsewhere
        read = bundles.read(registry, pinned, listed.result().index, key) if own and key is not None else None
        signed, attested = _in_process(read, kinds) if read is not None else (Outcome(False), {})
        # A "yes" from the bundles read here, every kind asked for found, stands; anything short of
        # one is cosign's to answer
        if signed.ok and all(attested[kind].ok for kind in kinds):
            by = IN_PROCESS
        else:
            by = "cosign"
            calls = cosign("verify"), {kind: cosign("verify-attestation", "--type", kind) for kind in kinds}
            signed, attested = calls[0].result(), {kind: done.result() for kind, done in calls[1].items()}
        checks = [Check("image", True, f"{image} is {digest}" if not given.digest else f"{digest}")]
        if not signed.ok:
            reason = (
                "never signed: no signature in the registry"
                if layout.result() == "none"
                else f"no signature verifies with {trust.who} ({signed.why})"
            )
            checks.append(Check("signature", False, reason))
            return Verdict(image, digest, layout.result(), tuple(checks), checked_by=by)
        where = layout.result() if layout.result() != "none" else "bundles (OCI 1.1 referrers API)"
        checker = "tfgov-ci" if by == IN_PROCESS else "cosign"
        checks.append(
            Check("signature", True, f"signed by {trust.who}, by digest ({where}; checked by {checker})")
        )
        statements: dict[str, dict[str, Any]] = {}  # predicate type -> the verified statement
        for kind in kinds:
            check, statement = _attestation(kind, attested[kind], digest, trust)
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
        return Verdict(image, digest, where, tuple(checks), statements, by)


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
    kind: str, outcome: Outcome, digest: str, trust: Trust
) -> tuple[Check | None, dict[str, Any] | None]:
    """One attestation's check and, when it holds, its statement. The build record is optional:
    it is attached after the tags (the record stage records the publish), so an image whose record
    stage has not run yet may still be allowed."""
    name = f"attestation {kind.rsplit('/', 2)[-2]}"
    found = [s for s in outcome.statements if s.get("predicateType") == kind] if outcome.ok else []
    if not found:
        if kind == RECORD_PREDICATE:
            return None, None
        return Check(
            name, False, f"missing, or not signed by {trust.who} ({outcome.why or 'none found'})"
        ), None
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
