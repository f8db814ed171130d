"""What every build backend promises: the same result contract, whatever builds the image.

A build result (``<out>/build/result.json``) carries ``outputs.layout`` (an OCI layout with the
image under each commit tag) and ``data``: ``digest`` (manifest), ``config_digest``, ``tags``,
``refs``, ``labels``, ``layers``, ``base`` and ``lock_digest``. Every backend sets the same labels
(:func:`labels`) and runs as the configured non-root user.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tfgov_ci import tools
from tfgov_ci.context import Context
from tfgov_ci.errors import ToolError
from tfgov_ci.oci import image as oci_image
from tfgov_ci.oci import reference
from tfgov_ci.oci.layout import Descriptor, Layout
from tfgov_ci.oci.reference import Reference
from tfgov_ci.oci.registry import Registry, RegistryError, layout_transport
from tfgov_ci.pipeline import Clock, StageResult, Step, passed, read_result
from tfgov_ci.stages.handoff import BuiltImage, hands_off, pushed_at
from tfgov_ci.wheels import Target, lock_digest, manylinux_platforms


class BuildError(ToolError):
    """The image could not be built from what the project holds (exit 3)."""


class BuildInputError(BuildError):
    """Bad input to a build: a special file in the app, a lock the base contradicts (exit 2)."""

    exit_code = 2

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message, hint)


def labels(ctx: Context, base: Reference, lock: str | None) -> dict[str, str]:
    """The labels every tfgov-ci image carries, whichever backend built it."""
    cfg = ctx.config
    out = {
        "org.opencontainers.image.revision": ctx.git.sha,
        "org.opencontainers.image.source": ctx.ci.repo_url or ctx.git.remote_url or "",
        "org.opencontainers.image.created": oci_image.rfc3339(ctx.source_date_epoch),
        "org.opencontainers.image.version": (ctx.git.tags[0] if ctx.git.tags else ctx.git.short_sha),
        "org.opencontainers.image.title": cfg.image.name,
        "org.opencontainers.image.base.name": f"{base.registry}/{base.repository}"
        + (f":{base.tag}" if base.tag else ""),
        "org.opencontainers.image.base.digest": base.digest or "",
        "io.tfgov.tensorflow.version": cfg.runtime.tensorflow,
        "io.tfgov.python.version": cfg.runtime.python,
        "io.tfgov.lock.digest": lock or "",
        # Nothing that differs between two CI pipelines of one commit (pipeline and job ids and
        # URLs, times) goes into the image: one commit, one digest. Those live in the build record.
    }
    if ctx.git.dirty:
        out["io.tfgov.dirty"] = "true"
    return out


def image_config(ctx: Context, base_config: dict[str, Any], image_labels: dict[str, str]) -> dict[str, Any]:
    """The model image's config: the base's, with the app's user, env, command and labels."""
    app = ctx.config.app
    config = dict(base_config.get("config", {}))
    env = dict(item.split("=", 1) for item in config.get("Env", []) if "=" in item)
    env.update(dict(app.env))
    config["Env"] = [f"{k}={v}" for k, v in env.items()]
    if app.entrypoint:
        config["Entrypoint"] = list(app.entrypoint)
        config["Cmd"] = list(app.cmd) or None
    elif app.cmd:
        config["Cmd"] = list(app.cmd)
    config = {k: v for k, v in config.items() if v is not None}
    config["WorkingDir"] = app.workdir
    config["User"] = app.user
    if app.ports:
        config["ExposedPorts"] = {port: {} for port in app.ports}
    config["Labels"] = {**config.get("Labels", {}), **image_labels}
    return {**base_config, "config": config}


def checked_lock(ctx: Context) -> str:
    """The lock's digest, refused if the lock changed after the lock stage wrote it."""
    cfg = ctx.config
    path = cfg.project_dir / cfg.dependencies.lock
    digest = lock_digest(path) if path.is_file() else None
    locked_by = read_result(ctx, "lock").data.get("lock_digest")
    if locked_by is not None and digest != locked_by:
        raise BuildInputError(
            f"{cfg.dependencies.lock} changed after the lock stage wrote it",
            "a lock is edited only by `tfgov-ci run lock`: run it again and commit the result",
        )
    if not ctx.allow_dirty:
        # The tags name a commit: the lock that builds the image must be that commit's lock.
        status = tools.run(_git_status_argv(path), cwd=str(ctx.git.root)).stdout
        if status.strip():
            raise BuildInputError(
                f"{cfg.dependencies.lock} is not the committed one (the lock stage re-resolved it)",
                f"review and commit {cfg.dependencies.lock} and its .tree.json, then run again",
            )
    return digest or ""


def _git_status_argv(lock: Path) -> list[str]:
    return ["git", "status", "--porcelain", "--", str(lock)]


def lock_check_steps(ctx: Context) -> tuple[Step, ...]:
    """The plan's view of :func:`checked_lock` (no command with --allow-dirty)."""
    if ctx.allow_dirty:
        return ()
    lock = ctx.config.project_dir / ctx.config.dependencies.lock
    return (Step("check that the lock is the committed one", tuple(_git_status_argv(lock)), "git"),)


def staging_path(ctx: Context) -> str:
    """How a plan names the staging folder of :func:`replace_layout`."""
    return f"{layout_path(ctx).parent}/<staging dir>"


def dockerfile_inputs(ctx: Context, options: Mapping[str, Any]) -> tuple[Path, Path, dict[str, str]]:
    """Dockerfile, build context and build arguments of a Dockerfile backend."""
    cfg = ctx.config
    context = (cfg.project_dir / str(options.get("context", "."))).resolve()
    dockerfile = (cfg.project_dir / str(options.get("dockerfile", "Dockerfile"))).resolve()
    if not dockerfile.is_file():
        raise BuildInputError(f"no Dockerfile at {dockerfile}", "set stages.build.options.dockerfile")
    lock = (cfg.project_dir / cfg.dependencies.lock).resolve()
    args = {
        "TFGOV_BASE": cfg.base.image,
        "TFGOV_LOCK": os.path.relpath(lock, context),
        "SOURCE_DATE_EPOCH": str(ctx.source_date_epoch),
    }
    return dockerfile, context, args


def layout_path(ctx: Context) -> Path:
    return BuiltImage.layout_path(ctx)


@contextmanager
def replace_layout(ctx: Context) -> Iterator[Path]:
    """A staging folder that becomes ``<out>/build/oci`` only if the block succeeds."""
    final = layout_path(ctx)
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".oci.", dir=final.parent))
    try:
        yield staging
        if final.exists():
            shutil.rmtree(final)
        staging.replace(final)
    finally:
        if staging.exists():
            shutil.rmtree(staging)


def finish(ctx: Context, staging: Path, image_labels: dict[str, str], base: Any, lock: str) -> dict[str, Any]:
    """Tag the one image in ``staging`` with every commit tag; describe it for the result."""
    layers = len(base.manifest["layers"])
    return describe(
        ctx,
        staging,
        image_labels,
        {"ref": ctx.config.base.image, "digest": base.ref.digest, "layers": layers},
        lock,
    )


def describe(
    ctx: Context, staging: Path, image_labels: dict[str, str] | None, base: dict[str, Any], lock: str
) -> dict[str, Any]:
    """Tag the one image in ``staging`` with every commit tag; the build result's data, the same
    whichever backend built it. ``base`` is the result's base entry (``layers``: how many of the
    image's layers are the base's); ``image_labels`` None: the image config's own."""
    layout = Layout.open(staging)
    entries = layout.index().get("manifests", [])
    if len(entries) != 1:
        raise BuildError(f"expected one image in {staging}, found {len(entries)}")
    descriptor = Descriptor.from_json(entries[0])
    images = ctx.images()
    layout.tag(Descriptor(descriptor.media_type, descriptor.digest, descriptor.size), images.tags)
    manifest = layout.read_json(descriptor.digest)
    config = layout.read_json(manifest["config"]["digest"])
    history = [h for h in config.get("history", []) if not h.get("empty_layer")]
    base_layers = int(base["layers"])
    layers = []
    diff_ids = (config.get("rootfs") or {}).get("diff_ids") or []
    for index, entry in enumerate(manifest["layers"][base_layers:], base_layers):
        what = history[index].get("created_by", "") if index < len(history) else ""
        layer = {"digest": entry["digest"], "size": entry["size"], "what": what, "cached": False}
        if index < len(diff_ids):  # the uncompressed digest, as SBOMs (syft's layerID) name a layer
            layer["diff_id"] = diff_ids[index]
        layers.append(layer)
    return {
        "digest": descriptor.digest,
        "config_digest": manifest["config"]["digest"],
        "size": sum(int(e["size"]) for e in manifest["layers"]),
        "tags": list(images.tags),
        "refs": list(images.refs),
        "labels": image_labels
        if image_labels is not None
        else dict(config.get("config", {}).get("Labels") or {}),
        "user": config.get("config", {}).get("User", ""),
        "base": base,
        "lock_digest": lock,
        "layers": layers,
    }


def peak_memory_bytes() -> int:
    """The most memory this process, or the largest tool it has waited for, held at once (peak
    RSS, Linux's ``ru_maxrss``). The native builder builds in this process and buildah in a child,
    so this is the build's; Docker builds in its daemon, which no child's figure shows. In CI each
    stage is a job of its own; on a laptop's ``tfgov-ci run`` it includes the stages before."""
    import resource

    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return int(max(own, children)) * 1024  # KiB on Linux


def built(ctx: Context, stage: str, backend: str, clock: Clock, data: dict[str, Any]) -> StageResult:
    """The result of a build: the same contract whichever backend built the image (with the peak
    memory, for ``inventory forecast``), after :func:`hand_off`."""
    data = {**data, "peak_memory_bytes": peak_memory_bytes(), "pushed": hand_off(ctx, str(data["digest"]))}
    message = f"{data['digest']} ({len(data['layers'])} layers on the base, {data['size'] / 1e6:.1f} MB)"
    return passed(ctx, stage, backend, clock, message, outputs={"layout": str(layout_path(ctx))}, data=data)


def handoff_steps(ctx: Context) -> tuple[Step, ...]:
    """The plan's view of :func:`hand_off`, which every backend's build ends with."""
    target = hands_off(ctx)
    if target is None:
        return (Step("keep the image in the out directory's layout (no image.registry to hand it over)"),)
    registry = Registry.of(target, ctx.config.registries)
    with registry.access.skopeo_args("dest", planned=True) as dest:
        push = registry.copy_argv(
            layout_transport(layout_path(ctx), ctx.images().tags[0]),
            f"docker://{pushed_at(ctx, '<build digest>')}",
            dest,
        )
    return (
        Step(
            "push the image by digest, no tag (none names an image the gate has not allowed): the later "
            "stages read it from there, and the out directory hands them results, not layers",
            tuple(push),
            "skopeo",
        ),
    )


def hand_off(ctx: Context, digest: str) -> str | None:
    """Push the built image by digest to ``image.registry``'s repository, no tag; where it is
    (``registry/repository@digest``), or None without ``image.registry``. Blobs the registry has
    (the base's, unchanged dependency layers) are not sent again."""
    if hands_off(ctx) is None:
        return None
    target = pushed_at(ctx, digest)
    registry = Registry.of(target, ctx.config.registries)
    registry.push(layout_transport(layout_path(ctx), ctx.images().tags[0]), target)
    return str(target)


# --- the pinned base, pulled by digest into the cache: every backend builds on it ---------------


@dataclass(frozen=True)
class BaseImage:
    ref: reference.Reference
    layout: Layout
    manifest: dict[str, Any]
    config: dict[str, Any]

    @property
    def labels(self) -> dict[str, str]:
        found: dict[str, str] = self.config.get("config", {}).get("Labels") or {}
        return found

    def target(self, python: str) -> Target:
        """Where wheels go in this base: from its io.tfgov.* labels, else Debian's defaults."""
        get = self.labels.get
        return Target(
            python=get("io.tfgov.python.version", python),
            platforms=tuple(
                manylinux_platforms(_glibc(get("io.tfgov.python.platform", "manylinux_2_36_x86_64")))
            ),
            site_packages=get(
                "io.tfgov.python.site-packages", f"/usr/local/lib/python{python}/dist-packages"
            ),
            scripts_dir=get("io.tfgov.python.scripts", "/usr/local/bin"),
            executable=get("io.tfgov.python.executable", f"/usr/bin/python{python}"),
        )

    def provided(self) -> dict[str, str]:
        """Python packages the base already holds (its io.tfgov.python.packages label)."""
        text = self.labels.get("io.tfgov.python.packages", "")
        pairs = (item.split("==", 1) for item in text.split(",") if "==" in item)
        return {name: version for name, version in pairs}

    @property
    def epoch(self) -> int:
        created = self.config.get("created")
        if not created:
            return 0
        import datetime as dt

        return int(dt.datetime.fromisoformat(created.replace("Z", "+00:00")).timestamp())


def _glibc(platform: str) -> tuple[int, int]:
    parts = platform.split("_")
    try:
        return int(parts[1]), int(parts[2])
    except (IndexError, ValueError):
        return (2, 17)


def _cached_name(ref: Reference) -> str:
    return (ref.digest or "").replace(":", "-")


def base_pull_step(ctx: Context, cache: Path) -> Step:
    """The plan's view of :func:`pull_base`: skopeo from the registry into the cache, when missing."""
    ref = reference.parse(ctx.config.base.image)
    registry = Registry.of(ref, ctx.config.registries)
    with registry.access.skopeo_args("src", planned=True) as args:
        argv = registry.copy_argv(
            f"docker://{ref}", layout_transport(cache / "base", _cached_name(ref)), args
        )
    return Step(
        "pull the base by digest into the cache (skipped when cached)", tuple(argv), "skopeo", optional=True
    )


def pull_base(ref_text: str, cache: Path, registries: Mapping[str, Mapping[str, Any]]) -> BaseImage:
    """The base image by digest, from the cache or pulled into it with skopeo; blobs verified."""
    ref = reference.parse(ref_text)
    if not ref.digest:
        raise BuildInputError(f"base image {ref_text} is not pinned by digest", "pin it: REF@sha256:<digest>")
    layout = Layout.create(cache / "base")
    name = _cached_name(ref)
    try:
        descriptor = layout.resolve(name)
    except Exception:
        descriptor = None
    if descriptor is None:
        try:
            Registry.of(ref, registries).pull(ref, layout_transport(layout.path, name))
        except RegistryError as exc:
            if "not found" in exc.message:
                raise BuildError(
                    f"base image {ref_text} not found", "check the digest the platform team published"
                ) from None
            raise BuildError(exc.message, exc.hint) from None
        descriptor = layout.resolve(name)
    if descriptor.digest != ref.digest:
        raise BuildError(f"cached base {name} is {descriptor.digest}", "delete the cache and pull again")
    manifest = layout.read_json(ref.digest)
    config = layout.read_json(manifest["config"]["digest"])
    for entry in manifest["layers"]:
        layout.verify_blob(Descriptor.from_json(entry))
    return BaseImage(ref, layout, manifest, config)
