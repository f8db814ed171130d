"""What a sign backend promises, and the evidence every one of them attests.

A signer signs the image **by digest** and attests, each as an in-toto statement whose subject is
that digest: SLSA provenance v1 (made here, from the context and the earlier stages' results),
the SBOM, the scan result and the policy decision. The SBOM, scan and policy predicates are small
documents that name the file they stand for by its sha256 (the SBOM itself is megabytes, which a
transparency log such as the public Rekor refuses: sigstore/cosign issue 3599); the files
themselves travel beside the image (the SBOMs as OCI referrers, see ``publish``).

Predicate types (:mod:`tfgov_ci.predicates`): ``https://slsa.dev/provenance/v1``, and under
tfgov-ci's own namespace ``https://tfgov-ci.dev/attestations/{sbom,scan,policy}/v1`` (the README
documents each field).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from tfgov_ci import __version__, tools
from tfgov_ci._files import TOOL_VERSIONS, cache_dir
from tfgov_ci.context import Context
from tfgov_ci.errors import ToolError
from tfgov_ci.pipeline import describe, read_result, result_path
from tfgov_ci.predicates import (
    BUILD_TYPE,
    NAMESPACE,
    POLICY_PREDICATE,
    SBOM_PREDICATE,
    SCAN_PREDICATE,
    SLSA_PROVENANCE,
)
from tfgov_ci.stages.handoff import BuiltImage
from tfgov_ci.wheels import parse_lock


class SignError(ToolError):
    """The image could not be signed or attested (exit 3)."""


class SigningKeyError(SignError):
    """No usable signing key: none configured, or its password is wrong (exit 2)."""

    exit_code = 2

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message, hint)


def file_digest(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def _sha256(digest: str) -> dict[str, str]:
    return {"sha256": digest.removeprefix("sha256:")}


def provenance(ctx: Context, image: BuiltImage, pipeline: str) -> dict[str, Any]:
    """The SLSA v1 provenance predicate of this build."""
    described = describe(ctx)
    cfg = ctx.config
    build = read_result(ctx, "build")
    root = ctx.git.root
    config_path = (
        cfg.file.relative_to(root).as_posix() if root and cfg.file.is_relative_to(root) else cfg.file.name
    )
    repository = described["repository_url"] or ""
    ref = f"refs/tags/{ctx.git.tags[0]}" if ctx.git.tags else f"refs/heads/{described['branch'] or ''}"
    lock = cfg.project_dir / cfg.dependencies.lock
    dependencies: list[dict[str, Any]] = [
        {"uri": f"git+{repository}@{ref}" if repository else ref, "digest": {"gitCommit": ctx.git.sha}},
    ]
    if image.base_digest:
        dependencies.append(
            {"uri": f"docker://{image.base_ref}", "digest": _sha256(image.base_digest), "name": "base image"}
        )
    if lock.is_file():
        dependencies.append(
            {"uri": cfg.dependencies.lock, "digest": _sha256(image.lock_digest), "name": "lock file"}
        )
        used = dict(build.data.get("wheels") or {})  # name -> sha256 of the wheel installed
        for req in parse_lock(lock):
            entry: dict[str, Any] = {"uri": f"pkg:pypi/{req.name}@{req.version}", "name": req.name}
            if req.name in used:
                entry["digest"] = {"sha256": used[req.name]}
            else:  # provided by the base, or built by a Dockerfile backend: the hashes the lock allows
                entry["annotations"] = {"sha256_allowed": sorted(req.hashes)}
            dependencies.append(entry)
    ran = {command.argv[0] for stage in _stages_before(ctx) for command in stage}
    ci = described["ci"]
    return {
        "buildDefinition": {
            "buildType": BUILD_TYPE,
            "externalParameters": {
                "repository": repository,
                "ref": ref,
                "commit": ctx.git.sha,
                "config": {"path": config_path, "digest": cfg.digest},
                "pipeline": pipeline,
            },
            "internalParameters": {
                "tools": tools.versions(sorted(ran | {"git"}), cache_dir() / TOOL_VERSIONS),
                "tfgov_ci": __version__,
                "source_date_epoch": ctx.source_date_epoch,
            },
            "resolvedDependencies": dependencies,
        },
        "runDetails": {
            "builder": {
                "id": f"{NAMESPACE}/builders/{ci['provider']}",
                "version": {"tfgov-ci": __version__},
            },
            "metadata": {
                "invocationId": ci["job_url"] or ci["pipeline_url"] or f"local:{ctx.host}:{build.started}",
                "startedOn": build.started,
                "finishedOn": build.finished,
            },
        },
    }


def _stages_before(ctx: Context) -> list[tuple[tools.Ran, ...]]:
    out = []
    for stage in ("lock", "build", "sbom", "scan", "policy"):
        if result_path(ctx.out_dir, stage).is_file():
            out.append(read_result(ctx, stage).commands)
    return out


def evidence(ctx: Context, image: BuiltImage, pipeline: str) -> dict[str, dict[str, Any]]:
    """Every predicate to attest, by predicate type: provenance, SBOM, scan, policy decision."""
    sbom = read_result(ctx, "sbom")
    scan = read_result(ctx, "scan")
    policy = read_result(ctx, "policy")
    cyclonedx = Path(sbom.outputs["cyclonedx"])
    findings = Path(scan.outputs["findings"])
    return {
        SLSA_PROVENANCE: provenance(ctx, image, pipeline),
        SBOM_PREDICATE: {
            "format": "cyclonedx",
            "mediaType": "application/vnd.cyclonedx+json",
            "digest": file_digest(cyclonedx),
            "size": cyclonedx.stat().st_size,
            "packages": sbom.data.get("packages"),
            "by_type": sbom.data.get("by_type", {}),
        },
        SCAN_PREDICATE: {
            "findings_digest": file_digest(findings),
            "total": scan.data.get("total"),
            "by_severity": scan.data.get("by_severity", {}),
            "fixable": scan.data.get("fixable"),
            "scanners": scan.data.get("scanners", []),
            "scanned_on": scan.finished,
        },
        POLICY_PREDICATE: {
            "allow": bool(policy.data.get("allow")),  # read_result refuses a policy that did not pass
            "engine": policy.data.get("engine"),
            "rules": policy.data.get("rules", []),
            "exceptions": policy.data.get("exceptions", {}),
            "decision_digest": file_digest(Path(policy.outputs["decision"])),
            "input_digest": file_digest(Path(policy.outputs["input"])),
            "decided_on": policy.finished,
        },
    }


def predicate_file(index: int, kind: str) -> str:
    """``0-provenance.json`` for the first predicate, of type ``https://slsa.dev/provenance/v1``."""
    return f"{index}-{kind.rsplit('/', 2)[-2]}.json"


def write_predicates(folder: Path, predicates: dict[str, dict[str, Any]]) -> dict[str, Path]:
    """Each predicate into its own file (what ``cosign attest --predicate`` reads)."""
    paths = {}
    for index, (kind, predicate) in enumerate(predicates.items()):
        path = folder / predicate_file(index, kind)
        path.write_text(json.dumps(predicate, sort_keys=True, separators=(",", ":")), encoding="utf-8")
        paths[kind] = path
    return paths
