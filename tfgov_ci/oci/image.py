"""Image configs and manifests, written the same way by every tfgov-ci builder."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from tfgov_ci.oci.layer import Layer
from tfgov_ci.oci.layout import MEDIA_CONFIG, MEDIA_MANIFEST, Descriptor, Layout


def rfc3339(epoch: int) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Image:
    """A manifest written to a layout, with what describes it."""

    manifest: Descriptor
    config: Descriptor
    config_json: dict[str, Any]
    layers: tuple[Descriptor, ...]


def write_image(
    layout: Layout,
    config: dict[str, Any],
    layers: list[Descriptor],
    annotations: dict[str, str] | None = None,
) -> Image:
    """Store the config and the manifest (canonical JSON) and return their descriptors."""
    config_desc = layout.put_json(config, MEDIA_CONFIG)
    manifest: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": MEDIA_MANIFEST,
        "config": config_desc.to_json(),
        "layers": [layer.to_json() for layer in layers],
    }
    if annotations:
        manifest["annotations"] = dict(sorted(annotations.items()))
    manifest_desc = layout.put_json(manifest, MEDIA_MANIFEST)
    return Image(manifest_desc, config_desc, config, tuple(layers))


def history(epoch: int, created_by: str, comment: str = "") -> dict[str, Any]:
    entry = {"created": rfc3339(epoch), "created_by": created_by}
    if comment:
        entry["comment"] = comment
    return entry


def append_layers(config: dict[str, Any], layers: list[tuple[Layer, str]], epoch: int) -> dict[str, Any]:
    """A copy of ``config`` with ``layers`` added (diff_ids and history, one entry a layer)."""
    out = {**config}
    rootfs = dict(out.get("rootfs", {"type": "layers", "diff_ids": []}))
    rootfs["diff_ids"] = [*rootfs.get("diff_ids", []), *(layer.diff_id for layer, _ in layers)]
    out["rootfs"] = rootfs
    out["history"] = [*out.get("history", []), *(history(epoch, what) for _, what in layers)]
    out["created"] = rfc3339(epoch)
    return out
