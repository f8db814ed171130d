#!/usr/bin/env bash
# `make tools-image`: the CI tools image (tools-image/, README "The tools image").
#   TOOLS_REGISTRY unset: build it into tools-image/.tfgov/base/oci (an OCI layout) and print its
#     digest; load it into Docker with skopeo (the README says how).
#   TOOLS_REGISTRY=host[:port]: run its governed pipeline (base-image: build, sbom, scan, policy,
#     sign, publish, record) and publish it there as platform/tfgov-ci. The sign stage needs
#     COSIGN_PRIVATE_KEY and COSIGN_PASSWORD in the environment; the registry's credentials come
#     from the usual places (REGISTRY_USER/REGISTRY_PASSWORD, or docker's auth file).
# The first build writes tools-image/tfgov-base.lock.json (the Debian packages of the day);
# TOOLS_UPDATE_LOCK=1 resolves them again.
set -euo pipefail
cd "$(dirname "$0")/../tools-image"
read -ra tfgov <<<"${TFGOV:-tfgov-ci}"  # TFGOV: another tfgov-ci command, e.g. "python -m tfgov_ci"
if [[ -z ${TOOLS_REGISTRY:-} ]]; then
  exec "${tfgov[@]}" base build --definition tfgov-base.yaml ${TOOLS_UPDATE_LOCK:+--update-lock}
fi
if [[ ! -f tfgov-base.lock.json || -n ${TOOLS_UPDATE_LOCK:-} ]]; then
  "${tfgov[@]}" base build --definition tfgov-base.yaml --update-lock
fi
org=$(mktemp)
trap 'rm -f "$org"' EXIT
printf 'version: 1\ndefaults:\n  image:\n    registry: "%s"\n' "$TOOLS_REGISTRY" >"$org"
"${tfgov[@]}" run --org-config "$org"
