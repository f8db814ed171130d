"""``tfgov-ci init``: write a commented tfgov.yaml for a model repository.

It looks at what is there (train.py, requirements.txt, a Dockerfile) and at the organisation
file, writes the file atomically, then loads and checks it: what init writes always validates.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from tfgov_ci import compat
from tfgov_ci import config as config_mod
from tfgov_ci._files import atomic_write_text, load_yaml
from tfgov_ci.context import slug
from tfgov_ci.errors import ConfigError, UsageError
from tfgov_ci.oci import reference

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

    image_name = name or slug(directory.resolve().name).replace("_", "-").replace(".", "-").strip("-")
    files = sorted(
        p.name
        for p in directory.iterdir()
        if p.is_file() and p.suffix == ".py" and not p.name.startswith(".")
    )
    has_requirements = (directory / "requirements.txt").is_file()
    dockerfile = directory / "Dockerfile"
    tensorflow = _detect_tensorflow(directory)
    entry = "train.py" if "train.py" in files else (files[0] if files else None)

    text = _render(
        name=image_name,
        registry=registry,
        base=base,
        files=files or ["."],
        entrypoint=["python", entry] if entry else [],
        tensorflow=tensorflow,
        has_requirements=has_requirements,
        has_dockerfile=dockerfile.is_file(),
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
    has_dockerfile: bool,
) -> str:
    def flow(items: list[str]) -> str:
        return "[" + ", ".join(f'"{item}"' for item in items) + "]"

    lines = [
        "# tfgov-ci configuration: https://tfgov-ci.dev (schema: schemas/tfgov.schema.json)",
        "# Check it with `tfgov-ci validate`; see what a run would do with `tfgov-ci plan`.",
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
        "  variant: cpu                      # cpu or gpu (gpu needs runtime.cuda)",
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
        f'  python: "{DEFAULT_PYTHON}"',
        f'  tensorflow: "{tensorflow}"',
        "",
        "dependencies:",
        "  requirements: requirements.txt   # what you ask for"
        + ("" if has_requirements else " (create it: one requirement a line)"),
        "  lock: requirements.lock          # what the lock stage resolves, with hashes",
        "",
        "app:",
        "  # files or globs copied into the image, relative to this file",
        f"  files: {flow(files)}",
        f"  entrypoint: {flow(entrypoint)}",
        "  workdir: /app",
        '  user: "65532:65532"              # non-root; root must be asked for explicitly',
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
