"""Publish with skopeo: point each tag at the digest the build pushed; commit tags are immutable.

Order matters: the build pushed the manifest by digest (a registry accepts a manifest only once
all its blobs are there, so nothing ever names an incomplete image), the gate allowed it and the
sign stage signed it. A tag that already names another digest is refused first (exit 1, both
digests shown, nothing written) unless --force-retag; then the SBOMs are attached to that digest,
and only then is each tag set, registry to registry (no layer moves): a tag never names an image
whose SBOMs are missing, even when the registry refuses the SBOMs (a tag immutability rule on the
referrers tag).
skopeo retries transient failures itself (``--retry-times``); a push that still fails leaves no
tag behind, and the next run completes it (blobs already there are not sent again).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from tfgov_ci._files import atomic_write_text
from tfgov_ci.context import Context
from tfgov_ci.oci import referrers
from tfgov_ci.oci.image import rfc3339
from tfgov_ci.oci.layout import Descriptor, Layout
from tfgov_ci.oci.reference import Reference
from tfgov_ci.oci.registry import Registry, push_calls, push_layout
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
from tfgov_ci.stages.handoff import BuiltImage, pushed_at

SBOM_KINDS = ("spdx", "cyclonedx")
SBOMS = sorted(SBOM_KINDS)  # the order they are pushed in


class SkopeoPublisher:
    stage: ClassVar[str] = "publish"
    name: ClassVar[str] = "skopeo"
    tools: ClassVar[tuple[str, ...]] = ("skopeo",)

    def __init__(self, options: Mapping[str, Any]) -> None:
        self.options = options

    def plan(self, ctx: Context) -> StagePlan:
        images = ctx.images()
        build_layout = BuiltImage.layout_path(ctx)
        steps: tuple[Step, ...]
        if images.remote is None:
            steps = (Step(f"copy the image into the local OCI layout {images.repository}"),)
        else:
            registry = Registry.of(images.remote, ctx.config.registries)
            pushes = push_calls(
                registry,
                build_layout,
                images.tags[0],
                images.remote,
                "<build digest>",
                images.tags,
                source=f"docker://{pushed_at(ctx, '<build digest>')}",
            )
            sboms = referrers.attach_calls(
                registry,
                images.remote,
                {kind: f"push the {kind} SBOM as an artifact whose subject is the image" for kind in SBOMS},
                "<build digest>",
            )
            when = "only when the sbom stage ran for this commit; without it, a warning"
            reads, writes = pushes[: len(images.tags)], pushes[len(images.tags) :]  # tags read first
            steps = (
                *(Step(c.description, c.argv, "skopeo", c.optional) for c in reads),
                *(Step(f"{c.description} ({when})", c.argv, c.tool, optional=True) for c in sboms),
                *(Step(c.description, c.argv, "skopeo", c.optional) for c in writes),
            )
        return StagePlan(
            stage=self.stage,
            backend=self.name,
            available=True,
            summary=STAGES[self.stage].summary,
            tools=self.tools,
            steps=steps,
            inputs=(
                str(result_path(ctx.out_dir, "build")),
                str(result_path(ctx.out_dir, "policy")),
                str(result_path(ctx.out_dir, "sign")),
                *(() if images.remote else (str(build_layout),)),
            ),
            outputs=(
                str(result_path(ctx.out_dir, self.stage).parent / "tfgov.env"),
                str(result_path(ctx.out_dir, self.stage)),
            ),
            images=images.refs,
        )

    def run(self, ctx: Context, plan: StagePlan) -> StageResult:
        clock = Clock.start()
        image = BuiltImage.read(ctx)
        read_result(ctx, "policy")  # passed, for this very commit and configuration, or no push
        layout, digest = image.layout, image.digest
        images = ctx.images()
        if images.remote is None:
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
            remote = images.remote
            attached: list[tuple[list[dict[str, str]], str | None]] = []
            data = push_layout(
                layout,
                images.tags[0],
                digest,
                images.remote,
                images.tags,
                ctx.config.registries,
                moving=images.moving,
                force_retag=ctx.force_retag,
                source=f"docker://{pushed_at(ctx, digest)}",  # the build pushed it by digest
                # once no tag conflicts, and before any tag names the image
                before_tags=lambda: attached.append(attach_sboms(ctx, image, remote)),
            )
            sboms, sbom_warning = attached[0]
            warnings = list(data.pop("warnings"))
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
    ctx: Context, image: BuiltImage, target: Reference
) -> tuple[list[dict[str, str]], str | None]:
    """Push this commit's SBOMs as artifacts of the image; a warning when there are none."""
    if not result_path(ctx.out_dir, "sbom").is_file():
        return [], "no SBOM attached: run the sbom stage before publish"
    sbom = read_result(ctx, "sbom")
    created = rfc3339(ctx.source_date_epoch)
    artifacts = [
        referrers.sbom_artifact(kind, Path(sbom.outputs[kind]), created)
        for kind in SBOMS
        if kind in sbom.outputs
    ]
    stored = referrers.Stored(
        "the SBOMs", "the SBOMs, signatures and attestations", "nothing was tagged, run publish again"
    )
    attached = referrers.attach(
        target,
        image.subject(ctx),
        artifacts,
        ctx.config.registries,
        stored=stored,
        step="attaching the SBOMs",
    )
    return [{"format": a.kind, "digest": a.digest, "artifact_type": a.artifact_type} for a in attached], None


def _copy_image(source: Layout, target: Layout, digest: str) -> None:
    manifest = source.read_json(digest)
    for entry in [manifest["config"], *manifest["layers"]]:
        target.import_blob(source, Descriptor.from_json(entry))
    target.import_blob(source, source.resolve(digest))
