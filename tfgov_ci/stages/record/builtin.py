"""The record stage: the final build record, written whole, and attested beside the image.

The record (``<out>/record.json``, schemas/build-record.schema.json) says which commit, pipeline,
runner and tools made the image, its digest and tags, what was signed and attested, and every
stage's status and the commands it ran. With a registry and a signed image, the stage attests it
(predicate type ``https://tfgov-ci.dev/attestations/record/v1``) with the sign stage's own signer
and key, so that a registry alone can answer "where did this come from". ``tfgov-ci run`` writes
the record again when it ends, with this stage's own entry; the attested copy is
``<out>/record/record.json``.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from collections.abc import Mapping
from typing import Any, ClassVar

from tfgov_ci import pipeline
from tfgov_ci.context import Context
from tfgov_ci.pipeline import STAGES, Clock, StagePlan, StageResult, Step, passed, result_path
from tfgov_ci.predicates import RECORD_PREDICATE
from tfgov_ci.stages.handoff import Attester, BuiltImage
from tfgov_ci.stages.record import document

# The one edge from a stage up to the inventory (pyproject.toml's contract names it): the record
# stage writes the build into the inventory when one is configured (tfgov_ci/inventory/recording.py).
ATTESTED_COPY = "record.json"  # <out>/record/record.json: the bytes attested


class RecordWriter:
    stage: ClassVar[str] = "record"
    name: ClassVar[str] = "builtin"
    tools: ClassVar[tuple[str, ...]] = ("cosign", "skopeo")

    def __init__(self, options: Mapping[str, Any]) -> None:
        self.options = options

    def _inventory(self, ctx: Context) -> str | None:
        """The inventory to record into ($TFGOV_INVENTORY_URL, options.inventory), or None."""
        from tfgov_ci.inventory import recording

        return recording.target(self.options.get("inventory"), ctx.config.file)

    def _signer(self, ctx: Context) -> tuple[Attester | None, str]:
        """The sign stage's backend when it can attest (it signs this image in a registry), else
        None and why not."""
        unsigned = "the image is not signed in a registry"
        if ctx.images().remote is None:
            return None, unsigned
        definition = pipeline.load_pipeline(ctx.config.pipeline, ctx.config.project_dir)
        if "sign" not in definition.stages:
            return None, unsigned
        backend = pipeline.chosen_backend(ctx, definition, "sign")
        signer = pipeline.instantiate(ctx, "sign", backend)
        if not isinstance(signer, Attester):
            return (
                None,
                f"the sign backend {backend!r} cannot attest it (no attest_commands, store_steps, execute)",
            )
        return signer, ""

    def plan(self, ctx: Context) -> StagePlan:
        out = result_path(ctx.out_dir, self.stage).parent
        signer, _ = self._signer(ctx)
        attest = (
            signer.attest_commands(
                ctx, "<temporary dir>", "<build digest>", {RECORD_PREDICATE: f"{out}/{ATTESTED_COPY}"}
            )
            if signer
            else {}
        )
        inventory = self._inventory(ctx)
        if inventory is not None:
            from tfgov_ci.inventory.location import masked

            recorded = (Step(f"record the build in the inventory {masked(inventory)}, in one transaction"),)
        return StagePlan(
            stage=self.stage,
            backend=self.name,
            available=True,
            summary=STAGES[self.stage].summary,
            tools=self.tools,
            steps=(
                Step(f"write the build record {ctx.out_dir / document.RECORD_FILE}, whole or not at all"),
                *(
                    Step(f"attest the build record ({name})", (*argv,), "cosign")
                    for name, argv in attest.items()
                ),
                *(signer.store_steps(ctx, attest) if signer else ()),
                *(recorded if inventory is not None else ()),
            ),
            inputs=tuple(str(result_path(ctx.out_dir, s)) for s in STAGES if s != self.stage),
            outputs=(str(ctx.out_dir / document.RECORD_FILE), str(out / ATTESTED_COPY)),
        )

    def run(self, ctx: Context, plan: StagePlan) -> StageResult:
        clock = Clock.start()
        image = BuiltImage.read(ctx)
        definition = pipeline.load_pipeline(ctx.config.pipeline, ctx.config.project_dir)
        record = document.build(ctx, definition)
        path = document.write(ctx, record)
        out = result_path(ctx.out_dir, self.stage).parent
        out.mkdir(parents=True, exist_ok=True)
        copy = out / ATTESTED_COPY
        shutil.copyfile(path, copy)
        signer, why_not = self._signer(ctx)
        signed = bool(record.get("evidence", {}).get("signed"))
        warnings: list[str] = []
        if signer is not None and signed:
            with tempfile.TemporaryDirectory(prefix="tfgov-record.") as tmp:
                commands = signer.attest_commands(ctx, tmp, image.digest, {RECORD_PREDICATE: str(copy)})
                signer.execute(ctx, commands, tmp, image, stage=self.stage)
        else:
            why_not = why_not or "the image is not signed in a registry"
            warnings.append(f"the build record is not attested: {why_not}")
        digest = "sha256:" + hashlib.sha256(copy.read_bytes()).hexdigest()
        inventory = self._inventory(ctx)
        data: dict[str, Any] = {}
        if inventory is not None:
            from tfgov_ci.inventory import recording
            from tfgov_ci.inventory.location import masked

            recording.record(inventory, ctx.out_dir, digest if not warnings else None)
            data["inventory"] = masked(inventory)
        return passed(
            ctx,
            self.stage,
            self.name,
            clock,
            f"{path.name}{', attested' if not warnings else ''}"
            f"{', in the inventory' if inventory else ''} ({len(record['stages'])} stages)",
            outputs={"record": str(path), "attested": str(copy)},
            data={
                "attested": not warnings,
                "predicate_type": RECORD_PREDICATE,
                "digest": digest,
                "status_so_far": record["status"],
                **data,
            },
            warnings=tuple(warnings),
        )
