"""What one stage hands the next, typed: read from the out directory, never from memory.

Each CI job runs one stage; what it needs of an earlier stage is that stage's result file
(``<out>/<stage>/result.json``, schema'd). These classes are the typed views later stages read,
so no stage digs in another's ``data`` by string key.

The image itself is handed over through the registry, not the out directory: with
``image.registry`` set, the build pushes it there by digest (no tag: no tag names an image the
gate has not allowed and cosign has not signed), and the stages after it read it by digest
(:class:`ImageSource`): the layout, when this out directory still holds it (a laptop's run),
else the registry, a blob at a time and each checked against its digest. So the out directory a
CI job hands the next holds results and evidence (kilobytes to a few MB), never layers, and a
code change uploads only the app layer and the manifests: registries keep each blob once.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from tfgov_ci._files import cache_dir, display_path
from tfgov_ci.context import Context
from tfgov_ci.errors import StageInputError
from tfgov_ci.oci import reference
from tfgov_ci.oci.layout import MEDIA_MANIFEST, Descriptor, Layout
from tfgov_ci.oci.reference import Reference
from tfgov_ci.oci.registry import Registry, layout_transport
from tfgov_ci.pipeline import Step, read_result, result_path

LAYOUT_DIR = "oci"  # <out>/build/oci: the built image, under each commit tag
FETCHED = "images"  # <cache>/images: one OCI layout of the blobs later stages fetched by digest


@dataclass(frozen=True)
class BuiltImage:
    """The image the build stage made (its result's ``outputs.layout`` and ``data``)."""

    layout: Path  # an OCI layout holding it under each commit tag
    digest: str  # the manifest's
    config_digest: str
    size: int  # compressed, all layers
    tags: tuple[str, ...]
    labels: dict[str, str]
    base_ref: str  # the pinned base, as tfgov.yaml names it
    base_digest: str
    base_layers: int  # how many of the image's layers are the base's
    lock_digest: str
    layers: tuple[dict[str, Any], ...]  # the layers on the base: digest, size, what, cached
    pushed: str  # registry/repository@digest: where the build pushed it by digest ("" for none)

    @property
    def base(self) -> dict[str, Any]:
        """The base as the build result records it: ``ref``, ``digest``, ``layers``."""
        return {"ref": self.base_ref, "digest": self.base_digest, "layers": self.base_layers}

    @staticmethod
    def layout_path(ctx: Context) -> Path:
        """Where the build stage writes the layout (for plans, before it exists)."""
        return result_path(ctx.out_dir, "build").parent / LAYOUT_DIR

    @classmethod
    def read(cls, ctx: Context) -> BuiltImage:
        """This commit's passed build result, or :class:`~tfgov_ci.errors.StageInputError`."""
        result = read_result(ctx, "build")
        data = result.data
        base = data.get("base") or {}
        return cls(
            # Always <out>/build/oci of this out directory: in CI the out directory moves between
            # jobs as an artifact, and the path the build job recorded may not exist here.
            layout=cls.layout_path(ctx),
            digest=str(data["digest"]),
            config_digest=str(data.get("config_digest", "")),
            size=int(data.get("size", 0)),
            tags=tuple(data.get("tags", ())),
            labels=dict(data.get("labels") or {}),
            base_ref=str(base.get("ref", "")),
            base_digest=str(base.get("digest") or ""),
            base_layers=int(base.get("layers", 0)),
            lock_digest=str(data.get("lock_digest", "")),
            layers=tuple(data.get("layers", ())),
            pushed=str(data.get("pushed") or ""),
        )

    def source(self, ctx: Context) -> ImageSource:
        return ImageSource(ctx, self)

    def subject(self, ctx: Context) -> Descriptor:
        """The image's manifest as the ``subject`` of an artifact about it (an SBOM, a signature):
        media type, digest, size."""
        source = self.source(ctx)
        manifest = source.read_json(self.digest)
        size = source.layout.blob_path(self.digest).stat().st_size
        return Descriptor(manifest.get("mediaType", MEDIA_MANIFEST), self.digest, size)


@runtime_checkable
class Attester(Protocol):
    """A sign backend that can attest more about the image it signed: what the record stage asks
    of the sign stage's backend to attest the build record (a backend without all three is not
    asked, and the record says it is not attested)."""

    def attest_commands(
        self, ctx: Context, work: str, digest: str, predicates: Mapping[str, str]
    ) -> dict[str, list[str]]:
        """The commands that attest each predicate (type -> file) about ``digest``."""
        ...

    def store_steps(self, ctx: Context, commands: Mapping[str, Any]) -> tuple[Step, ...]:
        """The plan's steps that store what ``commands`` make beside the image."""
        ...

    def execute(
        self,
        ctx: Context,
        commands: Mapping[str, list[str]],
        work: str,
        image: BuiltImage,
        *,
        stage: str = "sign",
    ) -> None:
        """Run ``commands`` and store what they make; ``stage``: the stage asking (its errors say
        what to run again)."""
        ...


def hands_off(ctx: Context) -> Reference | None:
    """Where the build pushes the image by digest for the later stages (``image.registry``'s
    repository), or None: the image stays in the out directory's layout."""
    return ctx.images().remote


def pushed_at(ctx: Context, digest: str) -> Reference:
    """The reference the build pushes the image to: its repository, by digest, no tag."""
    remote = hands_off(ctx)
    if remote is None:
        raise StageInputError("no image.registry: the image is not pushed", "set image.registry")
    return Reference(remote.registry, remote.repository, None, digest)


class ImageSource:
    """Where a stage after the build reads the image: this out directory's layout when it holds the
    image, else the registry the build pushed it to, blob by blob into one layout in the cache
    (``<cache>/images``, shared by every image: a blob is fetched once), each checked against its
    digest."""

    def __init__(self, ctx: Context, image: BuiltImage) -> None:
        self.image = image
        self.remote: Reference | None = None
        self._guard = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}
        here = image.layout
        if (here / "index.json").is_file() and Layout.open(here).has_blob(image.digest):
            self.layout = Layout.open(here)
            return
        if not image.pushed:
            raise StageInputError(
                f"the built image is not in {display_path(here)}, and the build did not push it",
                "pass the build's out directory along whole, or set image.registry: the build then "
                "pushes the image by digest and the later stages read it from there",
            )
        remote = reference.parse(image.pushed)
        self.remote = remote
        self.registry = Registry.of(remote, ctx.config.registries)
        self.layout = Layout.create(cache_dir() / FETCHED)
        if not self.layout.has_blob(image.digest):  # the manifest, by its digest, as a blob
            manifest = self.registry.read(remote)
            self.layout.put_bytes(manifest, MEDIA_MANIFEST)
        self.fetch(self.layout.read_json(image.digest)["config"]["digest"])

    @property
    def local(self) -> bool:
        """Whether the out directory's layout holds the image (else: the registry, by digest)."""
        return self.remote is None

    def fetch(self, digest: str) -> None:
        """Make sure the layout holds the blob ``digest`` (fetched from the registry when not; once,
        when several threads ask for it at the same time)."""
        with self._guard:
            lock = self._locks.setdefault(digest, threading.Lock())
        with lock:
            if self.layout.has_blob(digest):
                return
            if self.remote is None:
                raise StageInputError(f"{display_path(self.layout.path)} lacks blob {digest}", "build again")
            where = Reference(self.remote.registry, self.remote.repository, None, digest)
            self.registry.fetch_blob(where, self.layout.blob_path(digest))

    def read_json(self, digest: str) -> Any:
        self.fetch(digest)
        return self.layout.read_json(digest)

    def transport(self, tag: str) -> str:
        """The image as skopeo names a source: the layout under ``tag``, or the registry by digest."""
        if self.remote is None:
            return layout_transport(self.layout.path, tag)
        return f"docker://{self.remote}"
