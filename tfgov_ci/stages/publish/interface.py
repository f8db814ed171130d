"""What a publish backend promises: the image in the registry by digest, then its tags.

Registry failures are :class:`~tfgov_ci.oci.registry.RegistryError` (exit 3) from the one registry
client; a commit tag that names another digest already is :class:`TagConflict` (exit 1).
"""

from __future__ import annotations

from tfgov_ci.oci.registry import RegistryError, TagConflict

__all__ = ["RegistryError", "TagConflict"]
