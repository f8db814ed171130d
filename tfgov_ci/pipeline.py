"""The stage protocol, the stage table, and the runner behind ``plan`` and ``run``.

A backend's ``plan(ctx)`` describes, without side effects, what it would do: the commands and
tools, inputs, outputs and image references. ``tfgov-ci plan`` prints that object; ``tfgov-ci
run`` hands the very same object to ``run(ctx, plan)``, records every command the backend starts
(:func:`tfgov_ci.tools.recording`) and checks them against the plan's steps (:func:`disagreements`):
a command the plan did not show, or a planned command that did not run, fails the stage. The
result and the build record list the commands that ran, so an auditor reads what ran, not what
was meant to.
A stage reads earlier stages' results only from the out directory (``<out>/<stage>/result.json``),
so each CI job can run exactly one stage with the out directory passed along as artifacts.
"""

from __future__ import annotations

import datetime as dt
import importlib
import json
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from functools import cache
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, cast, runtime_checkable

from tfgov_ci import _resources, tools
from tfgov_ci._files import atomic_write_json, load_yaml, schema_problems
from tfgov_ci.context import Context  # cheap: GitPython is imported only when git is read
from tfgov_ci.errors import (
    ConfigError,
    NotAvailableError,
    Problem,
    StageInputError,
    TfgovError,
)

if TYPE_CHECKING:
    from tfgov_ci.config import Config


class PlanMismatch(TfgovError):
    """A backend ran commands its plan did not show (exit 3: a bug in tfgov-ci or a plug-in)."""


ENTRY_POINT_GROUP = "tfgov_ci.backends"
PREFLIGHT_GROUP = "tfgov_ci.preflight"  # the backends among them that check their inputs in validate
RESULT_FILE = "result.json"
RESULT_SCHEMA_VERSION = 1


# --- what a stage says it will do, and what it did -------------------------------------------


@dataclass(frozen=True)
class Step:
    """One thing a stage does: an external command (argv + tool) or an in-process action.

    In ``argv``, ``<...>`` stands for what is known only when the stage runs (a digest, a private
    file), and an argument that is just ``<*...>`` for any number of arguments (the platforms a
    base names); ``optional`` steps may not run (a pull skipped when cached): the description says
    when.
    """

    description: str
    argv: tuple[str, ...] = ()
    tool: str | None = None  # None: done in-process by tfgov-ci itself
    optional: bool = False

    def matches(self, argv: Sequence[str]) -> bool:
        """Whether a command that ran is this step's (``<...>`` matching any text)."""
        return _pattern(self.argv).fullmatch("".join(f"{arg}\0" for arg in argv)) is not None


@cache
def _pattern(planned: tuple[str, ...]) -> re.Pattern[str]:
    """One regular expression over the NUL-joined argv: ``<...>`` is any text within one argument,
    an argument ``<*...>`` any number of whole arguments."""
    out = []
    for token in planned:
        if re.fullmatch(r"<\*[^<>]+>", token):
            out.append("(?:[^\0]*\0)*?")
        else:
            parts = re.split(r"<[^<>]+>", token)
            out.append("[^\0]+".join(re.escape(part) for part in parts) + "\0")
    return re.compile("".join(out))


def disagreements(steps: Sequence[Step], ran: Sequence[Sequence[str]]) -> list[str]:
    """How the commands that ran differ from the planned steps, in order (empty: they agree)."""
    planned = [step for step in steps if step.argv]
    problems: list[str] = []
    index = 0
    for argv in ran:
        at = index
        while at < len(planned) and not planned[at].matches(argv):
            if not planned[at].optional:
                break
            at += 1
        if at < len(planned) and planned[at].matches(argv):
            index = at + 1
            continue
        # A step may repeat (the same command again, e.g. a retried read): the one just matched.
        if index > 0 and planned[index - 1].matches(argv):
            continue
        problems.append(f"ran a command the plan does not show: {' '.join(argv)}")
    problems += [
        f"planned command did not run: {' '.join(step.argv)}" for step in planned[index:] if not step.optional
    ]
    return problems


@dataclass(frozen=True)
class StagePlan:
    stage: str
    backend: str
    available: bool
    summary: str
    tools: tuple[str, ...] = ()
    steps: tuple[Step, ...] = ()
    inputs: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
    images: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class StageResult:
    """What a stage did. ``status`` is passed, failed (a gate said no), error or not-available."""

    stage: str
    backend: str
    status: str
    commit: str
    config_digest: str
    started: str
    finished: str
    duration_s: float
    message: str = ""
    outputs: Mapping[str, str] = field(default_factory=dict)
    data: Mapping[str, Any] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    # every external command the stage ran, in order (filled in by the runner)
    commands: tuple[tools.Ran, ...] = ()

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["schema_version"] = RESULT_SCHEMA_VERSION
        out["outputs"], out["data"] = dict(self.outputs), dict(self.data)
        out["warnings"] = list(self.warnings)
        out["commands"] = [command.to_json() for command in self.commands]
        return out


@dataclass(frozen=True)
class Clock:
    """When a stage started: wall time for the record, monotonic time for the duration."""

    started: str
    t0: float

    @classmethod
    def start(cls) -> Clock:
        return cls(now(), time.monotonic())


def passed(
    ctx: Context,
    stage: str,
    backend: str,
    clock: Clock,
    message: str,
    *,
    outputs: Mapping[str, str] | None = None,
    data: Mapping[str, Any] | None = None,
    warnings: tuple[str, ...] = (),
) -> StageResult:
    """The result of a stage that passed, for this commit and configuration."""
    return StageResult(
        stage=stage,
        backend=backend,
        status="passed",
        commit=ctx.git.sha,
        config_digest=ctx.config.digest,
        started=clock.started,
        finished=now(),
        duration_s=round(time.monotonic() - clock.t0, 3),
        message=message,
        outputs=dict(outputs or {}),
        data=dict(data or {}),
        warnings=warnings,
    )


class Backend(Protocol):
    """A stage backend. Built-ins and plug-ins register under the ``tfgov_ci.backends`` group."""

    stage: ClassVar[str]
    name: ClassVar[str]
    tools: ClassVar[tuple[str, ...]]  # the external tools it may run (argv[0] of its plan's steps)

    def __init__(self, options: Mapping[str, Any]) -> None: ...

    def plan(self, ctx: Context) -> StagePlan: ...

    def run(self, ctx: Context, plan: StagePlan) -> StageResult: ...


@runtime_checkable
class Preflighted(Protocol):
    """A backend that can check its own inputs before anything runs: ``validate`` calls
    ``preflight`` on each configured backend that has it (the build backends read the Dockerfile),
    so a backend's knowledge of what it can do stays in the backend, plug-ins included."""

    def preflight(self, config: Config) -> tuple[tuple[Problem, ...], tuple[str, ...]]:
        """Problems (they stop validate, exit 2) and warnings (printed and recorded)."""
        ...


# --- the stage table: one row a stage; the runner knows nothing else about them ---------------


@dataclass(frozen=True)
class StageSpec:
    """One row of the stage table: everything the runner, the CLI and the CI emitters know of a
    stage. The tools a backend runs are the backend class's own (``tools``), not the table's."""

    name: str
    summary: str
    backends: tuple[str, ...]  # the built-in backends; the first is the default
    needs: tuple[str, ...] = ()  # earlier stages whose results this one reads
    makes_image: bool = False  # it makes or pushes the image references
    # "module:Class" taking a list of backends and acting as one, when several may run together
    # (``backend: trivy+osv``); None when a stage takes exactly one backend.
    combine: str | None = None
    # Files under the out directory that CI systems read: report kind (GitLab's artifacts:reports
    # names: cyclonedx, container_scanning, junit, dotenv) -> path. The emitted templates use them.
    reports: Mapping[str, str] = field(default_factory=dict)
    # It reads or writes the registry: CI hands its job the registry's credentials.
    uses_registry: bool = False
    # Secrets the stage reads from its environment: variable -> what it is. GitLab hands them over
    # as masked project variables; the Jenkins library binds each from a secret-text credential
    # named by a setting `<variable in camelCase>CredentialsId`.
    secrets: Mapping[str, str] = field(default_factory=dict)
    # Keyless signing: the variable the CI's OIDC token reaches the stage in (GitLab: the job's
    # `id_tokens`, its audience an input; Jenkins: an OpenID Connect id-token credential, bound
    # like a secret); None: the stage signs nothing.
    id_token: str | None = None
    # CI may let the pipeline go on when this stage fails, and why that is safe (an input of the
    # GitLab template, `<stage>-allow-failure`, and a setting of the Jenkins library,
    # `allow<Stage>Failure`); None: a failure always stops the pipeline.
    soft_failure: str | None = None
    # Folders of tfgov-ci's cache (TFGOV_CACHE_DIR) the stage reuses from one pipeline to the next,
    # each keyed by content (a layer's diff id): CI keeps them (GitLab: the job's cache).
    keeps: tuple[str, ...] = ()

    @property
    def default_backend(self) -> str:
        return self.backends[0]


SIGSTORE_ID_TOKEN = "SIGSTORE_ID_TOKEN"  # where cosign reads an OIDC token for keyless signing
SIGNING_SECRETS = {
    "COSIGN_PRIVATE_KEY": "the signing key: its PEM, or (a file variable) its path",
    "COSIGN_PASSWORD": "the key's password",
}

STAGES: dict[str, StageSpec] = {
    spec.name: spec
    for spec in (
        StageSpec(
            "validate", "config, naming, base pinned and allowed, runtime versions coherent", ("builtin",)
        ),
        StageSpec(
            "lock",
            "resolve requirements with hashes for the base's Python and platform",
            ("uv", "pip-tools"),
            ("validate",),
            uses_registry=True,  # the base's labels
            keeps=("lock",),  # resolutions, reused while their inputs are unchanged
        ),
        StageSpec(
            "build",
            "image from base + locked deps + app; commit tags; OCI labels; pushed by digest, no tag",
            ("native", "buildah", "docker", "base"),
            ("validate", "lock"),
            makes_image=True,
            uses_registry=True,  # the base, pulled by digest; the image, pushed by digest
        ),
        StageSpec(
            "sbom",
            "SPDX and CycloneDX of the built image; lock-versus-image drift",
            ("syft",),
            ("build",),
            reports={"cyclonedx": "sbom/sbom.cdx.json"},
            uses_registry=True,  # the pushed image: the layers not catalogued before
            keeps=("sbom-layers",),
        ),
        StageSpec(
            "scan",
            "vulnerability findings in one normalised schema",
            ("trivy", "grype", "osv"),
            ("build", "sbom"),
            combine="tfgov_ci.stages.scan.interface:Combined",
            uses_registry=True,  # trivy and grype read the pushed image
            keeps=("trivy",),  # trivy's cache (TRIVY_CACHE_DIR in CI): each layer's analysis, by diff id
            soft_failure="a scanner outage; the policy job still needs a scan result, so nothing "
            "unscanned is published",
        ),
        StageSpec(
            "policy",
            "Rego gate over one input document, exceptions applied, fail-closed",
            ("regopy", "opa"),
            ("build", "sbom", "scan"),
            uses_registry=True,  # the pushed image's manifest and config
            reports={
                "junit": "policy/junit.xml",
                "container_scanning": "policy/gl-container-scanning-report.json",
            },
        ),
        StageSpec(
            "sign",
            "sign by digest; attest SBOM, provenance, scan and policy decision",
            ("cosign",),
            ("build", "policy"),
            uses_registry=True,
            secrets=SIGNING_SECRETS,
            id_token=SIGSTORE_ID_TOKEN,
        ),
        StageSpec(
            "publish",
            "attach the SBOMs to the digest the build pushed, then tag it",
            ("skopeo",),
            # nothing is tagged without a passing policy decision, nor before it is signed
            ("build", "policy", "sign"),
            makes_image=True,
            reports={"dotenv": "publish/tfgov.env"},  # TFGOV_IMAGE, TFGOV_IMAGE_DIGEST for deploy jobs
            uses_registry=True,
        ),
        StageSpec(
            "record",
            "build record, written whole and attested beside the image",
            ("builtin",),
            ("build",),
            uses_registry=True,
            # it attests the record with the sign stage's key, and writes the build into the
            # inventory when one is configured (tfgov_ci/inventory/recording.py)
            secrets={
                **SIGNING_SECRETS,
                "TFGOV_INVENTORY_URL": "the inventory's database URL, with its password (optional: "
                "the build is recorded in the inventory when it is set)",
            },
            id_token=SIGSTORE_ID_TOKEN,
        ),
    )
}


@cache
def registered_backends() -> dict[str, dict[str, EntryPoint]]:
    """Backends by stage and name, from the entry-point group (built-ins included)."""
    table: dict[str, dict[str, EntryPoint]] = {name: {} for name in STAGES}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        stage, _, backend = ep.name.partition(".")
        if stage in table and backend:
            table[stage][backend] = ep
    return table


@cache
def preflighted_backends() -> dict[str, EntryPoint]:
    """``stage.backend`` -> the backends that check their own inputs (:class:`Preflighted`), from
    their own entry-point group: validate loads none of the others."""
    return {ep.name: ep for ep in entry_points(group=PREFLIGHT_GROUP)}


def backend_tools(stage: str, backend: str) -> tuple[str, ...]:
    """The tools a backend may run (``a+b``: both's), from its class; () when it is not installed."""
    found = registered_backends()[stage]
    names = [name for name in backend.split("+") if name in found]
    return tuple(dict.fromkeys(tool for name in names for tool in getattr(found[name].load(), "tools", ())))


def backend_choices(stage: str) -> list[str]:
    """Every backend name a stage accepts: the table's built-ins plus registered plug-ins."""
    return list(dict.fromkeys([*STAGES[stage].backends, *registered_backends()[stage]]))


# --- pipeline definitions (pipelines/*.yaml) -------------------------------------------------


@dataclass(frozen=True)
class PipelineDef:
    name: str
    description: str
    stages: tuple[str, ...]
    backends: Mapping[str, str]  # stage -> default backend for this pipeline
    file: Path


def load_pipeline(name_or_path: str, relative_to: Path) -> PipelineDef:
    """A pipeline by name (tfgov-ci's pipelines/ folder) or by path (relative to tfgov.yaml)."""
    builtin = _resources.data_dir("pipelines") / f"{name_or_path}.yaml"
    candidate = relative_to / name_or_path
    path = candidate if candidate.is_file() else builtin
    if not path.is_file():
        known = sorted(p.stem for p in _resources.data_dir("pipelines").glob("*.yaml"))
        raise ConfigError(
            [
                Problem(
                    "tfgov.yaml",
                    "pipeline",
                    f"no pipeline {name_or_path!r}",
                    f"use one of {', '.join(known)} or a path to a pipeline file",
                )
            ]
        )
    doc = load_yaml(path)
    problems = schema_problems(doc, "pipeline")
    if problems:
        raise ConfigError(problems)
    stages: list[str] = []
    backends: dict[str, str] = {}
    for index, entry in enumerate(doc.data["stages"]):
        stage = entry["stage"]
        if stage not in STAGES:
            problems.append(
                Problem(
                    doc.file,
                    f"stages[{index}].stage",
                    f"unknown stage {stage!r}",
                    f"stages are: {', '.join(STAGES)}",
                    doc.line_of(("stages", index, "stage")),
                )
            )
            continue
        stages.append(stage)
        if "backend" in entry:
            backends[stage] = entry["backend"]
    order = [s for s in STAGES if s in stages]
    if not problems and stages != order:
        problems.append(
            Problem(
                doc.file,
                "stages",
                "stages are out of order",
                f"list them in this order: {', '.join(order)}",
                doc.line_of(("stages",)),
            )
        )
    if problems:
        raise ConfigError(problems)
    return PipelineDef(doc.data["name"], doc.data.get("description", ""), tuple(stages), backends, path)


def chosen_backend(ctx: Context, pipeline: PipelineDef, stage: str) -> str:
    """tfgov.yaml's choice, else the pipeline's default, else the stage table's."""
    return configured_backend(ctx.config, pipeline, stage)


def configured_backend(config: Config, pipeline: PipelineDef, stage: str) -> str:
    """:func:`chosen_backend` from the configuration alone (validate has no context yet)."""
    return config.stage(stage).backend or pipeline.backends.get(stage) or STAGES[stage].default_backend


def backend_class(stage: str, backend: str) -> type[Backend] | None:
    """A registered backend's class, or None (an unknown name is validate's to report)."""
    ep = registered_backends()[stage].get(backend)
    return None if ep is None else cast("type[Backend]", ep.load())


# --- planning ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class PipelinePlan:
    pipeline: str
    pipeline_file: str
    context: Mapping[str, Any]
    image_repository: str | None
    image_tags: tuple[str, ...]
    stages: tuple[StagePlan, ...]
    # every stage of the pipeline (planned or not): a need outside it is nobody's to satisfy
    pipeline_stages: tuple[str, ...] = tuple(STAGES)

    def to_json(self) -> dict[str, Any]:
        return {
            "schema_version": 1,
            "pipeline": self.pipeline,
            "pipeline_file": self.pipeline_file,
            "context": dict(self.context),
            "image": {
                "repository": self.image_repository,
                "tags": list(self.image_tags),
                "refs": [f"{self.image_repository}:{t}" for t in self.image_tags],
            },
            "stages": [asdict(stage) for stage in self.stages],
        }


def result_path(out_dir: Path, stage: str) -> Path:
    return out_dir / stage / RESULT_FILE


def instantiate(ctx: Context, stage: str, backend: str) -> Backend | None:
    """The backend object, or None when this version of tfgov-ci does not implement it yet.
    ``a+b`` is several backends run as one, for a stage whose row says how to combine them."""
    names = backend.split("+")
    combine = STAGES[stage].combine
    if len(names) > 1 and combine is not None:
        parts = [instantiate(ctx, stage, name) for name in names]
        if any(part is None for part in parts):
            return None
        module, _, attr = combine.partition(":")
        combined: Backend = getattr(importlib.import_module(module), attr)(parts)
        return combined
    ep = registered_backends()[stage].get(backend)
    if ep is None:
        return None
    cls: type[Backend] = ep.load()
    return cls(ctx.config.stage(stage).options)


def _pending_plan(ctx: Context, stage: str, backend: str, images: tuple[str, ...]) -> StagePlan:
    spec = STAGES[stage]
    return StagePlan(
        stage=stage,
        backend=backend,
        available=False,
        summary=spec.summary,
        tools=(),  # no backend class to say which
        inputs=tuple(str(result_path(ctx.out_dir, need)) for need in spec.needs),
        outputs=(str(result_path(ctx.out_dir, stage)),),
        images=images if spec.makes_image else (),
    )


def plan(ctx: Context, pipeline: PipelineDef, only: Sequence[str] = ()) -> PipelinePlan:
    """Plan the whole pipeline, or only the named stages, touching nothing."""
    names = list(only) or list(pipeline.stages)
    unknown = [name for name in names if name not in pipeline.stages]
    if unknown:
        raise StageInputError(
            f"pipeline {pipeline.name} has no stage {unknown[0]!r}",
            f"its stages are: {', '.join(pipeline.stages)}",
        )
    selected = [s for s in pipeline.stages if s in names]
    wants_image = any(STAGES[s].makes_image for s in selected)
    refs = ctx.images() if wants_image else None
    images = refs.refs if refs else ()
    stage_plans = []
    for stage in selected:
        backend = chosen_backend(ctx, pipeline, stage)
        impl = instantiate(ctx, stage, backend)
        stage_plan = impl.plan(ctx) if impl else _pending_plan(ctx, stage, backend, images)
        if STAGES[stage].makes_image and impl is not None:
            stage_plan = replace(stage_plan, images=images)
        stage_plans.append(stage_plan)
    return PipelinePlan(
        pipeline=pipeline.name,
        pipeline_file=str(pipeline.file),
        context=describe(ctx),
        image_repository=refs.repository if refs else None,
        image_tags=refs.tags if refs else (),
        stages=tuple(stage_plans),
        pipeline_stages=pipeline.stages,
    )


def describe(ctx: Context) -> dict[str, Any]:
    """The context as plain data, for plans, results and the build record (no secrets in it)."""
    return {
        "commit": ctx.git.sha,
        "short_sha": ctx.git.short_sha,
        "branch": ctx.git.branch or ctx.ci.branch,
        "git_tags": list(ctx.git.tags),
        "dirty": ctx.git.dirty,
        "detached": ctx.git.detached,
        "commit_time": ctx.git.commit_time,
        "source_date_epoch": ctx.source_date_epoch,
        "source_date_epoch_from": ctx.source_date_epoch_from,
        "repository_url": ctx.ci.repo_url or ctx.git.remote_url,
        "ci": {
            "provider": ctx.ci.provider,
            "pipeline_id": ctx.ci.pipeline_id,
            "pipeline_url": ctx.ci.pipeline_url,
            "job_id": ctx.ci.job_id,
            "job_url": ctx.ci.job_url,
        },
        "config": str(ctx.config.file),
        "config_digest": ctx.config.digest,
        "out_dir": str(ctx.out_dir),
    }


# --- running ----------------------------------------------------------------------------------


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def read_result(ctx: Context, stage: str) -> StageResult:
    """An earlier stage's result for this very commit and config, or :class:`StageInputError`."""
    path = result_path(ctx.out_dir, stage)
    rerun = f"run `tfgov-ci run {stage}` first (or pass its out directory along as a CI artifact)"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StageInputError(f"no result of stage {stage!r} in {ctx.out_dir}", rerun) from None
    except (OSError, ValueError) as exc:
        raise StageInputError(f"{path}: unreadable result ({exc})", rerun) from None
    import jsonschema

    errors = list(jsonschema.Draft202012Validator(_resources.schema("stage-result")).iter_errors(data))
    if errors:
        raise StageInputError(f"{path}: not a valid stage result ({errors[0].message})", rerun)
    if data["commit"] != ctx.git.sha or data["config_digest"] != ctx.config.digest:
        raise StageInputError(
            f"{path} is from another commit or configuration "
            f"({data['commit'][:12]}, {data['config_digest'][:19]})",
            rerun,
        )
    if data["status"] != "passed":
        raise StageInputError(
            f"stage {stage!r} did not pass ({data['status']}): {data['message']}", f"fix it and {rerun}"
        )
    data.pop("schema_version")
    data["warnings"] = tuple(data["warnings"])
    data["commands"] = tuple(
        tools.Ran(tuple(c["argv"]), c["executable"], c["returncode"], c["seconds"])
        for c in data.get("commands", ())
    )
    return StageResult(**data)


def write_result(ctx: Context, result: StageResult) -> Path:
    path = result_path(ctx.out_dir, result.stage)
    atomic_write_json(path, result.to_json())
    return path


def check_agreement(stage_plan: StagePlan, ran: Sequence[tools.Ran]) -> None:
    """:class:`PlanMismatch` when the commands a stage ran are not the ones its plan shows."""
    problems = disagreements(stage_plan.steps, [command.argv for command in ran])
    if problems:
        raise PlanMismatch(
            f"stage {stage_plan.stage!r} (backend {stage_plan.backend}) did not run what its plan "
            f"shows: {'; '.join(problems[:3])}",
            "this is a bug in the backend: report it, with `tfgov-ci plan --format json` and the result",
        )


class Reporter(Protocol):
    def stage_started(self, plan: StagePlan) -> None: ...

    def stage_finished(self, result: StageResult) -> None: ...


@dataclass(frozen=True)
class RunOutcome:
    results: tuple[StageResult, ...]
    not_run: tuple[str, ...]
    error: TfgovError | None

    @property
    def exit_code(self) -> int:
        return 0 if self.error is None else self.error.exit_code


def run(
    ctx: Context,
    pipeline_plan: PipelinePlan,
    reporter: Reporter,
    *,
    clock: Callable[[], float] = time.monotonic,
) -> RunOutcome:
    """Run the planned stages in order; stop at the first that does not pass."""
    planned = {p.stage for p in pipeline_plan.stages}
    results: list[StageResult] = []
    # Inputs first, so that a missing earlier result fails before anything is written.
    for stage_plan in pipeline_plan.stages:
        for need in STAGES[stage_plan.stage].needs:
            if need not in planned and need in pipeline_plan.pipeline_stages:
                read_result(ctx, need)
    # A stage about to run loses its old result now: a failed re-run leaves nothing stale behind.
    for stage_plan in pipeline_plan.stages:
        result_path(ctx.out_dir, stage_plan.stage).unlink(missing_ok=True)
    for index, stage_plan in enumerate(pipeline_plan.stages):
        reporter.stage_started(stage_plan)
        started, t0 = now(), clock()
        error: TfgovError | None = None
        ran: list[tools.Ran] = []
        try:
            impl = instantiate(ctx, stage_plan.stage, stage_plan.backend)
            if impl is None or not stage_plan.available:
                raise NotAvailableError(
                    f"stage {stage_plan.stage!r} (backend {stage_plan.backend}) is not available yet",
                    "this version of tfgov-ci plans it but cannot run it; see the CHANGELOG",
                )
            with tools.recording() as ran:
                result = impl.run(ctx, stage_plan)
            if result.status == "passed":
                check_agreement(stage_plan, ran)
        except TfgovError as exc:
            error = exc
            status = (
                "not-available"
                if isinstance(exc, NotAvailableError)
                else ("failed" if exc.exit_code == 1 else "error")
            )
            result = StageResult(
                stage=stage_plan.stage,
                backend=stage_plan.backend,
                status=status,
                commit=ctx.git.sha,
                config_digest=ctx.config.digest,
                started=started,
                finished=now(),
                duration_s=round(clock() - t0, 3),
                message=exc.message,
            )
        result = replace(result, commands=tuple(ran))
        write_result(ctx, result)
        results.append(result)
        reporter.stage_finished(result)
        if error is None and result.status != "passed":
            error = TfgovError(f"stage {result.stage!r} {result.status}: {result.message}")
        if error is not None:
            rest = tuple(p.stage for p in pipeline_plan.stages[index + 1 :])
            return RunOutcome(tuple(results), rest, error)
    return RunOutcome(tuple(results), (), None)
