"""What an SBOM backend promises: SPDX 2.3 JSON and CycloneDX JSON of the built image, annotated
with the commit, image digest and lock digest, and a summary in the stage result."""

from __future__ import annotations

from tfgov_ci.errors import ToolError


class SbomError(ToolError):
    """The SBOM could not be made (exit 3)."""
