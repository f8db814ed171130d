"""Publish with skopeo: push by digest, then point each tag at it; commit tags are immutable.

Order matters: the manifest is pushed by digest first (a registry accepts a manifest only once
all its blobs are there, so nothing ever names an incomplete image), then each tag is set. A tag
that already names another digest is refused (exit 1, both digests shown) unless --force-retag.
skopeo retries transient failures itself (``--retry-times``); a push that still fails leaves no
tag behind, and the next run completes it (blobs already there are not sent again).
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from tfgov_ci import tools
from tfgov_ci._files import atomic_write_text
from tfgov_ci.context import Context
from tfgov_ci.oci import referrers
from tfgov_ci.oci.image import rfc3339
from tfgov_ci.oci.layout import Descriptor, Layout
from tfgov_ci.oci.registry import RETRY_TIMES, Access, access, explain
from tfgov_ci.pipeline import (
    STAGES,
    Clock,
    StagePlan,
    StageResult,
    Step,
    passed,
    read_result,
    result_path,
)
from tfgov_ci.stages.publish.interface import PublishError, TagConflict


def _fail(done: tools.Completed, reg: Access) -> PublishError:
    message, hint = explain(done.stderr, reg.host)
    tail = "\n".join(done.stderr.strip().splitlines()[-5:])
    return PublishError(message, hint, argv=done.argv, returncode=done.returncode, stderr_tail=tail)


def _skopeo(argv: list[str], reg: Access, *, check: bool = True) -> tools.Completed:
    done = tools.run(["skopeo", *argv], secrets=reg.secrets, check=False, timeout=3600)
    if check and done.returncode != 0:
        raise _fail(done, reg)
    return done


def remote_digest(repository: str, tag: str, reg: Access) -> str | None:
    """The digest ``repository:tag`` names now, or None when there is no such tag."""
    with reg.skopeo_args("") as args:
        done = _skopeo(["inspect", "--raw", *args, f"docker://{repository}:{tag}"], reg, check=False)
    if done.returncode == 0:
        return "sha256:" + hashlib.sha256(done.stdout.encode()).hexdigest()
    if "manifest unknown" in done.stderr or "not found" in done.stderr.lower():
        return None
    raise _fail(done, reg)


def push_layout(
    layout: Path,
    layout_ref: str,
    digest: str,
    repository: str,
    tags: tuple[str, ...],
    registries: Mapping[str, Mapping[str, Any]],
    env: Mapping[str, str] | None = None,
    *,
    moving: tuple[str, ...] = (),
    force_retag: bool = False,
) -> dict[str, Any]:
    """Push ``layout:layout_ref`` (whose manifest is ``digest``) to ``repository`` and tag it.

    Every tag but those in ``moving`` (the branch tag) is immutable once it names a digest.
    """
    reg = access(repository.split("/", 1)[0], registries, os.environ if env is None else env)
    existing = {tag: remote_digest(repository, tag, reg) for tag in tags}
    conflicts = {tag: d for tag, d in existing.items() if d is not None and d != digest and tag not in moving}
    if conflicts and not force_retag:
        shown = "; ".join(
            f"{repository}:{tag} is {d}, this build is {digest}" for tag, d in conflicts.items()
        )
        raise TagConflict(
            f"tag already points at another image: {shown}",
            "commit tags are immutable; rebuild from a new commit, or pass --force-retag",
        )
    source = f"oci:{layout}:{layout_ref}"
    started = time.monotonic()
    with reg.skopeo_args("dest") as dest:
        common = ["copy", "--quiet", "--preserve-digests", f"--retry-times={RETRY_TIMES}", *dest]
        _skopeo([*common, source, f"docker://{repository}@{digest}"], reg)
        for tag in tags:
            if existing[tag] != digest:
                _skopeo([*common, source, f"docker://{repository}:{tag}"], reg)
    pushed = remote_digest(repository, tags[0], reg) if tags else digest
    if pushed != digest:
        raise PublishError(
            f"{repository}:{tags[0]} names {pushed} after the push, not {digest}",
            "another writer raced this push; check the registry",
        )
    return {
        "repository": repository,
        "digest": digest,
        "reference": f"{repository}@{digest}",
        "tags": list(tags),
        "retagged": sorted(conflicts),
        "already_there": sorted(t for t, d in existing.items() if d == digest),
        "seconds": round(time.monotonic() - started, 3),
        "warnings": [reg.warning] if reg.warning else [],
    }


class SkopeoPublisher:
    stage: ClassVar[str] = "publish"
    name: ClassVar[str] = "skopeo"

    def __init__(self, options: Mapping[str, Any]) -> None:
        self.options = options

    def plan(self, ctx: Context) -> StagePlan:
        images = ctx.images()
        registry = ctx.config.image.registry
        build_layout = result_path(ctx.out_dir, "build").parent / "oci"
        steps: tuple[Step, ...]
        if registry is None:
            steps = (Step(f"copy the image into the local OCI layout {images.repository}"),)
        else:
            steps = (
                Step(
                    "check that no commit tag names another digest (tags are immutable)",
                    ("skopeo", "inspect", "--raw", f"docker://{images.repository}:{images.tags[0]}"),
                    "skopeo",
                ),
                Step(
                    "push by digest",
                    (
                        "skopeo",
                        "copy",
                        "--preserve-digests",
                        f"oci:{build_layout}:{images.tags[0]}",
                        f"docker://{images.repository}@<build digest>",
                    ),
                    "skopeo",
                ),
                *(
                    Step(
                        f"tag {tag}",
                        (
                            "skopeo",
                            "copy",
                            "--preserve-digests",
                            f"oci:{build_layout}:{images.tags[0]}",
                            f"docker://{images.repository}:{tag}",
                        ),
                        "skopeo",
                    )
                    for tag in images.tags
                ),
            )
        return StagePlan(
            stage=self.stage,
            backend=self.name,
            available=True,
            summary=STAGES[self.stage].summary,
            tools=("skopeo",) if registry else (),
            steps=steps,
            inputs=(
                str(result_path(ctx.out_dir, "build")),
                str(result_path(ctx.out_dir, "policy")),
                str(build_layout),
            ),
            outputs=(
                str(result_path(ctx.out_dir, self.stage).parent / "tfgov.env"),
                str(result_path(ctx.out_dir, self.stage)),
            ),
            images=images.refs,
        )

    def run(self, ctx: Context, plan: StagePlan) -> StageResult:
        clock = Clock.start()
        build = read_result(ctx, "build")
        read_result(ctx, "policy")  # passed, for this very commit and configuration, or no push
        layout = Path(build.outputs["layout"])
        digest = str(build.data["digest"])
        images = ctx.images()
        if ctx.config.image.registry is None:
            local = Layout.create(ctx.config.project_dir / ".tfgov" / "oci")
            source = Layout.open(layout)
            descriptor = source.resolve(digest)
            _copy_image(source, local, digest)
            local.tag(descriptor, tuple(f"{ctx.config.image.repository}:{tag}" for tag in images.tags))
            data: dict[str, Any] = {
                "repository": images.repository,
                "digest": digest,
                "tags": list(images.tags),
            }
            warnings: list[str] = ["no registry configured: the image is in the local OCI layout .tfgov/oci"]
        else:
            data = push_layout(
                layout,
                images.tags[0],
                digest,
                images.repository,
                images.tags,
                ctx.config.registries,
                moving=images.moving,
                force_retag=ctx.force_retag,
            )
            warnings = list(data.pop("warnings"))
            sboms, sbom_warning = attach_sboms(ctx, layout, digest, images.repository)
            data["sboms"] = sboms
            if sbom_warning:
                warnings.append(sbom_warning)
        env_file = result_path(ctx.out_dir, self.stage).parent / "tfgov.env"
        atomic_write_text(env_file, dotenv(images.repository, images.tags[0], digest))
        return passed(
            ctx,
            self.stage,
            self.name,
            clock,
            f"{images.repository}@{digest} with {len(images.tags)} tags",
            outputs={"dotenv": str(env_file)},
            data=data,
            warnings=tuple(warnings),
        )


def dotenv(repository: str, tag: str, digest: str) -> str:
    """What deploy jobs need (GitLab's dotenv report; a Jenkinsfile can read it too)."""
    return (
        f"TFGOV_IMAGE={repository}:{tag}\n"
        f"TFGOV_IMAGE_DIGEST={digest}\n"
        f"TFGOV_IMAGE_REF={repository}@{digest}\n"
    )


def attach_sboms(
    ctx: Context, layout: Path, digest: str, repository: str
) -> tuple[list[dict[str, str]], str | None]:
    """Push this commit's SBOMs as artifacts of the image; a warning when there are none."""
    if not result_path(ctx.out_dir, "sbom").is_file():
        return [], "no SBOM attached: run the sbom stage before publish"
    sbom = read_result(ctx, "sbom")
    manifest = Layout.open(layout).resolve(digest)
    files = {kind: Path(sbom.outputs[kind]) for kind in ("spdx", "cyclonedx") if kind in sbom.outputs}
    subject = Descriptor(manifest.media_type, manifest.digest, manifest.size)
    attached = referrers.attach(
        repository, subject, files, rfc3339(ctx.source_date_epoch), ctx.config.registries
    )
    return [{"format": a.kind, "digest": a.digest, "artifact_type": a.artifact_type} for a in attached], None


def _copy_image(source: Layout, target: Layout, digest: str) -> None:
    manifest = source.read_json(digest)
    for entry in [manifest["config"], *manifest["layers"]]:
        target.import_blob(source, Descriptor.from_json(entry))
    target.import_blob(source, source.resolve(digest))
