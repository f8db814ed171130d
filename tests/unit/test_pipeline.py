"""The stage table, plan/run sharing one object, results on disk, and the runner's exit codes."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar

import jsonschema
import pytest
import yaml

from tests.helpers import PLAN_IS_WHAT_RAN, ROOT, CliResult, git, snapshot
from tfgov_ci import _files, _resources, pipeline, tools
from tfgov_ci.context import Context
from tfgov_ci.errors import ConfigError, StageInputError
from tfgov_ci.project import open_project


def test_every_stage_is_one_row_known_everywhere_it_is_named() -> None:
    names = list(pipeline.STAGES)
    assert names == _resources.schema("stage-result")["properties"]["stage"]["enum"]
    assert names == list(_resources.schema("tfgov")["properties"]["stages"]["properties"])
    tf_image = yaml.safe_load((ROOT / "pipelines" / "tf-image.yaml").read_text())
    assert [entry["stage"] for entry in tf_image["stages"]] == names


def test_every_backend_has_a_test_that_checks_its_plan_is_what_ran() -> None:
    """Exhaustiveness: each registered backend names the test that runs it for real and compares
    the commands in its result with its plan (tests/helpers.py: plan_is_what_ran), and that test
    exists and makes the check."""
    import ast

    covered = {pair for pairs in PLAN_IS_WHAT_RAN.values() for pair in pairs}
    registered = {
        (stage, name) for stage, backends in pipeline.registered_backends().items() for name in backends
    }
    assert registered - covered == set(), "a backend without a plan-is-what-ran test"
    for test in PLAN_IS_WHAT_RAN:
        path, _, name = test.partition("::")
        tree = ast.parse((ROOT / path).read_text())
        function = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == name)
        source = ast.unparse(function)
        assert "plan_is_what_ran(" in source or "disagreements(" in source, test


def test_every_registered_backend_loads_and_names_its_own_stage() -> None:
    table = pipeline.registered_backends()
    assert table["validate"], "the built-in validator must register through the entry point"
    for stage, backends in table.items():
        for name, entry_point in backends.items():
            cls = entry_point.load()
            assert (cls.stage, cls.name) == (stage, name)
            assert name in pipeline.backend_choices(stage)


def test_every_pipeline_default_backend_is_a_choice_of_its_stage() -> None:
    for path in (ROOT / "pipelines").glob("*.yaml"):
        loaded = pipeline.load_pipeline(path.stem, ROOT)
        for stage, backend in loaded.backends.items():
            assert backend in pipeline.backend_choices(stage), (path.name, stage, backend)


def test_a_pipeline_naming_an_unknown_stage_is_refused_with_its_line(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text("version: 1\nname: p\nstages:\n  - stage: validate\n  - stage: deploy\n")
    with pytest.raises(ConfigError) as raised:
        pipeline.load_pipeline("p.yaml", tmp_path)
    rendered = raised.value.problems[0].render()
    assert rendered.startswith(f"{tmp_path / 'p.yaml'}:5: stages[1].stage: unknown stage 'deploy'")


def test_a_pipeline_out_of_stage_order_is_refused(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text("version: 1\nname: p\nstages:\n  - stage: build\n  - stage: lock\n")
    with pytest.raises(ConfigError, match="out of order"):
        pipeline.load_pipeline("p.yaml", tmp_path)


class RecordingBackend:
    """A plug-in style backend that proves run() receives the very object plan() made."""

    stage: ClassVar[str] = "lock"
    name: ClassVar[str] = "recording"
    seen: ClassVar[list[pipeline.StagePlan]] = []
    made: ClassVar[list[pipeline.StagePlan]] = []
    commands: ClassVar[list[list[str]]] = [["echo", "hi"]]  # what run() runs: the plan shows echo hi

    def __init__(self, options: Mapping[str, Any]) -> None:
        self.options = options

    def plan(self, ctx: Context) -> pipeline.StagePlan:
        made = pipeline.StagePlan(
            stage="lock",
            backend="recording",
            available=True,
            summary="test",
            steps=(pipeline.Step("echo", ("echo", "hi"), "echo"),),
        )
        RecordingBackend.made.append(made)
        return made

    def run(self, ctx: Context, plan: pipeline.StagePlan) -> pipeline.StageResult:
        RecordingBackend.seen.append(plan)
        for argv in RecordingBackend.commands:
            tools.run(argv)
        return pipeline.StageResult(
            stage="lock",
            backend="recording",
            status="passed",
            commit=ctx.git.sha,
            config_digest=ctx.config.digest,
            started=pipeline.now(),
            finished=pipeline.now(),
            duration_s=0.0,
            data={"options": dict(self.options)},
        )


class _EntryPoint:
    def __init__(self, obj: type) -> None:
        self.obj = obj

    def load(self) -> type:
        return self.obj


@pytest.fixture
def recording_backend(monkeypatch: pytest.MonkeyPatch) -> type[RecordingBackend]:
    table = {stage: dict(backends) for stage, backends in pipeline.registered_backends().items()}
    table["lock"]["recording"] = _EntryPoint(RecordingBackend)  # type: ignore[assignment]
    monkeypatch.setattr(pipeline, "registered_backends", lambda: table)
    RecordingBackend.seen.clear()
    RecordingBackend.made.clear()
    RecordingBackend.commands = [["echo", "hi"]]
    return RecordingBackend


def _use_backend(repo: Path, stage: str, backend: str) -> None:
    text = (repo / "tfgov.yaml").read_text()
    (repo / "tfgov.yaml").write_text(
        text + f"stages:\n  {stage}:\n    backend: {backend}\n    options: {{level: 3}}\n"
    )
    git(repo, "commit", "-qam", f"use {backend}")


def test_run_executes_the_very_plan_object_it_made(
    example_repo: Path, recording_backend: type[RecordingBackend]
) -> None:
    _use_backend(example_repo, "lock", "recording")
    project = open_project(example_repo / "tfgov.yaml")
    the_plan = pipeline.plan(project.context, project.pipeline, ["validate", "lock"])

    class Quiet:
        def stage_started(self, plan: pipeline.StagePlan) -> None: ...
        def stage_finished(self, result: pipeline.StageResult) -> None: ...

    outcome = pipeline.run(project.context, the_plan, Quiet())
    assert outcome.exit_code == 0
    assert recording_backend.seen == [the_plan.stages[1]]
    assert recording_backend.seen[0] is recording_backend.made[0]
    written = json.loads((example_repo / ".tfgov/out/lock/result.json").read_text())
    assert written["data"] == {"options": {"level": 3}}
    # The result (and so the build record) lists the command that ran, as the plan shows it.
    assert [c["argv"] for c in written["commands"]] == [["echo", "hi"]]
    assert written["commands"][0]["returncode"] == 0
    assert written["commands"][0]["executable"].endswith("/echo")


class _Quiet:
    def stage_started(self, plan: pipeline.StagePlan) -> None: ...
    def stage_finished(self, result: pipeline.StageResult) -> None: ...


@pytest.mark.parametrize(
    ("commands", "problem"),
    [
        ([["echo", "hi"], ["echo", "unplanned"]], "ran a command the plan does not show: echo unplanned"),
        ([], "planned command did not run: echo hi"),
        ([["echo", "bye"]], "ran a command the plan does not show: echo bye"),
    ],
)
def test_a_backend_that_runs_other_commands_than_its_plan_shows_fails_the_stage(
    example_repo: Path, recording_backend: type[RecordingBackend], commands: list[list[str]], problem: str
) -> None:
    _use_backend(example_repo, "lock", "recording")
    recording_backend.commands = commands
    project = open_project(example_repo / "tfgov.yaml")
    the_plan = pipeline.plan(project.context, project.pipeline, ["validate", "lock"])
    outcome = pipeline.run(project.context, the_plan, _Quiet())
    assert outcome.exit_code == 3
    assert outcome.error is not None and problem in outcome.error.message
    written = json.loads((example_repo / ".tfgov/out/lock/result.json").read_text())
    assert written["status"] == "error"
    assert [c["argv"] for c in written["commands"]] == commands  # what ran is on record all the same


def test_a_planned_argument_placeholder_matches_text_and_a_star_placeholder_whole_arguments() -> None:
    step = pipeline.Step(
        "push", ("skopeo", "copy", "<*flags>", "docker://h/r@<digest>", "--x=<file>"), "skopeo"
    )
    assert step.matches(["skopeo", "copy", "docker://h/r@sha256:ab", "--x=/tmp/a"])
    assert step.matches(["skopeo", "copy", "--a", "--b=1", "docker://h/r@sha256:ab", "--x=/tmp/a"])
    assert not step.matches(["skopeo", "copy", "docker://h/r@", "--x=/tmp/a"])  # <...> is not empty
    assert not step.matches(["skopeo", "copy", "docker://h/other@sha256:ab", "--x=/tmp/a"])
    assert not step.matches(["skopeo", "copy", "docker://h/r@sha256:ab"])
    assert not pipeline.Step("a", ("echo", "<x>")).matches(["echo", "a", "b"])  # <x> is one argument


def test_optional_steps_may_be_skipped_and_a_step_may_repeat_but_order_holds() -> None:
    pull = pipeline.Step("pull", ("skopeo", "pull"), "skopeo", optional=True)
    build = pipeline.Step("build", ("make",), "make")
    push = pipeline.Step("push", ("skopeo", "push"), "skopeo")
    steps = (pull, pipeline.Step("in-process"), build, push)
    assert pipeline.disagreements(steps, [["make"], ["skopeo", "push"]]) == []
    assert pipeline.disagreements(steps, [["skopeo", "pull"], ["make"], ["skopeo", "push"]]) == []
    assert pipeline.disagreements(steps, [["make"], ["make"], ["skopeo", "push"]]) == []
    assert pipeline.disagreements(steps, [["skopeo", "push"], ["make"]]) == [
        "ran a command the plan does not show: skopeo push",
        "planned command did not run: skopeo push",
    ]


def test_plan_touches_nothing(example_repo: Path, cli: Callable[..., CliResult]) -> None:
    before = snapshot(example_repo)
    assert cli("plan", cwd=example_repo).code == 0
    assert cli("plan", "--format", "json", cwd=example_repo).code == 0
    assert snapshot(example_repo) == before
    assert not (example_repo / ".tfgov").exists()


def test_plan_json_is_the_same_plan_as_data(example_repo: Path, cli: Callable[..., CliResult]) -> None:
    data = json.loads(cli("plan", "--format", "json", cwd=example_repo).out)
    sha = git(example_repo, "rev-parse", "HEAD")
    assert [s["stage"] for s in data["stages"]] == list(pipeline.STAGES)
    assert data["image"]["refs"] == [f"registry.example.com/ml/tf-mnist:{t}" for t in (sha, sha[:8], "main")]
    assert data["context"]["commit"] == sha
    assert [(s["backend"], s["available"]) for s in data["stages"]] == [
        ("builtin", True),
        ("uv", True),
        ("native", True),
        ("syft", True),
        ("trivy", True),
        ("regopy", True),
        ("cosign", True),
        ("skopeo", True),
        ("builtin", True),  # record
    ]


def test_plan_of_chosen_stages_only(example_repo: Path, cli: Callable[..., CliResult]) -> None:
    data = json.loads(cli("plan", "validate", "scan", "--format", "json", cwd=example_repo).out)
    assert [s["stage"] for s in data["stages"]] == ["validate", "scan"]
    result = cli("plan", "deploy", cwd=example_repo)
    assert result.code == 2
    assert "has no stage 'deploy'" in result.err


def test_run_passes_validate_then_stops_at_a_stage_not_available_with_exit_3(
    example_repo: Path, cli: Callable[..., CliResult], monkeypatch: pytest.MonkeyPatch
) -> None:
    # a backend of the stage table that this installation lacks (its entry point is missing)
    table = {stage: dict(eps) for stage, eps in pipeline.registered_backends().items()}
    del table["lock"]["pip-tools"]
    monkeypatch.setattr(pipeline, "registered_backends", lambda: table)
    (example_repo / "tfgov.yaml").write_text(
        (example_repo / "tfgov.yaml").read_text() + "stages:\n  lock:\n    backend: pip-tools\n"
    )
    git(example_repo, "commit", "-qam", "pip-tools")
    result = cli("run", cwd=example_repo)
    assert result.code == 3
    assert "stage 'lock' (backend pip-tools) is not available yet" in result.err
    out = example_repo / ".tfgov" / "out"
    result_schema = _resources.schema("stage-result")
    validate = json.loads((out / "validate/result.json").read_text())
    lock = json.loads((out / "lock/result.json").read_text())
    jsonschema.validate(validate, result_schema)
    jsonschema.validate(lock, result_schema)
    assert (validate["status"], lock["status"]) == ("passed", "not-available")
    assert not (out / "build").exists()
    record = json.loads((out / "record.json").read_text())
    jsonschema.validate(record, _resources.schema("build-record"))
    assert record["status"] == "error"
    assert [s["status"] for s in record["stages"]] == ["passed", "not-available"] + ["not-run"] * 7
    assert record["commit"]["sha"] == git(example_repo, "rev-parse", "HEAD")
    assert record["tools"]["git"].startswith("git version")
    assert "validate" in result.out and "not-run" in result.out  # the summary table


def test_one_stage_runs_alone_and_the_record_keeps_earlier_results(
    example_repo: Path, cli: Callable[..., CliResult]
) -> None:
    assert cli("run", "validate", cwd=example_repo).code == 0
    record = json.loads((example_repo / ".tfgov/out/record.json").read_text())
    assert record["stages"][0]["status"] == "passed"
    assert record["status"] == "incomplete"


def test_a_stage_without_its_earlier_results_is_refused_before_writing(
    example_repo: Path, cli: Callable[..., CliResult]
) -> None:
    result = cli("run", "build", cwd=example_repo)
    assert result.code == 2
    assert "no result of stage 'validate'" in result.err
    assert "tfgov-ci run validate" in result.err
    assert not (example_repo / ".tfgov").exists()


def test_results_from_another_commit_are_not_trusted(
    example_repo: Path, cli: Callable[..., CliResult]
) -> None:
    assert cli("run", "validate", cwd=example_repo).code == 0
    (example_repo / "params.yaml").write_text("seed: 8\n")
    git(example_repo, "commit", "-qam", "new seed")
    with pytest.raises(StageInputError, match="from another commit"):
        project = open_project(example_repo / "tfgov.yaml")
        pipeline.read_result(project.context, "validate")


def test_out_dir_and_config_options(
    example_repo: Path, tmp_path: Path, cli: Callable[..., CliResult]
) -> None:
    out = tmp_path / "artifacts"
    result = cli(
        "run", "validate", "--config", str(example_repo / "tfgov.yaml"), "--out", str(out), cwd=tmp_path
    )
    assert result.code == 0, result.err
    assert (out / "validate" / "result.json").is_file()
    assert (out / "record.json").is_file()


def test_a_write_killed_midway_leaves_the_old_file_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "result.json"
    _files.atomic_write_json(target, {"old": True})

    def crash(fd: int) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(_files.os, "fsync", crash)
    with pytest.raises(KeyboardInterrupt):
        _files.atomic_write_json(target, {"new": True})
    assert json.loads(target.read_text()) == {"old": True}
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]


def test_every_backend_that_checks_its_inputs_is_registered_for_validate_to_find() -> None:
    """validate loads only the tfgov_ci.preflight entry points: a backend with a preflight missing
    there would never be asked."""
    from tfgov_ci.pipeline import Preflighted, preflighted_backends, registered_backends

    with_preflight = {
        f"{stage}.{name}"
        for stage, backends in registered_backends().items()
        for name, ep in backends.items()
        if callable(getattr(ep.load(), "preflight", None))
    }
    assert with_preflight == set(preflighted_backends())
    assert with_preflight == {"build.buildah", "build.docker", "lock.uv", "lock.pip-tools", "sign.cosign"}
    assert all(isinstance(ep.load()({}), Preflighted) for ep in preflighted_backends().values())


class HalfSigner:
    """A plug-in sign backend from before the record stage stored bundles itself: it can make
    attestation commands but has no ``store_steps`` nor ``execute``."""

    stage: ClassVar[str] = "sign"
    name: ClassVar[str] = "half"

    def __init__(self, options: Mapping[str, Any]) -> None:
        self.options = options

    def plan(self, ctx: Context) -> pipeline.StagePlan:
        return pipeline.StagePlan(stage="sign", backend="half", available=True, summary="test")

    def attest_commands(self, ctx: Context, work: str, digest: str, predicates: Mapping[str, str]) -> dict:
        return {name: ["signer", name] for name in predicates}


def test_the_record_attests_only_with_a_signer_that_can_do_all_of_it(
    example_repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tfgov_ci.stages.handoff import Attester
    from tfgov_ci.stages.sign.cosign import CosignSigner

    assert isinstance(CosignSigner({}), Attester)  # the built-in signer is asked (a renamed method is not)
    table = {stage: dict(backends) for stage, backends in pipeline.registered_backends().items()}
    table["sign"]["half"] = _EntryPoint(HalfSigner)  # type: ignore[assignment]
    monkeypatch.setattr(pipeline, "registered_backends", lambda: table)
    _use_backend(example_repo, "sign", "half")
    project = open_project(example_repo / "tfgov.yaml")
    record = pipeline.plan(project.context, project.pipeline, ["record"]).stages[0]
    # planned without its attestation (it was an AttributeError on store_steps), and run() says why
    assert record.stage == "record" and not any(step.tool == "cosign" for step in record.steps)
    signer, why_not = pipeline.instantiate(project.context, "record", "builtin")._signer(project.context)
    assert signer is None and "the sign backend 'half' cannot attest it" in why_not


@pytest.mark.parametrize(
    ("options", "how"),
    [
        ("{}", "at once"),
        ("{key: 'pkcs11:token=ci;slot-id=0;object=signing'}", "one after another"),
        ("{key: 'hashivault://signing', one_at_a_time: true}", "one after another"),
    ],
)
def test_a_hardware_token_s_key_signs_one_process_after_another_and_the_plan_says_so(
    example_repo: Path, options: str, how: str
) -> None:
    text = (example_repo / "tfgov.yaml").read_text()
    (example_repo / "tfgov.yaml").write_text(text + f"stages:\n  sign:\n    options: {options}\n")
    git(example_repo, "commit", "-qam", "sign options")
    project = open_project(example_repo / "tfgov.yaml")
    sign = pipeline.plan(project.context, project.pipeline, ["sign"]).stages[0]
    (signing,) = [step for step in sign.steps if step.argv[:2] == ("cosign", "sign")]
    assert f"sign the image by digest (this and the attestations {how}," in signing.description


def test_validate_names_each_sign_option_in_error_with_its_line_and_plan_refuses(
    example_repo: Path, cli: Callable[..., CliResult]
) -> None:
    config = example_repo / "tfgov.yaml"
    lines = len(config.read_text().splitlines())
    config.write_text(
        config.read_text()
        + "stages:\n  sign:\n    options:\n      format: sigstore\n      one_at_a_time: 'yes'\n"
    )
    git(example_repo, "commit", "-qam", "sign options in error")
    checked = cli("validate", cwd=example_repo)
    assert checked.code == 2 and "Traceback" not in checked.err, checked.err
    said = checked.out + checked.err
    assert f"tfgov.yaml:{lines + 4}: stages.sign.options.format: 'sigstore' is not a signature format" in said
    assert f"tfgov.yaml:{lines + 5}: stages.sign.options.one_at_a_time: 'yes' is not true or false" in said
    planned = cli("plan", "sign", cwd=example_repo)
    assert (
        planned.code == 2
        and "stages.sign.options.format: 'sigstore' is not a signature format" in planned.err
    )
