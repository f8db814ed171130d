"""Evidence beside the image in the registry: OCI artifacts whose ``subject`` is the image.

Each document (an SBOM; a cosign bundle, made by cosign without uploading it) is an artifact
manifest (empty config, one layer) pushed by digest with skopeo (the first alone, the others at
once), through the one registry client (:mod:`tfgov_ci.oci.registry`). Registries with the OCI
1.1 referrers API (Harbor 2.8+) list it from its ``subject``, and nothing more is
written there: no tag, so a tag immutability rule covering every tag has nothing to refuse. For
those without it (CNCF distribution 2.8, the local test registry), the referrers tag fallback of
the distribution spec is kept instead: an OCI index at tag ``sha256-<image hex>`` listing every
referrer, merged with what is already there. Where the API cannot be asked (its HTTP read takes
the environment's credentials or an auth file's entry for the host, not a credential helper's),
the fallback is written as well, which is what cosign did. :func:`listing` reads whichever of
the two lists an image's referrers, as cosign reads them; :func:`fetch` finds an image's SBOM
again through it.
"""

from __future__ import annotations

import functools
import json
import re
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from tfgov_ci import tools
from tfgov_ci.oci import reference
from tfgov_ci.oci.layout import MEDIA_INDEX, MEDIA_MANIFEST, Descriptor, Layout
from tfgov_ci.oci.reference import Reference
from tfgov_ci.oci.registry import Call, Registry, RegistryError, layout_transport, registry_refused, resolve

EMPTY_CONFIG = "application/vnd.oci.empty.v1+json"
HARBOR_SBOM = "application/vnd.goharbor.harbor.sbom.v1"  # Harbor's SBOM tab lists this type
SPDX_JSON = "application/spdx+json"
CYCLONEDX_JSON = "application/vnd.cyclonedx+json"
# kind -> (artifact type, layer media type)
KINDS = {"spdx": (HARBOR_SBOM, SPDX_JSON), "cyclonedx": (CYCLONEDX_JSON, CYCLONEDX_JSON)}
FORMAT_ANNOTATION = "io.tfgov.sbom.format"  # on each SBOM artifact and its index entry: which kind


class ReferrerError(RegistryError):
    """An artifact could not be attached to, or an SBOM found beside, an image (exit 3)."""


@dataclass(frozen=True)
class Attached:
    kind: str
    digest: str
    artifact_type: str


def fallback_tag(digest: str) -> str:
    """The referrers tag of the distribution spec: ``sha256:abc...`` -> ``sha256-abc...``; for a
    plan's placeholder ``<build digest>``, ``sha256-<build digest hex>``."""
    if digest.startswith("<"):
        return f"sha256-{digest[:-1]} hex>"
    return digest.replace(":", "-")


def _go_descriptor(entry: dict[str, Any], artifact_type: str | None, annotations: Any) -> dict[str, Any]:
    """A descriptor with its fields in the order of image-spec's Go struct."""
    out: dict[str, Any] = {"mediaType": entry["mediaType"], "digest": entry["digest"], "size": entry["size"]}
    if annotations:
        out["annotations"] = dict(sorted(annotations.items()))
    if artifact_type:
        out["artifactType"] = artifact_type
    return out


@dataclass(frozen=True)
class Artifact:
    """A document to store beside an image: an OCI artifact manifest (empty config, the document
    as its one layer) whose ``subject`` is the image."""

    name: str  # what the plan calls it (its tag in the temporary layout)
    artifact_type: str
    media_type: str  # the layer's
    content: bytes
    annotations: Mapping[str, str]
    layer_annotations: Mapping[str, str] = field(default_factory=dict)
    typed_config: bool = False  # the artifact type said on the config too (as cosign writes it)


def sbom_artifact(kind: str, path: Path, created: str) -> Artifact:
    """An SBOM (``spdx`` or ``cyclonedx``) as the artifact publish attaches, Harbor's type for SPDX."""
    artifact_type, media_type = KINDS[kind]
    return Artifact(
        kind,
        artifact_type,
        media_type,
        path.read_bytes(),
        {"org.opencontainers.image.created": created, FORMAT_ANNOTATION: kind},
        {"org.opencontainers.image.title": path.name},
    )


def attach_calls(
    registry: Registry, target: Reference, pushes: Mapping[str, str], subject_digest: str
) -> list[Call]:
    """The calls :func:`attach` makes, in order, for artifacts ``{name: what the push is}``
    (``<...>``: the temporary layout, the digests); the first push runs alone, the others at the
    same time."""
    with (
        registry.access.skopeo_args("", planned=True) as inspect,
        registry.access.skopeo_args("dest", planned=True) as dest,
    ):
        calls = [
            Call(
                what,
                tuple(
                    registry.copy_argv(
                        layout_transport("<temporary layout>", name),
                        f"docker://{_at(target, digest=f'<{name} artifact digest>')}",
                        dest,
                    )
                ),
            )
            for name, what in pushes.items()
        ]
        tag = _at(target, tag=fallback_tag(subject_digest))
        calls.append(
            Call(
                "ask the registry's OCI 1.1 referrers API for the image's referrers (an HTTP read, "
                "in-process): where it answers, it lists the artifacts, and no tag is written",
                (),
            )
        )
        calls.append(
            Call(
                f"read the referrers tag fallback index ({NO_API})",
                tuple(registry.inspect_argv(tag, inspect)),
                optional=True,
            )
        )
        calls.append(
            Call(
                f"merge this image's referrers into it and push it, the referrers tag fallback ({NO_API})",
                tuple(
                    registry.copy_argv(
                        layout_transport("<temporary layout>", "referrers"),
                        f"docker://{tag}",
                        dest,
                        index_only=True,
                    )
                ),
                optional=True,
            )
        )
    return calls


NO_API = "only when the registry has no OCI 1.1 referrers API"


@dataclass(frozen=True)
class Listing:
    """The OCI index listing an image's referrers, and where it was read."""

    index: bytes | None  # None: nothing lists any
    where: str  # "OCI 1.1 referrers API" or "referrers tag fallback"


def api_index(registry: Registry, pinned: Reference) -> bytes | None:
    """The referrers API's index for ``pinned`` (by digest), or None where the registry has no
    such API or it cannot be asked here (no credentials it can read, a credential helper's;
    unreachable over HTTP)."""
    try:
        return registry.referrers(pinned)
    except RegistryError:
        return None


def listing(
    registry: Registry, pinned: Reference, read: Callable[[Reference], bytes | None] | None = None
) -> Listing:
    """Whichever lists ``pinned``'s referrers, as cosign chooses: the OCI 1.1 referrers API where
    the registry has one, else the referrers tag fallback index, read with ``read`` (default:
    :meth:`Registry.manifest`)."""
    api = api_index(registry, pinned)
    if api is not None:
        return Listing(api, "OCI 1.1 referrers API")
    tag = _at(pinned, tag=fallback_tag(str(pinned.digest)))
    return Listing((read or registry.manifest)(tag), "referrers tag fallback")


def _at(target: Reference, *, tag: str | None = None, digest: str | None = None) -> Reference:
    return Reference(target.registry, target.repository, tag, digest)


class Stored(NamedTuple):
    """What a stage stores beside an image, as a registry's refusal of it is said (:func:`refusal`)."""

    what: str  # what was refused: "the SBOMs"
    listed: str  # what the referrers tag lists: "the SBOMs, signatures and attestations"
    then: str  # what stands, and what to run again: "nothing was tagged, run publish again"


def refusal(stderr: str, host: str, step: str, stored: Stored) -> tuple[str, str] | None:
    """A registry's refusal to store a referrer (an immutable ``sha256-*`` tag, no push rights),
    as (message, hint) saying what to configure; None for any other failure."""
    what, listed, then = stored
    # Whole words only: a digest in the message holds "412" or "403" often enough.
    words = set(re.findall(r"[a-z0-9]+", stderr.lower()))
    if words & {"immutable", "412", "precondition"}:
        return (
            f"{host} refused to update the image's referrers tag sha256-<digest> ({step}): "
            "a tag immutability rule covers it",
            f"{listed} are listed in that tag (the referrers tag fallback): exclude sha256-* tags "
            "from the rule (Harbor: the project's Policy > Tag Immutability), or use a registry with "
            f"the OCI 1.1 referrers API; {then}",
        )
    if registry_refused(stderr, host):  # a line naming the registry: not a KMS's refusal
        return (
            f"{host} refused to store {what} ({step}): access denied",
            "the registry account (TFGOV_REGISTRY_USER, or the CI's) needs push rights on the "
            "repository, signatures, SBOMs and sha256-* tags included (Harbor: a robot account with "
            f"push on the project); {then}",
        )
    return None


def attach(
    target: Reference,
    subject: Descriptor,
    artifacts: Sequence[Artifact],
    registries: Mapping[str, Mapping[str, Any]],
    env: Mapping[str, str] | None = None,
    *,
    stored: Stored | None = None,
    step: str = "storing them",
) -> list[Attached]:
    """Push each artifact by its own digest (the first alone, then the others at once); then,
    unless the registry's referrers API lists them, list them all in the referrers tag fallback
    index with one read and one write. With ``stored``, a registry's
    refusal (:func:`refusal`) is :class:`ReferrerError` saying what to configure."""
    registry = Registry.of(target, registries, env)
    try:
        return _attach(registry, target, subject, artifacts)
    except RegistryError as exc:
        said = None if stored is None else refusal(exc.stderr_tail, registry.host, step, stored)
        if said is None:
            raise
        raise ReferrerError(
            *said, argv=exc.argv, returncode=exc.returncode, stderr_tail=exc.stderr_tail
        ) from None


def _attach(
    registry: Registry, target: Reference, subject: Descriptor, artifacts: Sequence[Artifact]
) -> list[Attached]:
    with tempfile.TemporaryDirectory(prefix="tfgov-referrers.") as tmp:
        layout = Layout.create(Path(tmp))
        empty = layout.put_bytes(b"{}", EMPTY_CONFIG)
        attached: list[Attached] = []
        entries: list[dict[str, Any]] = []
        for artifact in artifacts:
            layer = layout.put_bytes(artifact.content, artifact.media_type)
            layer = Descriptor(layer.media_type, layer.digest, layer.size, dict(artifact.layer_annotations))
            config = empty.to_json()
            if artifact.typed_config:
                config["artifactType"] = artifact.artifact_type
            manifest = {
                "schemaVersion": 2,
                "mediaType": MEDIA_MANIFEST,
                "artifactType": artifact.artifact_type,
                "config": config,
                "layers": [layer.to_json()],
                "subject": subject.to_json(),
                "annotations": dict(artifact.annotations),
            }
            descriptor = layout.put_json(manifest, MEDIA_MANIFEST)
            layout.tag(descriptor, (artifact.name,))
            attached.append(Attached(artifact.name, descriptor.digest, artifact.artifact_type))
            entries.append(
                _go_descriptor(descriptor.to_json(), artifact.artifact_type, manifest["annotations"])
            )
        pushes = [
            functools.partial(registry.push, layout_transport(tmp, a.kind), _at(target, digest=a.digest))
            for a in attached
        ]
        # The first alone: it brings the empty config every artifact shares, which a registry
        # given by several pushes at once may lose ("manifest blob unknown", CNCF distribution);
        # the others find it there and send only their own layer, at the same time.
        if pushes:
            pushes[0]()
        tools.together(pushes[1:], tools.cores())
        if api_index(registry, _at(target, digest=subject.digest)) is not None:
            return attached  # the registry lists them by their subject
        # The referrers tag fallback: merge into whatever index already lists this image's referrers.
        tag = _at(target, tag=fallback_tag(subject.digest))
        existing = registry.manifest(tag)
        known = json.loads(existing)["manifests"] if existing else []
        mine = {e["digest"] for e in entries}
        merged = [_go_descriptor(m, m.get("artifactType"), m.get("annotations")) for m in known]
        merged = [m for m in merged if m["digest"] not in mine] + entries
        index = {"schemaVersion": 2, "mediaType": MEDIA_INDEX, "manifests": merged}
        # skopeo (containers/image) cannot push an index byte for byte (it re-encodes it, and may
        # drop artifactType): fine here, nothing refers to the fallback index by digest, and each
        # entry keeps its annotations (io.tfgov.sbom.format, a bundle's predicate type).
        index_desc = layout.put_bytes(json.dumps(index, separators=(",", ":")).encode(), MEDIA_INDEX)
        layout.tag(index_desc, ("referrers",))
        registry.push(layout_transport(tmp, "referrers"), tag, index_only=True)
    return attached


def fetch(
    image: str,
    kind: str,
    registries: Mapping[str, Mapping[str, Any]],
    env: Mapping[str, str] | None = None,
) -> bytes:
    """The SBOM (``spdx`` or ``cyclonedx``) attached to ``image``, found by its digest."""
    ref = reference.parse(image)
    registry = Registry.of(ref, registries, env)
    pinned = resolve(ref, registry)
    return fetch_listed(registry, pinned, listing(registry, pinned).index, kind)


def fetch_listed(registry: Registry, pinned: Reference, index: bytes | None, kind: str) -> bytes:
    """The newest ``kind`` SBOM that ``index``, the image's :func:`listing` as read already (None:
    there is none), lists for the image ``pinned`` (by digest)."""
    newest = newest_listed(pinned, index, kind)
    with tempfile.TemporaryDirectory(prefix="tfgov-sbom-fetch.") as tmp:
        registry.pull(_at(pinned, digest=newest["digest"]), layout_transport(tmp, "sbom"))
        layout = Layout.open(Path(tmp))
        manifest = layout.read_json(newest["digest"])
        return layout.read_blob(manifest["layers"][0]["digest"])  # checked against its digest


def newest_listed(pinned: Reference, index: bytes | None, kind: str) -> dict[str, Any]:
    """The descriptor of the newest ``kind`` SBOM ``index`` lists for ``pinned``; ReferrerError
    when it lists none."""
    ref = pinned
    digest = str(pinned.digest)
    repository = f"{ref.registry}/{ref.repository}"
    artifact_type = KINDS[kind][0]
    # skopeo re-encodes the fallback index and may drop descriptors' artifactType (containers/image
    # predates it): the io.tfgov.sbom.format annotation, which it keeps, says what each entry is.
    candidates = [
        m
        for m in (json.loads(index)["manifests"] if index else [])
        if m.get("artifactType") == artifact_type or m.get("annotations", {}).get(FORMAT_ANNOTATION) == kind
    ]
    if not candidates:
        raise ReferrerError(
            f"no {kind} SBOM is attached to {repository}@{digest}",
            "publish it with `tfgov-ci run publish` after the sbom stage",
        )
    # The newest: by creation time, and among equal times (the same commit's SBOMs made again)
    # the one attached last, which the index lists last.
    newest = max(
        enumerate(candidates),
        key=lambda pair: (
            pair[1].get("annotations", {}).get("org.opencontainers.image.created", ""),
            pair[0],
        ),
    )[1]
    return dict(newest)
