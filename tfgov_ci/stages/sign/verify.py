"""``tfgov-ci verify IMAGE``: may this image run? The question an admission controller asks.

The tag (if one is given) is resolved to a digest once; every check is made against that digest:
the signature, each attestation's signature (cosign's own verify commands, offline with the key),
that the provenance's subject is this digest, that its builder is trusted, that its external
parameters are the ones expected and none unknown (SLSA's verification rules), that the base is
allowed, that the attested SBOM digest is the SBOM stored beside the image, and that the attested
policy decision allowed it. Each check is one verdict line with its reason; one failure is a "no".
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tfgov_ci import tools
from tfgov_ci.oci import reference, referrers
from tfgov_ci.oci.reference import Reference
from tfgov_ci.oci.registry import Registry, RegistryError, resolve
from tfgov_ci.stages.sign.interface import (
    BUILD_TYPE,
    NAMESPACE,
    POLICY_PREDICATE,
    SBOM_PREDICATE,
    SCAN_PREDICATE,
    SLSA_PROVENANCE,
)

KNOWN_EXTERNAL = frozenset({"repository", "ref", "commit", "config", "pipeline"})
TRUSTED_BUILDERS = (f"{NAMESPACE}/builders/gitlab", f"{NAMESPACE}/builders/jenkins")


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


@dataclass(frozen=True)
class Verdict:
    image: str
    digest: str
    layout: str  # which signature layout was found
    checks: tuple[Check, ...] = field(default_factory=tuple)

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
        }


def _cosign(command: str, key: str, ref: str, registry: Registry, *extra: str) -> tools.Completed:
    args = ["--key", key, "--insecure-ignore-tlog"]
    if not registry.access.tls_verify:
        args.append("--allow-insecure-registry")
    with registry.access.docker_config() as env:
        return tools.run(
            ["cosign", command, *args, *extra, ref],
            env={**os.environ, **env},
            secrets=registry.access.secrets,
            check=False,
            timeout=300,
        )


def _statements(done: tools.Completed) -> list[dict[str, Any]]:
    out = []
    for line in done.stdout.splitlines():
        if line.strip().startswith("{"):
            envelope = json.loads(line)
            out.append(json.loads(base64.b64decode(envelope["payload"])))
    return out


def signature_layout(registry: Registry, ref: Reference) -> str:
    """Which layout the signatures are in: cosign 3 bundles (OCI 1.1 referrers, or the referrers tag
    fallback ``sha256-<hex>``), the legacy ``sha256-<hex>.sig`` tag, both, or none."""
    tag = str(ref.digest).replace(":", "-")
    legacy = registry.manifest(Reference(ref.registry, ref.repository, f"{tag}.sig")) is not None
    index = registry.manifest(Reference(ref.registry, ref.repository, tag))
    bundles = False
    if index is not None:
        for entry in json.loads(index).get("manifests", []):
            manifest = registry.manifest(Reference(ref.registry, ref.repository, None, entry["digest"]))
            if manifest and "sigstore.bundle" in json.dumps(json.loads(manifest).get("layers", [])):
                bundles = True
                break
    found = [name for name, there in (("bundles", bundles), ("legacy .sig tag", legacy)) if there]
    return " and ".join(found) or "none"


def verify(
    image: str,
    key: str,
    expected: Expected,
    registries: Mapping[str, Mapping[str, Any]],
    env: Mapping[str, str] | None = None,
) -> Verdict:
    """Every check, against one digest."""
    given = reference.parse(image)
    registry = Registry.of(given, registries, env)
    try:
        pinned = resolve(given, registry)
        if given.digest and registry.manifest(pinned) is None:
            raise RegistryError(f"no image {given}")
    except RegistryError as exc:
        if not exc.message.startswith("no image"):
            raise  # the registry could not be read: a tool error, not a "no"
        return Verdict(image, "", "none", (Check("image", False, f"no image {given} in the registry"),))
    digest = str(pinned.digest)
    by_digest = f"{pinned.registry}/{pinned.repository}@{digest}"
    layout = signature_layout(registry, pinned)
    checks = [Check("image", True, f"{image} is {digest}" if not given.digest else f"{digest}")]
    signed = _cosign("verify", key, by_digest, registry)
    if signed.returncode != 0:
        reason = (
            "never signed: no signature in the registry"
            if layout == "none"
            else f"no signature verifies with this key ({_last_line(signed.stderr)})"
        )
        checks.append(Check("signature", False, reason))
        return Verdict(image, digest, layout, tuple(checks))
    checks.append(Check("signature", True, f"signed with the key, by digest ({layout})"))
    statements: dict[str, dict[str, Any]] = {}
    for kind in (SLSA_PROVENANCE, SBOM_PREDICATE, SCAN_PREDICATE, POLICY_PREDICATE):
        done = _cosign("verify-attestation", key, by_digest, registry, "--type", kind)
        name = f"attestation {kind.rsplit('/', 2)[-2]}"
        found = (
            [s for s in _statements(done) if s.get("predicateType") == kind] if done.returncode == 0 else []
        )
        if not found:
            checks.append(
                Check(name, False, f"missing, or not signed with this key ({_last_line(done.stderr)})")
            )
            continue
        subjects = [d.get("digest", {}).get("sha256") for d in found[-1].get("subject", [])]
        if digest.removeprefix("sha256:") not in subjects:
            checks.append(Check(name, False, f"its subject is not {digest}"))
            continue
        statements[kind] = found[-1]["predicate"]
        checks.append(Check(name, True, "signed with the key; its subject is this digest"))
    if SLSA_PROVENANCE in statements:
        checks += provenance_checks(statements[SLSA_PROVENANCE], expected)
    if SBOM_PREDICATE in statements:
        checks.append(_sbom_check(statements[SBOM_PREDICATE], by_digest, registries, env))
    if POLICY_PREDICATE in statements:
        allow = statements[POLICY_PREDICATE].get("allow") is True
        checks.append(
            Check("policy", allow, "the attested decision allowed it" if allow else "the policy denied it")
        )
    return Verdict(image, digest, layout, tuple(checks))


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


def _sbom_check(
    predicate: Mapping[str, Any],
    image: str,
    registries: Mapping[str, Mapping[str, Any]],
    env: Mapping[str, str] | None,
) -> Check:
    try:
        stored = referrers.fetch(image, "cyclonedx", registries, env)
    except RegistryError as exc:
        return Check("sbom", False, f"no SBOM stored beside the image ({exc.message})")
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
