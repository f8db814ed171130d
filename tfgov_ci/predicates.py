"""The predicate types tfgov-ci attests, and its build type: what ``verify`` and the inventory
read without the machinery that makes them (the README documents each)."""

SLSA_PROVENANCE = "https://slsa.dev/provenance/v1"
NAMESPACE = "https://tfgov-ci.dev"
SBOM_PREDICATE = f"{NAMESPACE}/attestations/sbom/v1"
SCAN_PREDICATE = f"{NAMESPACE}/attestations/scan/v1"
POLICY_PREDICATE = f"{NAMESPACE}/attestations/policy/v1"
RECORD_PREDICATE = f"{NAMESPACE}/attestations/record/v1"
BUILD_TYPE = f"{NAMESPACE}/build-types/pipeline/v1"  # a tfgov-ci pipeline run (README: provenance)
