"""Lock with uv: ``uv pip compile --generate-hashes`` for the base's Python and platform.

The base image's own Python packages (its ``io.tfgov.python.packages`` label, read from its config
with ``skopeo inspect --config``, no layers pulled) are passed as constraints, so a requirement
that would change them fails instead of silently replacing what the base provides.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from tfgov_ci import tools
from tfgov_ci._files import atomic_write_text
from tfgov_ci.context import Context
from tfgov_ci.oci import reference
from tfgov_ci.pipeline import STAGES, Clock, StagePlan, StageResult, Step, passed, result_path
from tfgov_ci.registry import access
from tfgov_ci.stages.lock.interface import LockStageError
from tfgov_ci.wheels import lock_digest, parse_lock

COMPILE_COMMAND = "tfgov-ci run lock"


def uv_binary() -> str:
    """uv from the uv package installed beside tfgov-ci, else from PATH."""
    try:
        from uv import find_uv_bin

        return str(find_uv_bin())
    except (ImportError, FileNotFoundError):
        return tools.which("uv")


def base_labels(ctx: Context) -> dict[str, str]:
    """The base image's labels, from its config only (skopeo inspect --config)."""
    ref = reference.parse(ctx.config.base.image)
    reg = access(ref.registry, ctx.config.registries, os.environ)
    with reg.skopeo_args("") as args:
        done = tools.run(
            [
                "skopeo",
                "inspect",
                "--config",
                *args,
                f"docker://{ref.registry}/{ref.repository}@{ref.digest}",
            ],
            secrets=reg.secrets,
            check=False,
            timeout=300,
        )
    if done.returncode != 0:
        from tfgov_ci.stages.publish.skopeo import _explain

        message, hint = _explain(done.stderr, ref.registry)
        if "manifest unknown" in done.stderr:
            message, hint = f"base image {ctx.config.base.image} not found", "check the pinned digest"
        raise LockStageError(message, hint)
    found: dict[str, str] = json.loads(done.stdout).get("config", {}).get("Labels") or {}
    return found


class UvLocker:
    stage: ClassVar[str] = "lock"
    name: ClassVar[str] = "uv"

    def __init__(self, options: Mapping[str, Any]) -> None:
        self.options = options

    def _argv(self, ctx: Context, platform: str, output: str, constraints: str | None) -> list[str]:
        cfg = ctx.config
        argv = [
            "uv",
            "pip",
            "compile",
            "--quiet",
            "--generate-hashes",
            "--no-header",
            "--python-version",
            cfg.runtime.python,
            "--python-platform",
            platform,
            "--output-file",
            output,
            str(cfg.project_dir / cfg.dependencies.requirements),
        ]
        if constraints:
            argv += ["--constraint", constraints]
        return argv

    def plan(self, ctx: Context) -> StagePlan:
        cfg = ctx.config
        lock = cfg.project_dir / cfg.dependencies.lock
        ref = reference.parse(cfg.base.image)
        return StagePlan(
            stage=self.stage,
            backend=self.name,
            available=True,
            summary=STAGES[self.stage].summary,
            tools=("uv", "skopeo"),
            steps=(
                Step(
                    "read the base's Python packages and platform from its labels",
                    (
                        "skopeo",
                        "inspect",
                        "--config",
                        f"docker://{ref.registry}/{ref.repository}@{ref.digest}",
                    ),
                    "skopeo",
                ),
                Step(
                    "resolve with hashes, the base's packages as constraints",
                    tuple(self._argv(ctx, "<base platform>", str(lock), "<base packages>")),
                    "uv",
                ),
            ),
            inputs=(str(cfg.project_dir / cfg.dependencies.requirements),),
            outputs=(str(lock), str(result_path(ctx.out_dir, self.stage))),
        )

    def run(self, ctx: Context, plan: StagePlan) -> StageResult:
        clock = Clock.start()
        cfg = ctx.config
        labels = base_labels(ctx)
        platform_tag = labels.get("io.tfgov.python.platform", "manylinux_2_36_x86_64")
        major, minor = platform_tag.split("_")[1:3]
        platform = f"x86_64-manylinux_{major}_{minor}"
        provided = [item for item in labels.get("io.tfgov.python.packages", "").split(",") if "==" in item]
        lock = cfg.project_dir / cfg.dependencies.lock
        with tempfile.TemporaryDirectory(prefix="tfgov-lock.") as tmp:
            constraints = None
            if provided:
                constraints = str(Path(tmp) / "base-constraints.txt")
                Path(constraints).write_text("\n".join(provided) + "\n")
            output = Path(tmp) / "requirements.lock"
            if lock.is_file():  # uv keeps the versions of an existing output file when they still fit
                shutil.copyfile(lock, output)
            argv = self._argv(ctx, platform, str(output), constraints)
            done = tools.run([uv_binary(), *argv[1:]], check=False, timeout=1800)
            if done.returncode != 0:
                raise LockStageError(
                    "the requirements cannot be locked: " + " ".join(done.stderr.strip().splitlines()[-6:]),
                    "the base's packages are constraints: keep their versions in requirements.txt",
                )
            text = output.read_text()
        atomic_write_text(
            lock,
            f"# Written by `{COMPILE_COMMAND}` (uv) for Python {cfg.runtime.python} on {platform}.\n" + text,
        )
        locked = parse_lock(lock)
        return passed(
            ctx,
            self.stage,
            self.name,
            clock,
            f"{len(locked)} packages locked for Python {cfg.runtime.python} on {platform}",
            outputs={"lock": str(lock)},
            data={
                "lock_digest": lock_digest(lock),
                "packages": len(locked),
                "platform": platform,
                "python": cfg.runtime.python,
                "constraints": provided,
            },
        )
