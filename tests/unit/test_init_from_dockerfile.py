"""`tfgov-ci init --from-dockerfile`: a Dockerfile's meaning carried into tfgov.yaml, what cannot be
carried said with its line and why, the result valid, nothing written on bad input."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tests.helpers import EXAMPLE, CliResult, git, make_repo, snapshot
from tfgov_ci import config

BASE = "registry.example.com/platform/tf-base@sha256:" + "cd" * 32
ISSUE_EXAMPLE = """FROM tensorflow/tensorflow:2.13.0
WORKDIR /app
COPY train.py requirements.txt ./
RUN pip install -r requirements.txt
EXPOSE 6006
CMD ["sh", "-c", "python train.py & tensorboard --logdir=./logs --host=0.0.0.0 --port=6006"]
"""


def _init(cli: Callable[..., CliResult], repo: Path, *extra: str) -> CliResult:
    return cli("init", "--from-dockerfile", "Dockerfile", "--base", BASE, *extra, cwd=repo)


def _commit(repo: Path) -> None:
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "tfgov.yaml from the Dockerfile")


def test_the_issue_example_becomes_a_config_that_validates_and_plans(
    tmp_path: Path, cli: Callable[..., CliResult]
) -> None:
    repo = make_repo(
        tmp_path / "trainer",
        {"Dockerfile": ISSUE_EXAMPLE, "train.py": "print('train')\n", "requirements.txt": "pandas\n"},
    )
    result = _init(cli, repo)
    assert result.code == 0, result.err
    loaded = config.load(repo / "tfgov.yaml")
    assert (loaded.runtime.tensorflow, loaded.runtime.python) == ("2.13.0", "3.11")
    assert loaded.base.image == BASE
    assert loaded.app.files == ("train.py",)  # requirements.txt is the lock's input, not the app's
    assert loaded.app.entrypoint == ("python", "train.py")
    assert (loaded.app.workdir, loaded.app.ports) == ("/app", ("6006/tcp",))
    assert loaded.dependencies.requirements == "requirements.txt"
    carried, _, left = result.out.partition("\nnot carried over")
    assert "Dockerfile:1: FROM tensorflow/tensorflow:2.13.0 -> runtime.tensorflow 2.13.0" in carried
    assert "Dockerfile:4: pip install -r requirements.txt -> dependencies.requirements" in carried
    assert "Dockerfile:6: CMD [" in left and "2 processes in one container" in left
    assert "one process per container" in left and "sidecar" in left
    _commit(repo)
    validated = cli("validate", cwd=repo)
    assert validated.code == 0, validated.err
    planned = cli("plan", cwd=repo)
    assert planned.code == 0, planned.err
    assert "9 stages" in planned.out


def test_the_examples_own_dockerfile_gives_the_examples_config(
    tmp_path: Path, cli: Callable[..., CliResult]
) -> None:
    names = ("Dockerfile", "train.py", "requirements.txt", "params.yaml")
    repo = make_repo(tmp_path / "tf-mnist", {n: (EXAMPLE / n).read_text() for n in names})
    result = _init(cli, repo)
    assert result.code == 0, result.err
    loaded = config.load(repo / "tfgov.yaml")
    example = config.load(EXAMPLE / "tfgov.yaml")
    assert loaded.runtime == example.runtime
    assert loaded.app.files == example.app.files
    assert loaded.app.entrypoint == example.app.entrypoint
    assert "\nnot carried over" not in result.out  # nothing in it needs a person
    _commit(repo)
    assert cli("validate", cwd=repo).code == 0


def test_what_has_no_place_in_tfgov_yaml_is_listed_with_its_line_and_what_to_do(
    tmp_path: Path, cli: Callable[..., CliResult]
) -> None:
    dockerfile = """ARG TF=2.19.0
FROM python:3.11 AS wheels
RUN pip wheel -w /w numpy
FROM tensorflow/tensorflow:${TF}-gpu
RUN apt-get update && apt-get install -y libsndfile1 && rm -rf /var/lib/apt/lists/*
ADD https://example.com/vocab.txt /app/vocab.txt
COPY --from=wheels /w /w
COPY src/ /app/src/
RUN python3 src/prepare.py
ENV MODEL_DIR=/app/model API_TOKEN=s3cret
USER root
ENTRYPOINT python3 -m src.serve --port $PORT
"""
    repo = make_repo(tmp_path / "svc", {"Dockerfile": dockerfile, "src/serve.py": "", "requirements.txt": ""})
    result = _init(cli, repo)
    assert result.code == 0, result.err
    loaded = config.load(repo / "tfgov.yaml")
    assert (loaded.runtime.tensorflow, loaded.image.variant, loaded.runtime.cuda) == ("2.19.0", "gpu", "12.5")
    assert loaded.app.files == ("src",)
    assert dict(loaded.app.env) == {"MODEL_DIR": "/app/model"}  # never the secret
    left = result.out.partition("\nnot carried over")[2]
    for line, says in (
        (2, "is a build stage"),
        (5, "apt-get install libsndfile1: system packages come with the central base"),
        (6, "ADD https://example.com/vocab.txt: a download at build time"),
        (7, "COPY --from=wheels"),
        (9, "RUN python3 src/prepare.py: the native builder runs no build steps"),
        (10, "ENV API_TOKEN: looks like a secret"),
        (11, "USER root: not carried over"),
        (12, "a shell script (there is no shell in the base)"),
    ):
        assert f"Dockerfile:{line}: " in left and says in left, (line, says, left)


def test_a_simple_shell_form_cmd_is_carried_over_in_exec_form(
    tmp_path: Path, cli: Callable[..., CliResult]
) -> None:
    repo = make_repo(
        tmp_path / "m",
        {
            "Dockerfile": "FROM tensorflow/tensorflow:2.21.0\nCOPY app.py .\nCMD python app.py --epochs 3\n",
            "app.py": "",
            "requirements.txt": "",
        },
    )
    result = _init(cli, repo)
    assert result.code == 0, result.err
    assert config.load(repo / "tfgov.yaml").app.entrypoint == ("python", "app.py", "--epochs", "3")
    assert "a shell command, carried over in exec form" in result.out


def test_a_copy_source_written_absolute_is_relative_to_the_context(
    tmp_path: Path, cli: Callable[..., CliResult]
) -> None:
    repo = make_repo(
        tmp_path / "m",
        {"Dockerfile": "FROM tensorflow/tensorflow:2.21.0\nCOPY /app.py ./\nCMD [\"python\", \"app.py\"]\n",
         "app.py": "", "requirements.txt": ""},
    )  # fmt: skip
    result = _init(cli, repo)
    assert result.code == 0, result.err
    assert config.load(repo / "tfgov.yaml").app.files == ("app.py",)


def test_copy_of_the_whole_context_leaves_out_what_dockerignore_and_secrets_say(
    tmp_path: Path, cli: Callable[..., CliResult]
) -> None:
    repo = make_repo(
        tmp_path / "m",
        {
            "Dockerfile": 'FROM tensorflow/tensorflow:2.21.0\nCOPY . .\nCMD ["python", "train.py"]\n',
            ".dockerignore": "# not in the image\nnotebooks\n*.csv\n!keep.csv\n",
            "train.py": "",
            "requirements.txt": "",
            "notebooks/explore.ipynb": "{}",
            "data.csv": "",
            "keep.csv": "",
            ".env": "API_TOKEN=s3cret\n",
            "deploy.pem": "",
        },
    )
    result = _init(cli, repo)
    assert result.code == 0, result.err
    files = config.load(repo / "tfgov.yaml").app.files
    assert set(files) == {"keep.csv", "train.py"} or set(files) == {
        "keep.csv",
        "train.py",
        "requirements.txt",
    }
    assert "left out .env, data.csv, deploy.pem, notebooks" in result.out


def test_a_gpu_tag_of_a_release_tfgov_ci_does_not_know_still_gives_a_config_that_validates(
    tmp_path: Path, cli: Callable[..., CliResult]
) -> None:
    """No CUDA can be named for it: written as cpu, with what a person must set."""
    repo = make_repo(
        tmp_path / "m",
        {"Dockerfile": 'FROM tensorflow/tensorflow:2.6.0-gpu\nCOPY app.py .\nCMD ["python", "app.py"]\n',
         "app.py": "", "requirements.txt": ""},
    )  # fmt: skip
    result = _init(cli, repo)
    assert result.code == 0, result.err
    assert "TensorFlow 2.6.0 is not a release tfgov-ci knows" in result.out
    assert "a gpu image, written as cpu: set image.variant gpu and runtime.cuda" in result.out
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "migrated")
    assert cli("validate", cwd=repo).code == 0


def test_a_bad_dockerfile_is_an_error_at_its_line_and_nothing_is_written(
    tmp_path: Path, cli: Callable[..., CliResult]
) -> None:
    repo = make_repo(tmp_path / "m", {"Dockerfile": "FROM x\nRUN <<EOF\nnever ends\n", "app.py": ""})
    before = snapshot(repo)
    result = _init(cli, repo)
    assert result.code == 2
    assert "error: Dockerfile:2: Dockerfile syntax error: unterminated heredoc" in result.err
    assert "Traceback" not in result.err
    assert snapshot(repo) == before
    (repo / "Dockerfile").write_text("COPY app.py .\n")
    result = _init(cli, repo)
    assert result.code == 2 and "Dockerfile:1: COPY before the first FROM" in result.err


def test_an_existing_config_is_kept_without_force(tmp_path: Path, cli: Callable[..., CliResult]) -> None:
    repo = make_repo(
        tmp_path / "m",
        {"Dockerfile": ISSUE_EXAMPLE, "train.py": "", "requirements.txt": "", "tfgov.yaml": "# mine\n"},
    )
    result = _init(cli, repo)
    assert result.code == 2 and "--force" in result.err
    assert (repo / "tfgov.yaml").read_text() == "# mine\n"
    assert _init(cli, repo, "--force").code == 0
    assert "Migrated from Dockerfile" in (repo / "tfgov.yaml").read_text()
