"""The sbom stage: what is inside the built image, as SPDX and CycloneDX."""
