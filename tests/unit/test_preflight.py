"""Preflight of Dockerfile builds: each rule, for each builder it concerns, with its line; and
`tfgov-ci validate` failing on errors (exit 2) and printing warnings, before anything is built."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers import CliResult, make_repo
from tfgov_ci import config as config_mod
from tfgov_ci.stages.build import buildah, docker
from tfgov_ci.stages.build.preflight import Builder, preflight

BASE = "registry.example.com/platform/tf-base@sha256:" + "ab" * 32
CONFIG = f"""version: 1
image: {{name: hello}}
base: {{image: "{BASE}", allowed_registries: [registry.example.com]}}
runtime: {{python: "3.11", tensorflow: "2.21.0"}}
app: {{files: [app.py], entrypoint: [python3, app.py]}}
stages:
  build: {{backend: BACKEND}}
"""
GOOD = 'ARG TFGOV_BASE\nFROM ${TFGOV_BASE}\nCOPY app.py /app/\nENTRYPOINT ["python3", "/app/app.py"]\n'


@pytest.fixture(autouse=True)
def _in_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # messages show paths relative to the working directory


def _findings(
    tmp_path: Path, text: str, builder: Builder = buildah.BUILDER
) -> tuple[list[tuple[int | None, str]], list[str]]:
    (tmp_path / "tfgov.yaml").write_text(CONFIG.replace("BACKEND", builder.name))
    (tmp_path / "Dockerfile").write_text(text)
    config = config_mod.load(tmp_path / "tfgov.yaml")
    problems, warnings = preflight(config, {}, builder)
    return [(p.line, p.render()) for p in problems], list(warnings)


def _error_lines(tmp_path: Path, text: str, builder: Builder = buildah.BUILDER) -> list[int | None]:
    return [line for line, _ in _findings(tmp_path, text, builder)[0]]


def test_a_dockerfile_written_for_the_pinned_base_has_nothing_to_say(tmp_path: Path) -> None:
    for builder in (buildah.BUILDER, docker.BUILDER):
        assert _findings(tmp_path, GOOD, builder) == ([], [])


def test_the_issue_example_fails_at_its_pip_step_and_its_two_process_command(tmp_path: Path) -> None:
    text = (
        "FROM tensorflow/tensorflow:2.13.0\nWORKDIR /app\nCOPY train.py requirements.txt ./\n"
        "RUN pip install -r requirements.txt\nEXPOSE 6006\n"
        'CMD ["sh", "-c", "python train.py & tensorboard --logdir=./logs --host=0.0.0.0 --port=6006"]\n'
    )
    problems, warnings = _findings(tmp_path, text, docker.BUILDER)
    assert [line for line, _ in problems] == [4, 6]
    run, cmd = (text for _, text in problems)
    assert run.startswith("Dockerfile:4: shell-form RUN `pip install -r requirements.txt`: it needs /bin/sh")
    assert "packages come from the lock" in run and "--require-hashes" in run
    assert "Dockerfile:6: CMD [" in cmd and "sh is not in the pinned base: the container cannot start" in cmd
    assert "one process per container" in cmd and 'CMD ["python", "train.py"]' in cmd and "sidecar" in cmd
    assert len(warnings) == 1 and warnings[0].startswith("Dockerfile:1: FROM tensorflow/tensorflow:2.13.0 is")
    assert "runtime.tensorflow 2.21.0, not 2.13.0" in warnings[0]


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        ("RUN python3 setup.py", "shell-form RUN"),
        ('RUN ["/bin/bash", "-c", "make"]', "needs /bin/sh"),
        ('RUN ["apt-get", "install", "-y", "curl"]', "apt-get is not in the pinned base"),
        ('RUN ["curl", "-o", "/x", "https://example.com/x"]', "curl is not in the pinned base"),
        ('RUN ["python3", "-m", "pip", "install", "pandas"]', "installs unlocked packages"),
        ('RUN ["pip3.11", "install", "-r", "requirements.txt"]', "installs unlocked packages"),
        ('SHELL ["/bin/bash", "-c"]', "has no shell"),
        ("ADD https://example.com/model.h5 /app/", "downloads at build time"),
        ("COPY --from=python:3.11 /usr/lib /usr/lib", "takes files from the image python:3.11"),
        ('RUN --mount=type=bind,from=busybox,target=/b ["/b/true"]', "from the image busybox"),
        ("CMD python3 app.py", "shell form runs /bin/sh -c"),
        ("ENTRYPOINT exec python3 app.py", "shell form runs /bin/sh -c"),
        ("HEALTHCHECK CMD curl -f http://localhost/", "the check always fails"),
    ],
)
def test_each_thing_that_cannot_work_on_the_base_is_an_error_at_its_line(
    tmp_path: Path, line: str, fragment: str
) -> None:
    problems, _ = _findings(tmp_path, f"{GOOD}USER 65532\n{line}\n")
    assert [n for n, _ in problems] == [6], problems
    assert fragment in problems[0][1]
    assert "(hint: " in problems[0][1]


def test_a_shell_command_that_is_simple_gets_its_exec_form_in_the_hint(tmp_path: Path) -> None:
    problems, _ = _findings(tmp_path, f"{GOOD}CMD python3 /app/app.py --epochs 3\n")
    assert 'write it in exec form: CMD ["python3", "/app/app.py", "--epochs", "3"]' in problems[0][1]


def test_installing_the_lock_with_hashes_is_right_only_where_the_base_has_pip(tmp_path: Path) -> None:
    """The central distroless base has no pip: said every run, with the way that works there."""
    run = (
        'RUN ["/usr/bin/python3", "-m", "pip", "install", "--require-hashes", "--no-deps", "-r", '
        '"requirements.lock"]\n'
    )
    problems, warnings = _findings(tmp_path, GOOD + run)
    assert problems == [] and len(warnings) == 1
    assert "the pinned base must carry" in warnings[0] and "No module named pip" in warnings[0]
    assert "native builder" in warnings[0]


def test_pip_from_local_wheels_only_is_a_warning_the_drift_check_follows_up(tmp_path: Path) -> None:
    run = 'RUN ["python3", "-m", "pip", "install", "--no-index", "/tmp/six.whl"]\n'
    problems, warnings = _findings(tmp_path, GOOD + run)
    assert problems == []
    assert len(warnings) == 1 and warnings[0].startswith("Dockerfile:5: RUN [")
    assert "drift check" in warnings[0]


def test_user_root_is_a_warning_the_image_still_runs_as_app_user(tmp_path: Path) -> None:
    problems, warnings = _findings(tmp_path, GOOD + "USER root\n")
    assert problems == [] and len(warnings) == 1
    assert warnings[0].startswith("Dockerfile:5: USER root: the steps after it run as root")
    assert "app.user" in warnings[0]


def test_secrets_in_env_or_arg_are_warned_about(tmp_path: Path) -> None:
    _, warnings = _findings(tmp_path, GOOD + "ENV API_KEY=abc MODE=x\nARG HF_TOKEN=xyz\nARG PLAIN=1\n")
    assert [w.split(":")[1] for w in warnings] == ["5", "6"]
    assert "ENV API_KEY" in warnings[0] and "ARG HF_TOKEN" in warnings[1]


def test_a_cmd_alone_is_appended_to_the_bases_python_entrypoint(tmp_path: Path) -> None:
    _, warnings = _findings(tmp_path, GOOD.replace("ENTRYPOINT", "CMD"))
    assert len(warnings) == 1 and "this runs `python3.11 python3 /app/app.py`" in warnings[0]
    assert 'write it as ENTRYPOINT ["python3", "/app/app.py"]' in warnings[0]


def test_only_the_final_stage_start_command_matters(tmp_path: Path) -> None:
    text = "FROM ${TFGOV_BASE} AS build\nCMD echo not the image's\nFROM build\n" + 'ENTRYPOINT ["python3"]\n'
    assert _findings(tmp_path, "ARG TFGOV_BASE\n" + text) == ([], [])
    inherited = "ARG TFGOV_BASE\nFROM ${TFGOV_BASE} AS build\nCMD python3 x.py\nFROM build\n"
    assert _error_lines(tmp_path, inherited) == [3]  # the final stage inherits it


def test_buildah_pins_only_the_first_from_so_other_images_are_errors(tmp_path: Path) -> None:
    text = "FROM python:3.11 AS deps\nCOPY app.py /x\nFROM node:20 AS web\nFROM deps\nCOPY --from=web /a /b\n"
    problems, warnings = _findings(tmp_path, text, buildah.BUILDER)
    assert [line for line, _ in problems] == [3]
    assert "points only the first FROM at the pinned base" in problems[0][1]
    assert len(warnings) == 1 and warnings[0].startswith("Dockerfile:1: FROM python:3.11 is replaced")
    # the docker backend points every FROM at the base: both are replaced, neither fails
    problems, warnings = _findings(tmp_path, text, docker.BUILDER)
    assert problems == [] and [w.split(":")[1] for w in warnings] == ["1", "3"]


def test_buildah_refuses_a_final_stage_from_scratch_and_runs_nothing_in_one(tmp_path: Path) -> None:
    text = (
        'FROM x AS app\nCOPY app.py /app/\nFROM scratch AS s\nRUN ["/x"]\n'
        "FROM scratch\nCOPY --from=app /app /app\n"
    )
    problems, _ = _findings(tmp_path, text, buildah.BUILDER)
    assert [line for line, _ in problems] == [4, 5]
    assert "holds no program" in problems[0][1] and "not be built on the pinned base" in problems[1][1]


def test_heredocs_are_errors_for_both_builders_here(tmp_path: Path) -> None:
    text = GOOD + "COPY <<EOF /app/config.txt\nkey=value\nEOF\n"
    for builder, says in ((buildah.BUILDER, "buildah before 1.33"), (docker.BUILDER, "classic builder")):
        problems, _ = _findings(tmp_path, text, builder)
        assert [line for line, _ in problems] == [5] and says in problems[0][1]


def test_run_flags_are_errors_only_for_the_classic_builder(tmp_path: Path) -> None:
    text = GOOD + 'RUN --mount=type=cache,target=/root/.cache ["python3", "/app/app.py"]\n'
    assert _error_lines(tmp_path, text, buildah.BUILDER) == []
    problems, _ = _findings(tmp_path, text, docker.BUILDER)
    assert [line for line, _ in problems] == [5] and "no RUN flags" in problems[0][1]


def test_a_syntax_error_or_a_missing_dockerfile_is_a_problem_too(tmp_path: Path) -> None:
    assert _findings(tmp_path, "FROM x\nRUNN y\n")[0] == [
        (
            2,
            "Dockerfile:2: unknown instruction 'RUNN' "
            "(hint: check the spelling; the instructions are "
            "ADD, ARG, CMD, COPY, ENTRYPOINT, ENV, EXPOSE, FROM, "
            "HEALTHCHECK, LABEL, MAINTAINER, ONBUILD, RUN, SHELL, "
            "STOPSIGNAL, USER, VOLUME, WORKDIR)",
        )
    ]
    (tmp_path / "Dockerfile").unlink()
    config = config_mod.load(tmp_path / "tfgov.yaml")
    problems, _ = preflight(config, {"dockerfile": "docker/Dockerfile"}, buildah.BUILDER)
    assert problems[0].key == "stages.build.options.dockerfile" and "no Dockerfile at" in problems[0].message


def _repo(tmp_path: Path, dockerfile: str, backend: str = "docker") -> Path:
    return make_repo(
        tmp_path / "model",
        {
            "tfgov.yaml": CONFIG.replace("BACKEND", backend),
            "app.py": "print('hi')\n",
            "requirements.txt": "",
            "Dockerfile": dockerfile,
        },
    )


def test_validate_fails_on_the_dockerfile_before_anything_is_built(
    tmp_path: Path, cli: Callable[..., CliResult]
) -> None:
    repo = _repo(tmp_path, "FROM tensorflow/tensorflow:2.21.0\nCOPY app.py /app/\nRUN pip install pandas\n")
    result = cli("validate", cwd=repo)
    assert result.code == 2, result.err
    assert "error: Dockerfile:3: shell-form RUN `pip install pandas`: it needs /bin/sh" in result.err
    assert (
        "warning: Dockerfile:1: FROM tensorflow/tensorflow:2.21.0 is replaced" not in result.err
    )  # errors only
    assert "Traceback" not in result.err
    planned = cli("plan", cwd=repo)  # plan and run start with the same checks
    assert planned.code == 2 and "Dockerfile:3" in planned.err
    assert not (repo / ".tfgov").exists()


def test_validate_passes_with_the_dockerfiles_warnings_and_the_native_builder_reads_no_dockerfile(
    tmp_path: Path, cli: Callable[..., CliResult]
) -> None:
    repo = _repo(tmp_path, "FROM tensorflow/tensorflow:2.21.0\nCOPY app.py /app/\nUSER root\n")
    result = cli("validate", cwd=repo)
    assert result.code == 0, result.err
    assert "warning: Dockerfile:1: FROM tensorflow/tensorflow:2.21.0 is replaced" in result.err
    assert "warning: Dockerfile:3: USER root" in result.err
    (repo / "tfgov.yaml").write_text(
        CONFIG.replace("  build: {backend: BACKEND}\n", "  build: {backend: native}\n")
    )
    (repo / "Dockerfile").write_text("RUN nonsense\n")
    assert cli("validate", cwd=repo).code == 0  # the native builder does not build the Dockerfile
