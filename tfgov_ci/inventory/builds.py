"""What each build cost: the build stage's duration and peak memory, the image's size and its own
layers' sizes (table ``image_builds``), for ``inventory stale`` (how much archiving frees) and
``inventory forecast`` (what the next build and its containers will need).

Read from the build stage's result beside the record (``build/result.json``: ``size`` is the sum of
the manifest's compressed layer sizes, ``layers`` the image's own on top of the base,
``peak_memory_bytes`` and each layer's ``diff_id`` since issue 14); a record on its own (from the
registry's attestation) gives the build stage's duration only. An older result without
``peak_memory_bytes`` leaves it unknown rather than guessed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class BuildFacts:
    started: str | None
    duration_s: float | None
    peak_memory_bytes: int | None
    size_bytes: int | None
    # the image's own layers: digest, compressed size, and the uncompressed digest ('' unknown),
    # which is how an SBOM (syft's layerID) names the layer a package is in
    layers: tuple[tuple[str, int, str], ...]


def of(record: Mapping[str, Any], result: Mapping[str, Any] | None) -> BuildFacts | None:
    """The build's facts from its passed result, else from the record's build stage entry."""
    entry = next((s for s in record.get("stages", []) if s.get("stage") == "build"), None)
    if result is not None and result.get("status") == "passed":
        data = result.get("data") or {}
        layers = tuple(
            (str(layer.get("digest", "")), int(layer.get("size", 0)), str(layer.get("diff_id", "")))
            for layer in data.get("layers") or []
            if isinstance(layer, dict)
        )
        memory = data.get("peak_memory_bytes")
        return BuildFacts(
            result.get("started"),
            _number(result.get("duration_s")),
            int(memory) if isinstance(memory, int | float) else None,
            int(data["size"]) if isinstance(data.get("size"), int | float) else None,
            layers,
        )
    if entry is not None and entry.get("status") == "passed":
        return BuildFacts(entry.get("started"), _number(entry.get("duration_s")), None, None, ())
    return None


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) else None


COLUMNS = ("image_id", "started", "duration_s", "peak_memory_bytes", "size_bytes", "layers")


def row(image_id: int, facts: BuildFacts) -> tuple[Any, ...]:
    """The image's row of ``image_builds``, in the order of :data:`COLUMNS`."""
    layers = json.dumps([list(layer) for layer in facts.layers])
    return (image_id, facts.started, facts.duration_s, facts.peak_memory_bytes, facts.size_bytes, layers)
