"""What the inventory learns of one image, read whole from a build record and its out directory.

The record (schemas/build-record.schema.json) names the commit, pipeline, runner, tools, image and
evidence; the out directory beside it (``.tfgov/out``) adds what the record points at: the build
result (base, lock, labels), the CycloneDX SBOM (every package), the findings file, the policy
decision (and the exceptions it used). A stage result counts only when it is of the record's commit
and configuration, as the record stage itself reads them. Everything is checked before anything is
stored: a record that breaks its schema is :class:`RecordError` (exit 2) naming the file and key.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tfgov_ci import _resources
from tfgov_ci.errors import Problem, UsageError
from tfgov_ci.findings import Finding, ScanReport, load, read_json
from tfgov_ci.inventory import builds
from tfgov_ci.inventory.sbom import Package, read_packages
from tfgov_ci.predicates import RECORD_PREDICATE
from tfgov_ci.stages.policy.exceptions import Exception_

RECORD_FILE = "record.json"
GOVERNED_HINT = "import a build record (<out>/record.json) or the out directory of `tfgov-ci run`"
# The record stage's own attestation, and which out-directory file each other predicate attests.
_ATTESTED_FILES = {
    "https://tfgov-ci.dev/attestations/sbom/v1": ("sbom", "sbom.cdx.json"),
    "https://tfgov-ci.dev/attestations/scan/v1": ("scan", "findings.json"),
    "https://tfgov-ci.dev/attestations/policy/v1": ("policy", "decision.json"),
}


class RecordError(UsageError):
    """A build record that cannot be imported as it is (exit 2): its problems, file and key."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(problems)
        super().__init__(self.problems[0].render())

    def lines(self) -> list[str]:
        return [f"error: {p.render()}" for p in self.problems]

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled by its problems (from an import's reading process to the one reporting it)."""
        return (RecordError, (self.problems,))


@dataclass(frozen=True)
class ExceptionUsed:
    finding: str
    package: str
    reason: str
    owner: str
    approved_by: str
    expires: str

    def as_policy_entry(self) -> Exception_:
        """The policy stage's own entry, so that "excepted" means what the gate meant by it."""
        return Exception_(
            0,
            self.finding,
            self.package,
            "*",
            self.reason,
            self.owner,
            self.approved_by,
            dt.date.fromisoformat(self.expires),
            None,
            "",
            None,
        )


@dataclass(frozen=True)
class Attestation:
    predicate_type: str
    document_digest: str | None  # sha256 of the attested document, when it is at hand


@dataclass(frozen=True)
class ImageEvidence:
    """One image as the inventory stores it; ``source`` is the file it was read from."""

    source: str
    digest: str
    repository: str | None
    tags: tuple[str, ...]
    governed: bool
    status: str | None
    pipeline: str | None
    commit_sha: str | None
    branch: str | None
    commit_time: int | None
    repository_url: str | None
    ci: Mapping[str, str | None]  # provider, pipeline_id, pipeline_url, job_id, job_url
    builder: str | None
    runner_host: str | None
    runner_platform: str | None
    tfgov_ci_version: str | None
    tools: Mapping[str, str | None]
    base_ref: str | None
    base_digest: str | None
    lock_digest: str | None
    python_version: str | None
    tensorflow_version: str | None
    decision: str | None  # allow, deny, None
    signed: bool
    signature_ref: str | None
    sbom_digest: str | None
    record_digest: str
    created: str | None
    packages: tuple[Package, ...]
    findings: tuple[Finding, ...]
    advisory_db: str | None  # what the scanners matched against
    exceptions: tuple[ExceptionUsed, ...]
    attestations: tuple[Attestation, ...]
    warnings: tuple[str, ...] = ()
    build: builds.BuildFacts | None = None  # what the build cost (duration, memory, sizes)

    def excepted(self, finding: Finding) -> bool:
        """Whether the policy decision let this finding pass under a governed exception."""
        for entry in self.exceptions:
            try:
                if entry.as_policy_entry().matches(finding):
                    return True
            except ValueError:  # an expiry that is no date: the gate could not have used it
                continue
        return False


def sha256(path: Path) -> str:
    return bytes_digest(path.read_bytes())


def bytes_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _out_dir(record_file: Path) -> Path | None:
    """The out directory a record file sits in: ``<out>/record.json`` or the attested copy,
    ``<out>/record/record.json``; None for a record on its own."""
    for folder in (record_file.parent, record_file.parent.parent):
        if (folder / "build" / "result.json").is_file():
            return folder
    return None


@functools.cache
def _validator() -> Any:
    """The build record's validator, made once: its schema checked and its references resolved
    once per process, not once per record (an import of 10,000 records)."""
    import jsonschema

    return jsonschema.Draft202012Validator(_resources.schema("build-record"))


def _schema_problems(path: Path, data: Any) -> list[Problem]:
    validator = _validator()
    if validator.is_valid(data):
        return []
    problems = []
    for error in sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path)):
        key = ".".join(str(p) if isinstance(p, str) else f"[{p}]" for p in error.absolute_path)
        problems.append(
            Problem(
                str(path),
                key.replace(".[", "["),
                error.message,
                "a tfgov-ci build record (schemas/build-record.schema.json), as `tfgov-ci run` writes it",
            )
        )
    return problems


def _result(out: Path | None, stage: str, record: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """A stage's passed result in the out directory, when it is of the record's commit and config."""
    if out is None:
        return None
    try:
        data = json.loads((out / stage / "result.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None  # not a stage result
    same = data.get("commit") == record["commit"]["sha"] and (
        data.get("config_digest") == record["config"]["digest"]
    )
    return data if same else None


def read(path: Path) -> ImageEvidence:
    """The image a record file, or an out directory holding ``record.json``, describes."""
    record_file = path / RECORD_FILE if path.is_dir() else path
    if path.is_dir() and not record_file.is_file():
        raise RecordError([Problem(str(path), "", f"no {RECORD_FILE} in this folder", GOVERNED_HINT)])
    record = read_json(record_file)
    check(record, str(record_file))
    return from_record(record, str(record_file), sha256(record_file), _out_dir(record_file))


@dataclass(frozen=True)
class Attested:
    """What the registry holds beside an image whose record came from its attestation (verified
    with the key): the stored SBOM's packages, the image's labels, the attested decision."""

    packages: tuple[Package, ...]
    sbom_digest: str | None
    labels: Mapping[str, str]
    decision: str | None
    base_ref: str | None
    base_digest: str | None
    lock_digest: str | None
    attestations: tuple[Attestation, ...]


def check(record: Any, source: str) -> None:
    """RecordError unless ``record`` is a build record of a built image."""
    problems = _schema_problems(Path(source), record)
    if not problems and not record["image"].get("digest"):
        problems.append(
            Problem(
                source,
                "image.digest",
                "the record names no image digest (the build stage did not run)",
                "import the record of a run that built the image",
            )
        )
    if problems:
        raise RecordError(problems)


def from_record(
    record: Mapping[str, Any],
    source: str,
    record_digest: str,
    out: Path | None,
    attested: Attested | None = None,
) -> ImageEvidence:
    """The image a checked record describes, with what its out directory, or (``attested``) the
    registry beside the image, adds."""
    record_file = Path(source)
    digest = str(record["image"]["digest"])
    warnings: list[str] = []

    build = _result(out, "build", record)
    build_data = build.get("data", {}) if build and build.get("status") == "passed" else {}
    labels = build_data.get("labels") or {}
    base = build_data.get("base") or {}

    packages: tuple[Package, ...] = attested.packages if attested else ()
    sbom_file = out / "sbom" / "sbom.cdx.json" if out else None
    sbom = _result(out, "sbom", record)
    sbom_digest = attested.sbom_digest if attested else None
    if sbom_file is not None and sbom and sbom.get("status") == "passed" and sbom_file.is_file():
        read, sbom_digest = read_packages(sbom_file)
        packages = tuple(read)
    else:
        if not packages:
            warnings.append(f"{record_file}: no SBOM of this build beside it: its packages are not recorded")
    if attested:
        labels = {**attested.labels, **labels}

    report: ScanReport | None = None
    scan = _result(out, "scan", record)
    if out is not None and scan and scan.get("status") == "passed" and (out / "scan/findings.json").is_file():
        report = load(out / "scan" / "findings.json")

    decision_file = out / "policy" / "decision.json" if out else None
    decision_doc = _decision(decision_file, digest) if decision_file else None
    exceptions = tuple(
        ExceptionUsed(
            str(e.get("id", "")),
            str(e.get("package", "")),
            str(e.get("reason", "")),
            str(e.get("owner", "")),
            str(e.get("approved_by", "")),
            str(e.get("expires", "")),
        )
        for e in ((decision_doc or {}).get("exceptions") or {}).get("used", [])
        if isinstance(e, dict)
    )

    evidence = record.get("evidence") or {}
    attestations = [
        Attestation(str(a["predicate_type"]), _attested_digest(out, str(a["predicate_type"])))
        for a in evidence.get("attestations", [])
        if isinstance(a, dict) and a.get("predicate_type")
    ]
    recorded = _result(out, "record", record)
    if recorded and recorded.get("status") == "passed" and (recorded.get("data") or {}).get("attested"):
        attestations.append(Attestation(RECORD_PREDICATE, recorded["data"].get("digest")))
    if attested:
        attestations = list(attested.attestations)

    commit = record["commit"]
    build_entry = next((s for s in record["stages"] if s["stage"] == "build"), None)
    return ImageEvidence(
        source=str(record_file),
        digest=digest,
        repository=record["image"]["repository"],
        tags=tuple(dict.fromkeys(record["image"]["tags"])),
        governed=True,
        status=record["status"],
        pipeline=record["pipeline"],
        commit_sha=commit["sha"],
        branch=commit["branch"],
        commit_time=commit["commit_time"],
        repository_url=record["repository_url"],
        ci=dict(record["ci"]),
        builder=build_entry["backend"] if build_entry else None,
        runner_host=record["runner"]["host"],
        runner_platform=record["runner"]["platform"],
        tfgov_ci_version=record["tfgov_ci_version"],
        tools=dict(record["tools"]),
        base_ref=base.get("ref")
        or (attested and attested.base_ref)
        or labels.get("org.opencontainers.image.base.name"),
        base_digest=base.get("digest")
        or (attested and attested.base_digest)
        or labels.get("org.opencontainers.image.base.digest"),
        lock_digest=build_data.get("lock_digest")
        or (attested and attested.lock_digest)
        or labels.get("io.tfgov.lock.digest"),
        python_version=labels.get("io.tfgov.python.version"),
        tensorflow_version=labels.get("io.tfgov.tensorflow.version"),
        decision=(attested.decision if attested else None)
        if decision_doc is None
        else ("allow" if decision_doc.get("allow") else "deny"),
        signed=bool(evidence.get("signed")),
        signature_ref=evidence.get("reference"),
        sbom_digest=sbom_digest,
        record_digest=record_digest,
        created=record["created"],
        packages=packages,
        findings=report.findings if report else (),
        advisory_db=", ".join(s.source or s.name for s in report.scanners) if report else None,
        exceptions=exceptions,
        attestations=tuple(attestations),
        warnings=tuple(warnings),
        build=builds.of(record, build),
    )


def _decision(path: Path, digest: str) -> Mapping[str, Any] | None:
    """The policy decision about this very image (its ``image`` names the digest), else None."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or not str(doc.get("image", "")).endswith(f"@{digest}"):
        return None
    return doc


def _attested_digest(out: Path | None, predicate_type: str) -> str | None:
    where = _ATTESTED_FILES.get(predicate_type)
    if out is None or where is None or not (out / where[0] / where[1]).is_file():
        return None
    return sha256(out / where[0] / where[1])
