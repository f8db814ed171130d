"""``tfgov-ci init``: write a commented tfgov.yaml for a model repository.

It looks at what is there (train.py, requirements.txt, a Dockerfile) and at the organisation
file, writes the file atomically, then loads and checks it: what init writes always validates.
``--from-dockerfile`` takes what the file says from a Dockerfile instead (:mod:`.dockerfile`).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tfgov_ci import compat
from tfgov_ci import config as config_mod
from tfgov_ci._files import atomic_write_text, load_yaml
from tfgov_ci.context import slug
from tfgov_ci.errors import ConfigError, UsageError
from tfgov_ci.oci import reference

if TYPE_CHECKING:
    from tfgov_ci.scaffold.dockerfile import Migration

DEFAULT_PYTHON = "3.11"
_TF_PIN = re.compile(r"^\s*tensorflow(?:-cpu|-gpu)?\s*==\s*([0-9]+\.[0-9]+(?:\.[0-9]+)?)", re.I | re.M)
_TF_FROM = re.compile(r"^\s*FROM\s+\S*tensorflow/tensorflow:([0-9]+\.[0-9]+(?:\.[0-9]+)?)", re.I | re.M)


def init(
    directory: Path,
    *,
    name: str | None = None,
    base: str | None = None,
    registry: str | None = None,
    org_path: Path | None = None,
    force: bool = False,
) -> Path:
    """Write ``directory/tfgov.yaml`` and return its path."""
    target = directory / config_mod.CONFIG_NAME
    if target.exists() and not force:
        raise UsageError(f"{target} already exists", "pass --force to overwrite it")
    files = sorted(
        p.name
        for p in directory.iterdir()
        if p.is_file() and p.suffix == ".py" and not p.name.startswith(".")
    )
    entry = "train.py" if "train.py" in files else (files[0] if files else None)
    return _write(
        directory,
        target,
        org_path,
        base,
        name=name,
        registry=registry,
        files=files or ["."],
        entrypoint=["python", entry] if entry else [],
        tensorflow=_detect_tensorflow(directory),
        has_dockerfile=(directory / "Dockerfile").is_file(),
    )


def _write(directory: Path, target: Path, org_path: Path | None, base: str | None, **fields: Any) -> Path:
    """Check the base, render, check the result, then write it whole (or nothing)."""
    if org_path is None and os.environ.get(config_mod.ORG_CONFIG_ENV):
        org_path = Path(os.environ[config_mod.ORG_CONFIG_ENV])
    org_defaults = load_yaml(org_path).data.get("defaults", {}) if org_path else {}
    org_base = org_defaults.get("base", {}).get("image")
    if base is None and org_base is None:
        raise UsageError(
            "no base image: tfgov.yaml must name the central base, pinned by digest",
            "pass --base REGISTRY/REPO@sha256:<digest>, or set TFGOV_ORG_CONFIG to your "
            "platform team's organisation file",
        )
    if base is not None:
        try:
            if not reference.parse(base).pinned:
                raise UsageError(f"--base {base} is not pinned by digest", "append @sha256:<digest>")
        except reference.ReferenceError as exc:
            raise UsageError(f"--base {base}: {exc}") from None
    name = fields.pop("name", None)
    image_name = name or slug(directory.resolve().name).replace("_", "-").replace(".", "-").strip("-")
    text = _render(
        name=image_name,
        base=base,
        has_requirements=(directory / fields.get("requirements", "requirements.txt")).is_file(),
        **fields,
    )
    # Check before writing: what init leaves behind must validate (the structure, at least;
    # `tfgov-ci validate` then checks the repository around it).
    probe = directory / f".{config_mod.CONFIG_NAME}.init-check"
    try:
        atomic_write_text(probe, text)
        config_mod.load(probe, org_path)
    except ConfigError as exc:
        raise UsageError(
            "the generated tfgov.yaml does not validate: " + "; ".join(p.render() for p in exc.problems),
            "pass --name with lowercase letters, digits and '-'",
        ) from None
    finally:
        probe.unlink(missing_ok=True)
    atomic_write_text(target, text)
    return target


def init_from_dockerfile(
    directory: Path,
    dockerfile: Path,
    *,
    name: str | None = None,
    base: str | None = None,
    registry: str | None = None,
    org_path: Path | None = None,
    force: bool = False,
) -> tuple[Path, Migration]:
    """Write ``directory/tfgov.yaml`` from ``dockerfile`` (its build context: ``directory``);
    return its path and the migration's notes (carried over, and left for a person)."""
    from tfgov_ci.scaffold.dockerfile import migrate
    from tfgov_ci.stages.build.dockerfile import read

    target = directory / config_mod.CONFIG_NAME
    if target.exists() and not force:
        raise UsageError(f"{target} already exists", "pass --force to overwrite it")
    migration = migrate(read(dockerfile), directory)
    if migration.tensorflow is None:
        migration.tensorflow = _detect_tensorflow(directory)
        migration.took(
            None, f"runtime.tensorflow {migration.tensorflow}: from requirements.txt, or the newest known"
        )
    if not migration.entrypoint and not migration.cmd:
        files = sorted(p.name for p in directory.glob("*.py"))
        entry = "train.py" if "train.py" in files else (files[0] if files else None)
        if entry:
            migration.entrypoint = ["python", entry]
            migration.took(None, f"no CMD or ENTRYPOINT: app.entrypoint runs {entry}")
    requirements = migration.requirements or "requirements.txt"
    if not (directory / requirements).is_file():
        migration.leave(
            None, f"{requirements} does not exist: create it (one requirement a line; may be empty)"
        )
    path = _write(
        directory,
        target,
        org_path,
        base,
        name=name,
        registry=registry,
        header=f"# Migrated from {os.path.relpath(dockerfile, directory)} by "
        "`tfgov-ci init --from-dockerfile`: "
        "the native builder builds\n# what this file says; the Dockerfile is no longer needed.",
        files=migration.files or ["."],
        entrypoint=migration.entrypoint,
        cmd=migration.cmd,
        tensorflow=migration.tensorflow,
        python=migration.python,
        variant=migration.variant,
        cuda=migration.cuda,
        requirements=requirements,
        workdir=migration.workdir,
        env=migration.env,
        ports=migration.ports,
    )
    return path, migration


def _detect_tensorflow(directory: Path) -> str:
    for file, pattern in (("requirements.txt", _TF_PIN), ("Dockerfile", _TF_FROM)):
        path = directory / file
        if path.is_file():
            found = pattern.search(path.read_text(encoding="utf-8", errors="replace"))
            if found and compat.release(found.group(1)):
                return found.group(1)
    return f"{compat.RELEASES[0].version}.0"


def _render(
    *,
    name: str,
    registry: str | None,
    base: str | None,
    files: list[str],
    entrypoint: list[str],
    tensorflow: str,
    has_requirements: bool,
    has_dockerfile: bool = False,
    header: str | None = None,
    cmd: Sequence[str] = (),
    python: str = DEFAULT_PYTHON,
    variant: str = "cpu",
    cuda: str | None = None,
    requirements: str = "requirements.txt",
    workdir: str = "/app",
    env: Mapping[str, str] | None = None,
    ports: Sequence[int | str] = (),
) -> str:
    def flow(items: Sequence[int | str]) -> str:
        return "[" + ", ".join(json.dumps(item) for item in items) + "]"

    lines = [
        "# tfgov-ci configuration: https://tfgov-ci.dev (schema: schemas/tfgov.schema.json)",
        "# Check it with `tfgov-ci validate`; see what a run would do with `tfgov-ci plan`.",
        *([header] if header else []),
        "version: 1",
        "",
        "image:",
        "  # lowercase letters, digits and '-'; the image is tagged with the git commit it is built from",
        f"  name: {name}",
    ]
    if registry:
        lines += [
            "  # where `publish` pushes the image (credentials never go in this file)",
            f"  registry: {registry}",
        ]
    else:
        lines += ["  # registry: registry.example.com   # absent: a local OCI layout under .tfgov/"]
    lines += [
        "  # repository: ml/" + name + "      # path in the registry; default: the name",
        f"  variant: {variant}                      # cpu or gpu (gpu needs runtime.cuda)",
        "",
    ]
    if base:
        lines += ["base:", "  # the platform team's central base image, pinned by digest", f"  image: {base}"]
    else:
        lines += ["# base: inherited from the organisation file (the central, pinned base image)"]
    lines += [
        "",
        "runtime:",
        "  # versions inside the base image; checked against TensorFlow's tested configurations",
        f'  python: "{python}"',
        f'  tensorflow: "{tensorflow}"',
        *([f'  cuda: "{cuda}"'] if cuda else []),
        "",
        "dependencies:",
        f"  requirements: {json.dumps(requirements)}   # what you ask for"
        + ("" if has_requirements else " (create it: one requirement a line)"),
        "  lock: requirements.lock          # what the lock stage resolves, with hashes",
        "",
        "app:",
        "  # files or globs copied into the image, relative to this file",
        f"  files: {flow(files)}",
        f"  entrypoint: {flow(entrypoint)}",
        *([f"  cmd: {flow(list(cmd))}"] if cmd else []),
        f"  workdir: {json.dumps(workdir)}",
        '  user: "65532:65532"              # non-root; root must be asked for explicitly',
        *([f"  ports: {flow(list(ports))}"] if ports else []),
    ]
    if env:
        lines += ["  env:", *(f"    {key}: {json.dumps(value)}" for key, value in env.items())]
    lines += [
        "",
        "# per-stage backends (see `tfgov-ci plan`); defaults come from pipelines/tf-image.yaml",
        "# stages:",
    ]
    if has_dockerfile:
        lines += [
            "#   build:",
            "#     backend: buildah   # a Dockerfile was found: buildah or docker build it as is",
        ]
    else:
        lines += ["#   build:", "#     backend: native"]
    return "\n".join(lines) + "\n"
