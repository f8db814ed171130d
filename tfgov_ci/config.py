"""tfgov.yaml -> frozen dataclasses, checked against schemas/tfgov.schema.json.

An organisation file (``TFGOV_ORG_CONFIG`` or ``--org-config``) supplies defaults, merged under
the project's file, and may lock keys that projects cannot set. Every problem names its file, key
path and line. This module checks structure only; the validate stage checks meaning (base pinned
and allowed, versions coherent, paths inside the repository).
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import jsonschema

from tfgov_ci import _resources
from tfgov_ci._files import YamlDoc, display_path, key_path, load_yaml
from tfgov_ci.errors import ConfigError, Problem

CONFIG_NAME = "tfgov.yaml"
ORG_CONFIG_ENV = "TFGOV_ORG_CONFIG"


@dataclass(frozen=True)
class ImageConfig:
    name: str
    registry: str | None
    repository: str
    variant: str


@dataclass(frozen=True)
class BaseConfig:
    image: str
    allowed_registries: tuple[str, ...]


@dataclass(frozen=True)
class RuntimeConfig:
    python: str
    tensorflow: str
    cuda: str | None


@dataclass(frozen=True)
class DependencyConfig:
    requirements: str
    lock: str


@dataclass(frozen=True)
class AppConfig:
    files: tuple[str, ...]
    entrypoint: tuple[str, ...]
    cmd: tuple[str, ...]
    workdir: str
    user: str
    ports: tuple[str, ...]
    env: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class StageConfig:
    backend: str | None = None
    options: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True)
class Config:
    """A loaded, structurally valid configuration (project merged over organisation)."""

    version: int
    pipeline: str
    image: ImageConfig
    base: BaseConfig
    runtime: RuntimeConfig
    dependencies: DependencyConfig
    app: AppConfig
    stages: Mapping[str, StageConfig]
    registries: Mapping[str, Mapping[str, Any]]
    file: Path
    org_file: Path | None
    locked: tuple[str, ...]
    merged: Mapping[str, Any] = field(repr=False)
    sources: tuple[YamlDoc, ...] = field(repr=False)

    @property
    def project_dir(self) -> Path:
        return self.file.parent

    @property
    def digest(self) -> str:
        """sha256 of the merged configuration, as canonical JSON: what the record pins."""
        canonical = json.dumps(dict(self.merged), sort_keys=True, separators=(",", ":"))
        return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()

    def stage(self, name: str) -> StageConfig:
        return self.stages.get(name, StageConfig())

    def problem(self, parts: tuple[str | int, ...], message: str, hint: str | None = None) -> Problem:
        """A problem at a key path, located in whichever file set that key."""
        return _locate(self.sources, parts, message, hint)


def find_config(start: Path) -> Path:
    """``start/tfgov.yaml`` if ``start`` is a folder, else ``start`` itself."""
    return start / CONFIG_NAME if start.is_dir() else start


def load(path: Path, org_path: Path | None = None) -> Config:
    """Load and structurally validate a configuration; raise :class:`ConfigError` with every problem.

    ``org_path`` None means: take ``$TFGOV_ORG_CONFIG`` if it is set.
    """
    if org_path is None and os.environ.get(ORG_CONFIG_ENV):
        org_path = Path(os.environ[ORG_CONFIG_ENV])
    if not path.is_file():
        raise ConfigError(
            [
                Problem(
                    display_path(path),
                    "",
                    "file not found",
                    "run `tfgov-ci init` to write one, or pass --config FILE",
                )
            ]
        )
    project = load_yaml(path, display_path(path))
    org = load_yaml(org_path, display_path(org_path)) if org_path else None

    problems: list[Problem] = []
    defaults: dict[str, Any] = {}
    locked: tuple[str, ...] = ()
    if org is not None:
        problems += _schema_problems(org, _resources.schema("org-config"), (org,))
        if not problems:
            defaults = org.data.get("defaults", {})
            locked = tuple(org.data.get("locked", ()))
            partial = _without_required(_resources.schema("tfgov"))
            problems += _schema_problems(org, partial, (org,), data=defaults, prefix=("defaults",))
            problems += _unknown_locked_keys(org, locked)
        problems += [
            Problem(
                project.file,
                dotted,
                f"locked by the organisation file {org.file}",
                "remove it from tfgov.yaml; ask the platform team to change the shared value",
                project.line_of(tuple(dotted.split("."))),
            )
            for dotted in locked
            if project.has(tuple(dotted.split(".")))
        ]
    if problems:
        raise ConfigError(problems)

    merged = _merge(defaults, project.data)
    sources = (project,) if org is None else (project, _rebased(org, "defaults"))
    problems = _schema_problems(project, _resources.schema("tfgov"), sources, data=merged)
    if problems:
        raise ConfigError(problems)
    return _build(merged, path, org_path, locked, sources)


def _merge(under: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """Mappings merge key by key; anything else in ``over`` replaces what is ``under``."""
    out = copy.deepcopy(dict(under))
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _without_required(schema: Any) -> Any:
    """The schema for a partial file (the organisation's defaults): nothing required, and no
    conditions, which speak of whole files (a missing ``pipeline`` is not ``base-image``)."""
    if isinstance(schema, dict):
        dropped = {"required", "if", "then", "else"}
        return {k: _without_required(v) for k, v in schema.items() if k not in dropped}
    if isinstance(schema, list):
        return [_without_required(v) for v in schema]
    return schema


def _rebased(doc: YamlDoc, key: str) -> YamlDoc:
    """The part of ``doc`` under ``key``, keeping its lines, as if it were a whole file."""
    lines = {parts[1:]: line for parts, line in doc.lines.items() if parts[:1] == (key,)}
    data = doc.data.get(key, {})
    return YamlDoc(doc.file, data if isinstance(data, dict) else {}, lines)


def _locate(
    sources: Iterable[YamlDoc], parts: tuple[str | int, ...], message: str, hint: str | None
) -> Problem:
    docs = list(sources)
    owner = next((doc for doc in docs if doc.has(parts)), docs[0])
    return Problem(owner.file, key_path(parts), message, hint, owner.line_of(parts))


def _schema_problems(
    doc: YamlDoc,
    schema: dict[str, Any],
    sources: tuple[YamlDoc, ...],
    *,
    data: Any = None,
    prefix: tuple[str | int, ...] = (),
) -> list[Problem]:
    validator = jsonschema.Draft202012Validator(schema)
    instance = doc.data if data is None else data
    problems: list[Problem] = []
    for error in sorted(validator.iter_errors(instance), key=lambda e: list(map(str, e.path))):
        parts = (*prefix, *error.absolute_path)
        if error.validator == "additionalProperties" and isinstance(error.instance, dict):
            known = sorted(error.schema.get("properties", {}))
            for key in sorted(set(error.instance) - set(known)):
                close = difflib.get_close_matches(str(key), known, n=1)
                hint = f"did you mean '{close[0]}'?" if close else None
                hint = hint or (f"known keys here: {', '.join(known)}" if known else None)
                problems.append(_locate(sources, (*parts, key), "unknown key", hint))
            continue
        if error.validator == "required":
            missing = str(error.message).split("'")[1] if "'" in error.message else error.message
            sub = error.schema.get("properties", {}).get(missing, {})
            problems.append(
                _locate(sources, (*parts, missing), "required key is missing", sub.get("description"))
            )
            continue
        message = _message(error)
        description = error.schema.get("description") if isinstance(error.schema, dict) else None
        problems.append(_locate(sources, parts, message, description))
    return problems


def _message(error: jsonschema.ValidationError) -> str:
    if error.validator == "type":
        return f"expected {error.validator_value}, found {_type_name(error.instance)}"
    if error.validator == "pattern":
        return f"{error.instance!r} does not match {error.validator_value}"
    return str(error.message)


def _type_name(value: Any) -> str:
    names = {
        bool: "boolean",
        int: "integer",
        float: "number",
        str: "string",
        list: "array",
        dict: "mapping",
        type(None): "null",
    }
    return names.get(type(value), type(value).__name__)


def _unknown_locked_keys(org: YamlDoc, locked: tuple[str, ...]) -> list[Problem]:
    schema = _resources.schema("tfgov")
    problems = []
    for index, dotted in enumerate(locked):
        node: Any = schema
        for part in dotted.split("."):
            node = node.get("properties", {}).get(part) if isinstance(node, dict) else None
            if node is None:
                break
        if node is None:
            problems.append(
                Problem(
                    org.file,
                    f"locked[{index}]",
                    f"'{dotted}' is not a tfgov.yaml key",
                    "use a dotted path such as 'base.allowed_registries'",
                    org.line_of(("locked", index)),
                )
            )
    return problems


def _build(
    data: Mapping[str, Any],
    path: Path,
    org_path: Path | None,
    locked: tuple[str, ...],
    sources: tuple[YamlDoc, ...],
) -> Config:
    image, base, runtime = data["image"], data["base"], data["runtime"]
    deps, app = data.get("dependencies", {}), data.get("app", {})  # no app: the base-image pipeline
    return Config(
        version=data["version"],
        pipeline=data.get("pipeline", "tf-image"),
        image=ImageConfig(
            name=image["name"],
            registry=image.get("registry"),
            repository=image.get("repository", image["name"]),
            variant=image.get("variant", "cpu"),
        ),
        base=BaseConfig(base["image"], tuple(base.get("allowed_registries", ()))),
        runtime=RuntimeConfig(runtime["python"], runtime["tensorflow"], runtime.get("cuda")),
        dependencies=DependencyConfig(
            deps.get("requirements", "requirements.txt"), deps.get("lock", "requirements.lock")
        ),
        app=AppConfig(
            files=tuple(app.get("files", ())),
            entrypoint=tuple(app.get("entrypoint", ())),
            cmd=tuple(app.get("cmd", ())),
            workdir=app.get("workdir", "/app"),
            user=app.get("user", "65532:65532"),
            ports=tuple(p if isinstance(p, str) else f"{p}/tcp" for p in app.get("ports", ())),
            env=tuple(sorted(app.get("env", {}).items())),
        ),
        stages=MappingProxyType(
            {
                name: StageConfig(spec.get("backend"), MappingProxyType(dict(spec.get("options", {}))))
                for name, spec in data.get("stages", {}).items()
            }
        ),
        registries=MappingProxyType(
            {
                host: {
                    **spec,
                    **(
                        {"ca_file": str(path.parent.resolve() / spec["ca_file"])} if "ca_file" in spec else {}
                    ),
                }
                for host, spec in data.get("registries", {}).items()
            }
        ),
        file=path.resolve(),
        org_file=org_path.resolve() if org_path else None,
        locked=locked,
        merged=MappingProxyType(copy.deepcopy(dict(data))),
        sources=sources,
    )
