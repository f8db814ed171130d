"""The buildah builder: the project's Dockerfile, built daemonless with ``buildah bud``.

The Dockerfile's FROM is replaced by the pinned central base (``--from``, the base pulled by digest
into the cache first, then into buildah's storage from there): a Dockerfile cannot pick another
base. The lock reaches the build as ``--build-arg TFGOV_LOCK=<path>``; timestamps come from the
commit (``--timestamp``); the configured user is set last, after the Dockerfile's own steps. The
result is the same contract as the native builder's: an OCI layout under each commit tag.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from tfgov_ci import tools
from tfgov_ci._files import cache_dir
from tfgov_ci.config import Config
from tfgov_ci.context import Context
from tfgov_ci.errors import Problem
from tfgov_ci.oci import reference
from tfgov_ci.oci.registry import layout_transport
from tfgov_ci.pipeline import STAGES, Clock, StagePlan, StageResult, Step, result_path
from tfgov_ci.stages.build.failure import explain
from tfgov_ci.stages.build.interface import (
    BuildError,
    base_pull_step,
    built,
    checked_lock,
    dockerfile_inputs,
    finish,
    handoff_steps,
    labels,
    layout_path,
    lock_check_steps,
    pull_base,
    replace_layout,
    staging_path,
)
from tfgov_ci.stages.build.preflight import Builder, preflight
from tfgov_ci.tools import Completed

BUILDER = Builder(
    "buildah",
    pins_every_from=False,  # --from replaces the first FROM only
    heredocs="buildah before 1.33 (Debian 12 has 1.28) reads a heredoc's lines as instructions",
    run_flags=True,
)


class BuildahBuilder:
    stage: ClassVar[str] = "build"
    name: ClassVar[str] = "buildah"
    tools: ClassVar[tuple[str, ...]] = ("git", "skopeo", "buildah")

    def __init__(self, options: Mapping[str, Any]) -> None:
        self.options = options

    def preflight(self, config: Config) -> tuple[tuple[Problem, ...], tuple[str, ...]]:
        """What in the Dockerfile cannot work on the pinned base (run by ``validate``)."""
        return preflight(config, self.options, BUILDER)

    def _storage(self, runroot: str) -> list[str]:
        root = cache_dir() / "buildah"
        return ["--root", str(root), "--runroot", runroot, "--storage-driver", "vfs"]

    def _bud_argv(self, ctx: Context, storage: list[str], base_id: str, extra: Path) -> list[str]:
        dockerfile, context, build_args = dockerfile_inputs(ctx, self.options)
        argv = [
            "buildah",
            *storage,
            "bud",
            "--quiet",
            "--isolation",
            "chroot",
            "--pull=never",
            "--from",
            base_id,
            "--timestamp",
            str(ctx.source_date_epoch),
            "--layers=false",
            "-f",
            str(dockerfile),
            "-f",
            str(extra),
        ]
        for key, value in build_args.items():
            argv += ["--build-arg", f"{key}={value}"]
        return [*argv, "-t", f"localhost/tfgov-build:{ctx.git.sha}", str(context)]

    def _commands(
        self, ctx: Context, work: str, base_layout: str, name: str, label_args: list[str], staging: str
    ) -> dict[str, list[str]]:
        """Every command a build runs after the base is in the cache, by step, built once for the
        plan (placeholders) and the run (real paths): the base into buildah's storage, bud, push, rmi."""
        storage = self._storage(f"{work}/run")
        root, runroot = storage[1], storage[3]
        base_name = f"localhost/tfgov-base:{name.removeprefix('sha256-')[:40]}"
        bud = self._bud_argv(ctx, storage, base_name, Path(f"{work}/tfgov.Dockerfile"))
        bud[-3:-3] = label_args
        image = f"localhost/tfgov-build:{ctx.git.sha}"
        return {
            # skopeo, not `buildah pull`: it names the image explicitly, whatever the cache path looks like
            "load": [
                "skopeo",
                "copy",
                "--quiet",
                layout_transport(base_layout, name),
                f"containers-storage:[vfs@{root}+{runroot}]{base_name}",
            ],
            "bud": bud,
            "push": ["buildah", *storage, "push", "--quiet", image, f"oci:{staging}:{ctx.images().tags[0]}"],
            "rmi": ["buildah", *storage, "rmi", "--force", image],
        }

    def plan(self, ctx: Context) -> StagePlan:
        dockerfile, context, _ = dockerfile_inputs(ctx, self.options)
        cache = cache_dir()
        ref = reference.parse(ctx.config.base.image)
        commands = self._commands(
            ctx,
            "<temporary dir>",
            str(cache / "base"),
            (ref.digest or "").replace(":", "-"),
            ["<*--label KEY=VALUE for each label>"],
            staging_path(ctx),
        )
        return StagePlan(
            stage=self.stage,
            backend=self.name,
            available=True,
            summary=STAGES[self.stage].summary,
            tools=self.tools,
            steps=(
                *lock_check_steps(ctx),
                base_pull_step(ctx, cache),
                Step("load the base from the cache into buildah's storage", (*commands["load"],), "skopeo"),
                Step("build the Dockerfile on the pinned base", (*commands["bud"],), "buildah"),
                Step("write the image into the out directory's OCI layout", (*commands["push"],), "buildah"),
                Step("drop the image from buildah's storage", (*commands["rmi"],), "buildah"),
                *handoff_steps(ctx),
            ),
            inputs=(str(dockerfile), str(context), str(result_path(ctx.out_dir, "lock"))),
            outputs=(str(result_path(ctx.out_dir, self.stage)), str(layout_path(ctx))),
        )

    def run(self, ctx: Context, plan: StagePlan) -> StageResult:
        clock = Clock.start()
        cfg = ctx.config
        lock = checked_lock(ctx)
        base = pull_base(cfg.base.image, cache_dir(), cfg.registries)
        image_labels = labels(ctx, base.ref, lock)
        label_args = [
            arg for key, value in sorted(image_labels.items()) for arg in ("--label", f"{key}={value}")
        ]
        name = (base.ref.digest or "").replace(":", "-")
        with tempfile.TemporaryDirectory(prefix="tfgov-buildah.") as tmp, replace_layout(ctx) as staging:
            commands = self._commands(ctx, tmp, str(base.layout.path), name, label_args, str(staging))
            copied = tools.run(commands["load"], check=False, timeout=3600)
            if copied.returncode != 0:
                raise BuildError.of_run(copied, "could not load the base into buildah's storage")
            Path(tmp, "tfgov.Dockerfile").write_text(f"USER {cfg.app.user}\n")  # appended: the user wins
            self._buildah(commands["bud"][1:], dockerfile=dockerfile_inputs(ctx, self.options)[0])
            self._buildah(commands["push"][1:])
            self._buildah(commands["rmi"][1:], check=False)
            data = finish(ctx, staging, image_labels, base, lock)
        return built(ctx, self.stage, self.name, clock, data)

    @staticmethod
    def _buildah(args: list[str], *, check: bool = True, dockerfile: Path | None = None) -> Completed:
        done = tools.run(["buildah", *args], check=False, timeout=3600)
        if check and done.returncode != 0:
            tail = "\n".join(done.stderr.strip().splitlines()[-8:])
            verb = next((a for a in args if a in ("bud", "push", "rmi")), "")
            message, hint = f"buildah {verb} failed", "see buildah's output below"
            if dockerfile is not None:  # a Dockerfile step: which one, its line, the likely cause
                explained = explain(dockerfile, f"{done.stdout}\n{done.stderr}", "buildah")
                message, hint = explained.message, explained.hint
            raise BuildError(message, hint, argv=done.argv, returncode=done.returncode, stderr_tail=tail)
        return done
