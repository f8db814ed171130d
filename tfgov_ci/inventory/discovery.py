"""``inventory import --registry``: every image a registry holds, governed or not.

The registry's catalog and tag-list APIs name the repositories and tags; each tag is resolved to
a digest, and each digest is one image. An image whose build record attestation verifies with the
key (the one ``tfgov-ci verify`` checks, by digest) is **governed**: its record, provenance, policy
decision and stored SBOM come from the registry. Everything else is **ungoverned** (no signature,
no record, or one made with another key), recorded with its tags and labels and, with ``sbom``,
the packages syft finds in it, so that ``which`` and ``rescan`` see it too: the forgotten image
nobody remembers is the one that matters.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import json
import os
import re
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from tfgov_ci import tools
from tfgov_ci.inventory import evidence
from tfgov_ci.inventory.evidence import Attestation, Attested, ImageEvidence
from tfgov_ci.inventory.sbom import packages_of
from tfgov_ci.oci import referrers
from tfgov_ci.oci.reference import Reference
from tfgov_ci.oci.registry import Registry, RegistryError
from tfgov_ci.predicates import POLICY_PREDICATE, RECORD_PREDICATE, SBOM_PREDICATE, SLSA_PROVENANCE
from tfgov_ci.stages.sign.verify import Expected, Trust, verify


@dataclass(frozen=True)
class Found:
    """One image in one repository: its digest and every tag naming it."""

    registry: str
    repository: str
    digest: str
    tags: tuple[str, ...]

    @property
    def name(self) -> str:
        return f"{self.registry}/{self.repository}"

    @property
    def by_digest(self) -> str:
        return f"{self.name}@{self.digest}"


def repositories(registry: Registry, patterns: Sequence[str]) -> list[str]:
    """The repositories that match ``patterns`` (``*`` wildcards): names without a wildcard are
    taken as they are, so a registry without a catalog API (or an account that may not list it)
    can still be read repository by repository."""
    exact = [p for p in patterns if not any(c in p for c in "*?[")]
    wild = [p for p in patterns if p not in exact]
    listed = [r for r in registry.catalog() if any(fnmatch.fnmatchcase(r, p) for p in wild)] if wild else []
    return sorted(dict.fromkeys([*exact, *listed]))


def images(registry: Registry, repository: str) -> Iterator[Found]:
    """Each image (digest) of a repository, with its tags; the ``sha256-*`` tags signatures and
    referrers live under are not images."""
    by_digest: dict[str, list[str]] = {}
    for tag in sorted(registry.tags(Reference(registry.host, repository, "latest"))):
        if tag.startswith("sha256-"):
            continue
        digest = registry.digest_of(Reference(registry.host, repository, tag))
        if digest is not None:
            by_digest.setdefault(digest, []).append(tag)
    for digest, tags in by_digest.items():
        yield Found(registry.host, repository, digest, tuple(tags))


def read(
    found: Found,
    registry: Registry,
    registries: Mapping[str, Mapping[str, Any]],
    key: str | None,
    *,
    sbom: bool,
) -> ImageEvidence:
    """What the registry says of one image: governed when its record attestation verifies with
    ``key``, else ungoverned (with the packages syft finds when ``sbom``)."""
    ref = Reference(found.registry, found.repository, None, found.digest)
    warnings: list[str] = []
    try:
        labels = dict((registry.config(ref).get("config") or {}).get("Labels") or {})
    except RegistryError as exc:  # an index for another platform, an artifact: no config to read
        labels = {}
        warnings.append(f"{found.by_digest}: no image config read ({exc.message}): recorded without labels")
    if key is not None:
        verdict = verify(found.by_digest, Trust(key=key), Expected(builders=()), registries, with_record=True)
        record = verdict.documents.get(RECORD_PREDICATE)
        if isinstance(record, dict):
            try:
                evidence.check(record, f"{found.by_digest} (record attestation)")
            except evidence.RecordError:
                pass  # attested, but not a record this version can read: recorded as ungoverned
            else:
                return _governed(found, record, verdict.documents, labels, registry)
    packages = _syft(found, registry) if sbom else ()
    image = ungoverned(found, labels, packages)
    return replace(image, warnings=(*warnings, *image.warnings))


def _governed(
    found: Found,
    record: Mapping[str, Any],
    documents: Mapping[str, Any],
    labels: Mapping[str, str],
    registry: Registry,
) -> ImageEvidence:
    provenance = documents.get(SLSA_PROVENANCE) or {}
    dependencies = (provenance.get("buildDefinition") or {}).get("resolvedDependencies") or []
    base: Mapping[str, Any] = next((d for d in dependencies if d.get("name") == "base image"), {})
    lock: Mapping[str, Any] = next((d for d in dependencies if d.get("name") == "lock file"), {})
    try:
        pinned = Reference(found.registry, found.repository, None, found.digest)
        listed = referrers.listing(registry, pinned)
        stored = referrers.fetch_listed(registry, pinned, listed.index, "cyclonedx")
    except RegistryError:
        stored = None
    attested_sbom = (documents.get(SBOM_PREDICATE) or {}).get("digest")
    packages = (
        tuple(packages_of(json.loads(stored), f"{found.by_digest} (stored SBOM)"))
        if stored is not None and evidence.bytes_digest(stored) == attested_sbom
        else ()
    )
    policy = documents.get(POLICY_PREDICATE)
    image = {**record["image"], "tags": sorted({*record["image"]["tags"], *found.tags})}
    return evidence.from_record(
        {**record, "image": image},
        f"{found.by_digest} (record attestation)",
        evidence.bytes_digest(json.dumps(record, sort_keys=True).encode()),
        None,
        Attested(
            packages=packages,
            sbom_digest=attested_sbom if packages else None,
            labels=labels,
            decision=None if not isinstance(policy, dict) else ("allow" if policy.get("allow") else "deny"),
            base_ref=str(base.get("uri", "")).removeprefix("docker://") or None,
            base_digest=f"sha256:{base['digest']['sha256']}" if base.get("digest") else None,
            lock_digest=f"sha256:{lock['digest']['sha256']}" if lock.get("digest") else None,
            attestations=tuple(Attestation(kind, None) for kind in documents),
        ),
    )


def ungoverned(found: Found, labels: Mapping[str, str], packages: Sequence[Any]) -> ImageEvidence:
    """An image no verified record describes: what the registry shows of it, and no more."""
    return ImageEvidence(
        source=f"{found.by_digest} (registry)",
        digest=found.digest,
        repository=found.name,
        tags=found.tags,
        governed=False,
        status=None,
        pipeline=None,
        commit_sha=_label(labels, "org.opencontainers.image.revision", _SHA),  # a label says, unverified
        branch=None,
        commit_time=None,
        repository_url=labels.get("org.opencontainers.image.source"),
        ci={},
        builder=None,
        runner_host=None,
        runner_platform=None,
        tfgov_ci_version=None,
        tools={},
        base_ref=labels.get("org.opencontainers.image.base.name"),
        base_digest=labels.get("org.opencontainers.image.base.digest"),
        lock_digest=None,
        python_version=_label(labels, "io.tfgov.python.version", _VERSION),
        tensorflow_version=_label(labels, "io.tfgov.tensorflow.version", _VERSION),
        decision=None,
        signed=False,
        signature_ref=None,
        sbom_digest=None,
        record_digest="",
        created=_created(labels.get("org.opencontainers.image.created")),
        packages=tuple(packages),
        findings=(),
        advisory_db=None,
        exceptions=(),
        attestations=(),
        warnings=()
        if packages
        else (f"{found.by_digest}: ungoverned, no SBOM (--sbom makes one with syft)",),
    )


_SHA = re.compile(r"^[0-9a-f]{40}$")
_VERSION = re.compile(r"^[0-9A-Za-z.+~_-]{1,50}$")


def _label(labels: Mapping[str, str], key: str, shape: re.Pattern[str]) -> str | None:
    """A label of an image nobody governs, kept only when it looks like what it claims to be (free
    text does not go into the commit or version columns)."""
    value = str(labels.get(key, "")).strip()
    return value if shape.match(value) else None


def _created(value: str | None) -> str | None:
    """``org.opencontainers.image.created`` (RFC 3339, any offset, nanoseconds) as the inventory
    keeps times: UTC, to the second; None when it is no time."""
    if not value:
        return None
    text = re.sub(r"(\.\d{1,6})\d*", r"\1", value.strip()).replace("Z", "+00:00")
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _syft(found: Found, registry: Registry) -> tuple[Any, ...]:
    """The packages syft finds in the image, read from the registry (its credentials and CA)."""
    with tempfile.TemporaryDirectory(prefix="tfgov-discover.") as tmp:
        out = Path(tmp) / "sbom.cdx.json"
        tools.run(
            ["syft", f"registry:{found.by_digest}", "-q", "-o", f"cyclonedx-json={out}"],
            env={**os.environ, "SYFT_CHECK_FOR_APP_UPDATE": "false", **registry.access.syft_env()},
            secrets=registry.access.secrets,
            timeout=3600,
        )
        return tuple(packages_of(json.loads(out.read_text()), f"{found.by_digest} (syft)"))


@dataclass(frozen=True)
class Discovered:
    """What one registry import stored, and what it left as it was."""

    stored: tuple[ImageEvidence, ...]
    kept: tuple[Found, ...]  # known already: its facts stay, the registry's tags are added


def import_registry(
    store: Any,
    host: str,
    patterns: Sequence[str],
    registries: Mapping[str, Mapping[str, Any]],
    key: str | None,
    *,
    sbom: bool,
) -> Discovered:
    """Every image of the matching repositories into the inventory, one transaction each
    (idempotent: one row a digest). An image the inventory knows keeps what it knows (a record
    imported with its out directory says more than the registry: findings, exceptions, the
    decision's details); the registry adds its tags, and only a verified record (an ungoverned
    image becoming governed) or packages where none were stored replace it."""
    from sqlalchemy import func, select

    from tfgov_ci.inventory import tables
    from tfgov_ci.inventory.ingest import insert, save

    registry = Registry.of(Reference(host, "x", "latest"), registries)
    stored, kept = [], []
    for repository in repositories(registry, patterns):
        for found in images(registry, repository):
            image = read(found, registry, registries, key, sbom=sbom)
            with store.writing() as conn:
                known = conn.execute(
                    select(tables.images.c.id, tables.images.c.governed).where(
                        tables.images.c.digest == found.digest
                    )
                ).first()
                if known is not None:
                    links = tables.image_packages
                    has_packages = conn.execute(
                        select(func.count()).select_from(links).where(links.c.image_id == known.id)
                    ).scalar_one()
                    upgrade = image.governed and not known.governed
                    if not upgrade and (known.governed or has_packages or not image.packages):
                        rows = [{"image_id": known.id, "tag": tag} for tag in found.tags]
                        if rows:
                            conn.execute(
                                insert(conn, tables.image_tags).values(rows).on_conflict_do_nothing()
                            )
                        kept.append(found)
                        continue
                save(conn, image)
            stored.append(image)
    return Discovered(tuple(stored), tuple(kept))
