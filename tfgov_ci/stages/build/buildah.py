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
from tfgov_ci.context import Context
from tfgov_ci.pipeline import STAGES, Clock, StagePlan, StageResult, Step, result_path
from tfgov_ci.stages.build.interface import (
    BuildError,
    built,
    checked_lock,
    dockerfile_inputs,
    finish,
    labels,
    pull_base,
    replace_layout,
)


class BuildahBuilder:
    stage: ClassVar[str] = "build"
    name: ClassVar[str] = "buildah"

    def __init__(self, options: Mapping[str, Any]) -> None:
        self.options = options

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

    def plan(self, ctx: Context) -> StagePlan:
        dockerfile, context, _ = dockerfile_inputs(ctx, self.options)
        storage = self._storage("<runroot>")
        return StagePlan(
            stage=self.stage,
            backend=self.name,
            available=True,
            summary=STAGES[self.stage].summary,
            tools=("buildah", "skopeo"),
            steps=(
                Step(
                    "pull the base by digest into the cache, then into buildah's storage",
                    (
                        "skopeo",
                        "copy",
                        "oci:<cache>/base:<digest>",
                        "containers-storage:[vfs@<root>]localhost/tfgov-base",
                    ),
                    "skopeo",
                ),
                Step(
                    "build the Dockerfile on the pinned base",
                    tuple(self._bud_argv(ctx, storage, "<base image id>", Path("<USER step>"))),
                    "buildah",
                ),
                Step(
                    "write the image into the out directory's OCI layout",
                    (
                        "buildah",
                        *storage,
                        "push",
                        f"localhost/tfgov-build:{ctx.git.sha}",
                        "oci:<out>/build/oci",
                    ),
                    "buildah",
                ),
            ),
            inputs=(str(dockerfile), str(context), str(result_path(ctx.out_dir, "lock"))),
            outputs=(
                str(result_path(ctx.out_dir, self.stage)),
                str(result_path(ctx.out_dir, "build").parent / "oci"),
            ),
        )

    def run(self, ctx: Context, plan: StagePlan) -> StageResult:
        clock = Clock.start()
        cfg = ctx.config
        lock = checked_lock(ctx)
        base = pull_base(cfg.base.image, cache_dir(), cfg.registries)
        image_labels = labels(ctx, base.ref, lock)
        with tempfile.TemporaryDirectory(prefix="tfgov-buildah.") as tmp:
            storage = self._storage(str(Path(tmp) / "run"))
            name = (base.ref.digest or "").replace(":", "-")
            root, runroot = storage[1], storage[3]
            base_name = f"localhost/tfgov-base:{name.removeprefix('sha256-')[:40]}"
            # skopeo, not `buildah pull`: it names the image explicitly, whatever the cache path looks like
            copied = tools.run(
                [
                    "skopeo",
                    "copy",
                    "--quiet",
                    f"oci:{base.layout.path}:{name}",
                    f"containers-storage:[vfs@{root}+{runroot}]{base_name}",
                ],
                check=False,
                timeout=3600,
            )
            if copied.returncode != 0:
                raise BuildError.of_run(copied, "could not load the base into buildah's storage")
            base_id = base_name
            extra = Path(tmp) / "tfgov.Dockerfile"  # appended: the configured user wins
            extra.write_text(f"USER {cfg.app.user}\n")
            argv = self._bud_argv(ctx, storage, base_id, extra)
            for key, value in sorted(image_labels.items()):
                argv[-3:-3] = ["--label", f"{key}={value}"]
            self._buildah(argv[1:])
            with replace_layout(ctx) as staging:
                self._buildah(
                    [
                        *storage,
                        "push",
                        "--quiet",
                        f"localhost/tfgov-build:{ctx.git.sha}",
                        f"oci:{staging}:{ctx.images().tags[0]}",
                    ]
                )
                self._buildah(
                    [*storage, "rmi", "--force", f"localhost/tfgov-build:{ctx.git.sha}"], check=False
                )
                data = finish(ctx, staging, image_labels, base, lock)
        return built(ctx, self.stage, self.name, clock, data)

    @staticmethod
    def _buildah(args: list[str], *, check: bool = True) -> tools.Completed:
        done = tools.run(["buildah", *args], check=False, timeout=3600)
        if check and done.returncode != 0:
            tail = "\n".join(done.stderr.strip().splitlines()[-8:])
            verb = next((a for a in args if a in ("bud", "push", "rmi")), "")
            raise BuildError(
                f"buildah {verb} failed",
                "see buildah's output below",
                argv=done.argv,
                returncode=done.returncode,
                stderr_tail=tail,
            )
        return done
