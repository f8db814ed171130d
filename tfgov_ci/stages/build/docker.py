"""The docker builder: the project's Dockerfile, built by a Docker Engine through the Docker SDK.

The engine is the one ``DOCKER_HOST`` names. The pinned base is loaded into it from the cache
(skopeo, ``docker-daemon:`` transport) and every ``FROM`` that names an image rather than an
earlier stage is pointed at it, so a Dockerfile cannot pick another base. The build runs with
``network_mode=none``; the lock reaches it as ``--build-arg TFGOV_LOCK``; the configured user is
set last. The image is copied out of the engine into the out directory's OCI layout: the same
result contract as the other builders. (The SDK drives the classic builder; a Docker Engine build
is not reproducible bit for bit: its layers carry the build's own times.)
"""

from __future__ import annotations

import os
import re
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

BUILDER = Builder(
    "docker",
    pins_every_from=True,
    heredocs="the docker backend drives the Engine's classic builder (Docker SDK), which has no heredocs",
    run_flags=False,
)
_FROM = re.compile(r"^(\s*FROM\s+)((?:--\S+\s+)*)(\S+)(.*)$", re.IGNORECASE)


def pin_from_lines(dockerfile: str, base: str) -> tuple[str, list[str]]:
    """Point every FROM that names an image (not an earlier stage) at ``base``.

    Returns the new text and the images that were replaced (for the result).
    """
    stages: set[str] = set()
    replaced: list[str] = []
    out = []
    for line in dockerfile.splitlines():
        match = _FROM.match(line)
        if match is None:
            out.append(line)
            continue
        head, flags, image, rest = match.groups()
        alias = re.search(r"\bAS\s+(\S+)", rest, re.IGNORECASE)
        if image.lower() not in stages:
            replaced.append(image)
            image = base
        if alias:
            stages.add(alias.group(1).lower())
        out.append(f"{head}{flags}{image}{rest}")
    return "\n".join(out) + "\n", replaced


def docker_host() -> str:
    return os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")


class DockerBuilder:
    stage: ClassVar[str] = "build"
    name: ClassVar[str] = "docker"
    tools: ClassVar[tuple[str, ...]] = ("git", "skopeo", "dockerd")

    def __init__(self, options: Mapping[str, Any]) -> None:
        self.options = options

    def preflight(self, config: Config) -> tuple[tuple[Problem, ...], tuple[str, ...]]:
        """What in the Dockerfile cannot work on the pinned base (run by ``validate``)."""
        return preflight(config, self.options, BUILDER)

    @staticmethod
    def _load_argv(host: str, base_layout: str, name: str) -> list[str]:
        """The base from the cache into the engine (skopeo's docker-daemon transport)."""
        base_tag = f"tfgov-base:{name.removeprefix('sha256-')[:40]}"
        return [
            "skopeo",
            "copy",
            "--quiet",
            "--dest-daemon-host",
            host,
            layout_transport(base_layout, name),
            f"docker-daemon:{base_tag}",
        ]

    @staticmethod
    def _save_argv(ctx: Context, host: str, staging: str) -> list[str]:
        """The built image out of the engine into the out directory's layout."""
        tag = f"tfgov-build:{ctx.git.sha}"
        return [
            "skopeo",
            "copy",
            "--quiet",
            "--src-daemon-host",
            host,
            f"docker-daemon:{tag}",
            f"oci:{staging}:{ctx.images().tags[0]}",
        ]

    def plan(self, ctx: Context) -> StagePlan:
        dockerfile, context, args = dockerfile_inputs(ctx, self.options)
        host = docker_host()
        cache = cache_dir()
        name = (reference.parse(ctx.config.base.image).digest or "").replace(":", "-")
        return StagePlan(
            stage=self.stage,
            backend=self.name,
            available=True,
            summary=STAGES[self.stage].summary,
            tools=self.tools,
            steps=(
                *lock_check_steps(ctx),
                base_pull_step(ctx, cache),
                Step(
                    "load the base from the cache into the engine",
                    (*self._load_argv(host, str(cache / "base"), name),),
                    "skopeo",
                ),
                Step(
                    f"build {dockerfile.name} (every FROM pinned to the base, network none, "
                    f"build args {', '.join(sorted(args))}) through the Docker SDK at {host}"
                ),
                Step(
                    "copy the image out of the engine into the out directory's OCI layout",
                    (*self._save_argv(ctx, host, staging_path(ctx)),),
                    "skopeo",
                ),
                *handoff_steps(ctx),
            ),
            inputs=(str(dockerfile), str(context), str(result_path(ctx.out_dir, "lock"))),
            outputs=(str(result_path(ctx.out_dir, self.stage)), str(layout_path(ctx))),
        )

    def run(self, ctx: Context, plan: StagePlan) -> StageResult:
        import docker  # type: ignore[import-untyped]  # slow to import; only this backend needs it

        clock = Clock.start()
        cfg = ctx.config
        lock = checked_lock(ctx)
        base = pull_base(cfg.base.image, cache_dir(), cfg.registries)
        image_labels = labels(ctx, base.ref, lock)
        host = docker_host()
        name = (base.ref.digest or "").replace(":", "-")
        base_tag = f"tfgov-base:{name.removeprefix('sha256-')[:40]}"
        self._skopeo(self._load_argv(host, str(base.layout.path), name))
        dockerfile, context, build_args = dockerfile_inputs(ctx, self.options)
        text, replaced = pin_from_lines(dockerfile.read_text(), base_tag)
        tag = f"tfgov-build:{ctx.git.sha}"
        try:
            client = docker.DockerClient(base_url=host)
            with tempfile.TemporaryDirectory(prefix="tfgov-docker.") as tmp:
                pinned = Path(tmp) / "Dockerfile"
                pinned.write_text(text + f"USER {cfg.app.user}\n")
                log = client.api.build(
                    path=str(context),
                    dockerfile=str(pinned),
                    tag=tag,
                    network_mode="none",
                    buildargs=build_args,
                    labels=image_labels,
                    rm=True,
                    forcerm=True,
                    pull=False,
                    decode=True,
                )
                lines: list[str] = []
                for chunk in log:
                    if "error" in chunk:
                        lines.append(chunk["error"].strip())
                        explained = explain(dockerfile, "\n".join(lines), "docker")
                        raise BuildError(
                            explained.message, explained.hint, stderr_tail="\n".join(lines[-10:])
                        )
                    lines.append(str(chunk.get("stream", "")).rstrip())
        except docker.errors.DockerException as exc:
            raise BuildError(
                f"the Docker Engine at {host} failed: {exc}",
                "is dockerd running, and does DOCKER_HOST point at it?",
            ) from None
        with replace_layout(ctx) as staging:
            self._skopeo(self._save_argv(ctx, host, str(staging)))
            data = finish(ctx, staging, image_labels, base, lock)
        data["dockerfile_from_replaced"] = replaced
        return built(ctx, self.stage, self.name, clock, data)

    @staticmethod
    def _skopeo(argv: list[str]) -> None:
        done = tools.run(argv, check=False, timeout=3600)
        if done.returncode != 0:
            raise BuildError.of_run(
                done,
                "skopeo could not move the image between the cache and the engine",
                "is dockerd running, and does DOCKER_HOST point at it?",
            )
