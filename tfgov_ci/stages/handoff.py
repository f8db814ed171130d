"""What one stage hands the next, typed: read from the out directory, never from memory.

Each CI job runs one stage; what it needs of an earlier stage is that stage's result file
(``<out>/<stage>/result.json``, schema'd). These classes are the typed views later stages read,
so no stage digs in another's ``data`` by string key.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tfgov_ci.context import Context
from tfgov_ci.pipeline import read_result, result_path

LAYOUT_DIR = "oci"  # <out>/build/oci: the built image, under each commit tag


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
        )
