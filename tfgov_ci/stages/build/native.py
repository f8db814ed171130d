"""The native builder: daemonless, rootless, reproducible, in Python.

Image = the base (pulled by digest into the cache) + dependency layers from the lock (wheels for
the base's Python and platform, installed without resolution; each very large wheel in a layer
of its own) + one app layer from the files tfgov.yaml names. Every layer is deterministic
(:mod:`tfgov_ci.oci.layer`): the same commit and lock give the same digest anywhere. Dependency
layers take the base's timestamp, not the commit's, and are cached by their wheels' hashes and
the target, so a code-only change rebuilds only the app layer.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any, ClassVar

from tfgov_ci._files import atomic_write_json, cache_dir
from tfgov_ci.context import Context
from tfgov_ci.oci import image as oci_image
from tfgov_ci.oci.layer import DEFAULT_COMPRESSLEVEL, Layer, LayerBuilder
from tfgov_ci.oci.layout import Descriptor, Layout
from tfgov_ci.pipeline import (
    STAGES,
    Clock,
    StagePlan,
    StageResult,
    Step,
    result_path,
)
from tfgov_ci.stages.build.interface import (
    BuildInputError,
    base_pull_step,
    built,
    checked_lock,
    finish,
    handoff_steps,
    image_config,
    labels,
    layout_path,
    lock_check_steps,
    pull_base,
    replace_layout,
)
from tfgov_ci.wheels import (
    Locked,
    Target,
    WheelCache,
    download_argv,
    install_into,
    lock_digest,
    parse_lock,
)

BIG_WHEEL_BYTES = 50 * 1024 * 1024  # a wheel this large gets a layer of its own
LAYER_FORMAT = 1  # bump when layer bytes change for the same inputs: invalidates the layer cache
SKIP_DIRS = {".git", ".tfgov", "__pycache__"}


class LayerCache:
    """Dependency layers by what went into them; blobs live in a shared layout."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.layout = Layout.create(root / "oci")

    def get(self, key: str) -> Layer | None:
        path = self.root / "index" / f"{key}.json"
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        descriptor = Descriptor.from_json(data["descriptor"])
        if not self.layout.has_blob(descriptor.digest):
            return None
        return Layer(descriptor, data["diff_id"], data["entries"], data["uncompressed_size"])

    def put(self, key: str, layer: Layer) -> None:
        atomic_write_json(
            self.root / "index" / f"{key}.json",
            {
                "descriptor": layer.descriptor.to_json(),
                "diff_id": layer.diff_id,
                "entries": layer.entries,
                "uncompressed_size": layer.uncompressed_size,
            },
        )


class NativeBuilder:
    stage: ClassVar[str] = "build"
    name: ClassVar[str] = "native"
    tools: ClassVar[tuple[str, ...]] = ("skopeo", "git", "pip")

    def __init__(self, options: Mapping[str, Any]) -> None:
        self.big_wheel_bytes = (
            int(options.get("big_wheel_mb", BIG_WHEEL_BYTES // (1024 * 1024))) * 1024 * 1024
        )
        self.compresslevel = int(options.get("compresslevel", DEFAULT_COMPRESSLEVEL))

    def plan(self, ctx: Context) -> StagePlan:
        cfg = ctx.config
        cache = cache_dir()
        lock = cfg.project_dir / cfg.dependencies.lock
        return StagePlan(
            stage=self.stage,
            backend=self.name,
            available=True,
            summary=STAGES[self.stage].summary,
            tools=self.tools,
            steps=(
                base_pull_step(ctx, cache),
                *lock_check_steps(ctx),
                Step(
                    "fetch the locked wheels for the base's Python and platform, hashes checked "
                    "(skipped when all are cached)",
                    tuple(
                        download_argv(
                            "<base python>",
                            ["<*--platform of the base>"],
                            ["<*package index options>"],
                            f"{cache / 'wheels'}/<temporary dir>/wheels",
                            f"{cache / 'wheels'}/<temporary dir>/requirements.txt",
                        )
                    ),
                    "pip",
                    optional=True,
                ),
                Step(
                    f"dependency layers: each wheel over {self.big_wheel_bytes >> 20} MB alone, "
                    "the rest together; cached by wheel hashes"
                ),
                Step(
                    f"app layer: {', '.join(cfg.app.files)} under {cfg.app.workdir}, "
                    f"mtime {ctx.source_date_epoch}"
                ),
                Step(f"image config: user {cfg.app.user}, labels, then the manifest into {layout_path(ctx)}"),
                *handoff_steps(ctx),
            ),
            inputs=(str(result_path(ctx.out_dir, "lock")), str(lock), *cfg.app.files),
            outputs=(str(result_path(ctx.out_dir, self.stage)), str(layout_path(ctx))),
        )

    def run(self, ctx: Context, plan: StagePlan) -> StageResult:
        clock = Clock.start()
        cfg = ctx.config
        cache = cache_dir()
        ctx.images()  # refuses a dirty tree before any work
        base = pull_base(cfg.base.image, cache, cfg.registries)
        target = base.target(cfg.runtime.python)
        lock_path = cfg.project_dir / cfg.dependencies.lock
        checked_lock(ctx)
        locked = parse_lock(lock_path)
        install = self._to_install(locked, base.provided())
        wheels = WheelCache(cache / "wheels").fetch(install, target)

        image_labels = labels(ctx, base.ref, lock_digest(lock_path))
        with replace_layout(ctx) as staging:
            layout = Layout.create(staging)
            for entry in base.manifest["layers"]:
                layout.import_blob(base.layout, Descriptor.from_json(entry))
            layer_cache = LayerCache(cache / "layers")
            made = [
                self._dependency_layer(group, wheels, target, base.epoch, layer_cache, layout)
                for group in self._groups(install, wheels)
            ]
            made.append(
                (self._app_layer(ctx, layout), f"tfgov-ci native: app {', '.join(cfg.app.files)}", False)
            )
            config = oci_image.append_layers(
                image_config(ctx, base.config, image_labels),
                [(layer, what) for layer, what, _ in made],
                ctx.source_date_epoch,
            )
            descriptors = [Descriptor.from_json(e) for e in base.manifest["layers"]] + [
                m[0].descriptor for m in made
            ]
            written = oci_image.write_image(layout, config, descriptors)
            layout.tag(written.manifest, ctx.images().tags[:1])
            data = finish(ctx, staging, image_labels, base, lock_digest(lock_path))
        data["installed"] = [f"{r.name}=={r.version}" for r in install]
        # the sha256 of each wheel installed (its cache folder is named by it), for the provenance
        data["wheels"] = {r.name: wheels[r.name].parent.name for r in install}
        data["provided_by_base"] = sorted(f"{n}=={v}" for n, v in base.provided().items())
        data["layers"] = [
            {
                "digest": layer.descriptor.digest,
                "size": layer.descriptor.size,
                "diff_id": layer.diff_id,
                "what": what,
                "cached": cached,
            }
            for layer, what, cached in made
        ]
        return built(ctx, self.stage, self.name, clock, data)

    @staticmethod
    def _to_install(locked: list[Locked], provided: dict[str, str]) -> list[Locked]:
        clashes = [
            f"{r.name} {r.version} (the base has {provided[r.name]})"
            for r in locked
            if r.name in provided and provided[r.name] != r.version
        ]
        if clashes:
            raise BuildInputError(
                f"the lock asks for other versions of packages the base provides: {', '.join(clashes)}",
                "keep the base's versions (they are constraints), or move to a base that has them",
            )
        return [r for r in locked if provided.get(r.name) != r.version]

    def _groups(self, install: list[Locked], wheels: dict[str, Path]) -> list[list[Locked]]:
        big = [[r] for r in install if wheels[r.name].stat().st_size >= self.big_wheel_bytes]
        rest = [r for r in install if wheels[r.name].stat().st_size < self.big_wheel_bytes]
        return sorted(big, key=lambda g: g[0].name) + ([rest] if rest else [])

    def _dependency_layer(
        self,
        group: list[Locked],
        wheels: dict[str, Path],
        target: Target,
        epoch: int,
        cache: LayerCache,
        layout: Layout,
    ) -> tuple[Layer, str, bool]:
        what = f"tfgov-ci native: wheels {', '.join(f'{r.name}=={r.version}' for r in group)}"
        if len(what) > 200:
            what = f"tfgov-ci native: {len(group)} wheels ({group[0].name} ... {group[-1].name})"
        key_data = {
            "format": LAYER_FORMAT,
            "wheels": sorted(wheels[r.name].parent.name for r in group),
            "target": target.key,
            "epoch": epoch,
            "level": self.compresslevel,
        }
        key = hashlib.sha256(json.dumps(key_data, sort_keys=True).encode()).hexdigest()
        cached = cache.get(key)
        if cached is None:
            builder = LayerBuilder(epoch)
            for req in group:
                install_into(builder, wheels[req.name], target)
            cached = builder.write(cache.layout, self.compresslevel)
            cache.put(key, cached)
            hit = False
        else:
            hit = True
        layout.import_blob(cache.layout, cached.descriptor)
        return cached, what, hit

    def _app_layer(self, ctx: Context, layout: Layout) -> Layer:
        import glob

        cfg = ctx.config
        project = cfg.project_dir
        builder = LayerBuilder(ctx.source_date_epoch)
        workdir = cfg.app.workdir
        builder.add_dir(workdir)
        paths: set[Path] = set()
        for pattern in cfg.app.files:
            for match in glob.glob(pattern, root_dir=project, recursive=True):
                path = project / match
                paths.add(path)
                if path.is_dir() and not path.is_symlink():
                    for folder, dirs, files in os.walk(path):
                        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS)
                        paths.update(Path(folder, name) for name in (*dirs, *files))
        root = ctx.git.root
        for path in sorted(paths):
            rel = path.relative_to(project).as_posix()
            if rel == "." or any(part in SKIP_DIRS for part in Path(rel).parts):
                continue
            dest = f"{workdir}/{rel}"
            info = path.lstat()
            if stat.S_ISLNK(info.st_mode):
                resolved = path.resolve()
                if not resolved.is_relative_to(root):
                    raise BuildInputError(
                        f"{rel} is a symlink out of the repository ({resolved})",
                        "copy the file into the repository",
                    )
                builder.add_symlink(dest, str(path.readlink()))
            elif stat.S_ISDIR(info.st_mode):
                builder.add_dir(dest)
            elif stat.S_ISREG(info.st_mode):
                mode = 0o755 if info.st_mode & 0o111 else 0o644
                builder.add_file(dest, _opener(path), info.st_size, mode)
            else:
                raise BuildInputError(
                    f"{rel} is a special file (device, socket or fifo)",
                    "only regular files, folders and symlinks go into an image",
                )
        return builder.write(layout, self.compresslevel)


def _opener(path: Path) -> Callable[[], IO[bytes]]:
    return lambda: path.open("rb")
