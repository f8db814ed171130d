"""`tfgov-ci init` writes a commented tfgov.yaml that validates, and never clobbers one."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers import EXAMPLE, CliResult, git, make_repo
from tfgov_ci import config

BASE = "registry.example.com/platform/tf-base@sha256:" + "cd" * 32


@pytest.fixture
def model_repo(tmp_path: Path) -> Path:
    return make_repo(
        tmp_path / "Fraud_Trainer",
        {
            "train.py": "print('train')\n",
            "utils.py": "X = 1\n",
            "requirements.txt": "tensorflow==2.19.0\npandas>=2.2\n",
            "Dockerfile": "FROM tensorflow/tensorflow:2.19.0\nCOPY . /app\n",
        },
    )


def test_init_writes_a_commented_config_that_validates(
    model_repo: Path, cli: Callable[..., CliResult]
) -> None:
    result = cli("init", "--base", BASE, "--registry", "registry.example.com", cwd=model_repo)
    assert result.code == 0, result.err
    text = (model_repo / "tfgov.yaml").read_text()
    assert text.count("\n#") + text.count(" # ") > 5, "the file explains itself"
    loaded = config.load(model_repo / "tfgov.yaml")
    assert loaded.image.name == "fraud-trainer"  # from the folder name, slugged
    assert loaded.runtime.tensorflow == "2.19.0"  # from requirements.txt
    assert loaded.app.files == ("train.py", "utils.py")
    assert loaded.app.entrypoint == ("python", "train.py")
    assert "backend: buildah" in text  # a Dockerfile was found: said in a comment
    git(model_repo, "add", "tfgov.yaml")
    git(model_repo, "commit", "-qm", "tfgov")
    validated = cli("validate", cwd=model_repo)
    assert validated.code == 0, validated.err


def test_init_takes_base_and_registry_from_the_organisation(
    model_repo: Path, tmp_path: Path, cli: Callable[..., CliResult]
) -> None:
    org = tmp_path / "org.yaml"
    org.write_text(
        f"version: 1\ndefaults:\n  image: {{registry: harbor.corp.example}}\n"
        f"  base: {{image: '{BASE}', allowed_registries: [registry.example.com]}}\n"
    )
    assert cli("init", "--org-config", str(org), cwd=model_repo).code == 0
    text = (model_repo / "tfgov.yaml").read_text()
    assert "base:" not in text.replace("# base:", "")
    loaded = config.load(model_repo / "tfgov.yaml", org)
    assert (loaded.base.image, loaded.image.registry) == (BASE, "harbor.corp.example")


def test_init_without_any_base_says_how_to_give_one(model_repo: Path, cli: Callable[..., CliResult]) -> None:
    result = cli("init", cwd=model_repo)
    assert result.code == 2
    assert "--base" in result.err and "TFGOV_ORG_CONFIG" in result.err
    assert not (model_repo / "tfgov.yaml").exists()


def test_init_refuses_an_unpinned_base(model_repo: Path, cli: Callable[..., CliResult]) -> None:
    result = cli("init", "--base", "registry.example.com/platform/tf-base:latest", cwd=model_repo)
    assert result.code == 2
    assert "not pinned by digest" in result.err


def test_init_never_overwrites_without_force(model_repo: Path, cli: Callable[..., CliResult]) -> None:
    (model_repo / "tfgov.yaml").write_text("# mine\n")
    result = cli("init", "--base", BASE, cwd=model_repo)
    assert result.code == 2 and "--force" in result.err
    assert (model_repo / "tfgov.yaml").read_text() == "# mine\n"
    assert cli("init", "--base", BASE, "--force", cwd=model_repo).code == 0
    assert (model_repo / "tfgov.yaml").read_text() != "# mine\n"


def test_init_with_a_bad_name_writes_nothing(model_repo: Path, cli: Callable[..., CliResult]) -> None:
    result = cli("init", "--base", BASE, "--name", "Not_Valid", cwd=model_repo)
    assert result.code == 2
    assert "image.name" in result.err
    assert sorted(p.name for p in model_repo.iterdir()) == [
        ".git",
        "Dockerfile",
        "requirements.txt",
        "train.py",
        "utils.py",
    ]


def test_the_example_config_could_have_come_from_init(tmp_path: Path, cli: Callable[..., CliResult]) -> None:
    repo = make_repo(
        tmp_path / "tf-mnist",
        {n: (EXAMPLE / n).read_text() for n in ("train.py", "requirements.txt", "params.yaml")},
    )
    assert cli("init", "--base", BASE, cwd=repo).code == 0
    loaded = config.load(repo / "tfgov.yaml")
    assert loaded.runtime.tensorflow == "2.21.0"  # tensorflow-cpu==2.21.0 in requirements.txt
    assert loaded.image.name == "tf-mnist"
