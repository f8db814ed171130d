"""tfgov.yaml loading, organisation defaults and locks, and every bad-config case of issue 2.

The bad-input cases go through the real CLI in a real git repository: each must print one line
per problem naming file, line and key path, with a hint, exit 2, show no traceback and write
nothing.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers import EXAMPLE, CliResult, git, make_repo, snapshot
from tfgov_ci import config
from tfgov_ci.errors import ConfigError

GOOD = (EXAMPLE / "tfgov.yaml").read_text()
DIGEST = "sha256:" + "ab" * 32


def test_example_config_loads_into_frozen_dataclasses() -> None:
    loaded = config.load(EXAMPLE / "tfgov.yaml")
    assert loaded.image.name == "tf-mnist"
    assert loaded.image.repository == "ml/tf-mnist"
    assert loaded.app.files == ("train.py", "params.yaml")
    assert loaded.app.env == (("MODEL_DIR", "/app/model"), ("TF_CPP_MIN_LOG_LEVEL", "2"))
    assert loaded.digest.startswith("sha256:") and len(loaded.digest) == 71
    with pytest.raises(dataclasses.FrozenInstanceError):
        loaded.image.name = "other"  # type: ignore[misc]


def test_defaults_fill_what_the_file_leaves_out(tmp_path: Path) -> None:
    path = tmp_path / "tfgov.yaml"
    path.write_text(f"""version: 1
image: {{name: fraud-trainer}}
base: {{image: "registry.example.com/platform/tf-base@{DIGEST}"}}
runtime: {{python: "3.11", tensorflow: "2.21.0"}}
app: {{files: [train.py]}}
""")
    loaded = config.load(path)
    assert loaded.image.repository == "fraud-trainer"
    assert loaded.image.registry is None
    assert loaded.image.variant == "cpu"
    assert (loaded.app.workdir, loaded.app.user) == ("/app", "65532:65532")
    assert loaded.dependencies.requirements == "requirements.txt"
    assert loaded.pipeline == "tf-image"
    assert loaded.stage("build").backend is None


def _edit(old: str, new: str) -> Callable[[Path], None]:
    def apply(repo: Path) -> None:
        text = (repo / "tfgov.yaml").read_text()
        assert old in text, old
        (repo / "tfgov.yaml").write_text(text.replace(old, new))

    return apply


def _symlink_out(repo: Path) -> None:
    outside = repo.parent / "secret.txt"
    outside.write_text("not in the repository")
    (repo / "link.py").symlink_to(outside)
    _edit("files: [train.py, params.yaml]", "files: [train.py, link.py]")(repo)


def _symlink_out_inside_a_folder(repo: Path) -> None:
    outside = repo.parent / "shared-data"
    outside.mkdir()
    (repo / "src").mkdir()
    (repo / "src" / "model.py").write_text("X = 1\n")
    (repo / "src" / "data").symlink_to(outside)
    _edit("files: [train.py, params.yaml]", "files: [train.py, src]")(repo)


def _missing_requirements(repo: Path) -> None:
    (repo / "requirements.txt").unlink()


BAD_CASES = {
    "yaml syntax error": (_edit("  name: tf-mnist", "  name: [tf-mnist"), "tfgov.yaml:", "YAML syntax"),
    "unknown key": (
        _edit("  variant: cpu", "  variant: cpu\n  varient: gpu"),
        "tfgov.yaml:9: image.varient: unknown key",
        "did you mean 'variant'",
    ),
    "wrong type": (
        _edit('  python: "3.11"', "  python: 3.11"),
        "tfgov.yaml:17: runtime.python: expected string, found number",
        "hint:",
    ),
    "image name breaks the naming rule": (
        _edit("name: tf-mnist", "name: My_Model"),
        "tfgov.yaml:5: image.name: 'My_Model' does not match",
        "hint:",
    ),
    "base without a digest": (
        _edit(
            "tf-base@sha256:6a0e1f8c3b2d4e5f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7", "tf-base:2.21"
        ),
        "tfgov.yaml:13: base.image: 'registry.example.com/platform/tf-base:2.21' is not pinned by digest",
        "skopeo inspect",
    ),
    "base outside the allowlist": (
        _edit("image: registry.example.com/platform", "image: docker.io/someone"),
        "tfgov.yaml:13: base.image: registry 'docker.io' is not in base.allowed_registries",
        "hint:",
    ),
    "gpu without cuda": (
        _edit("variant: cpu", "variant: gpu"),
        "tfgov.yaml:16: runtime.cuda: the gpu variant needs runtime.cuda",
        "hint:",
    ),
    "tensorflow and python no release supports": (
        _edit('python: "3.11"', 'python: "3.9"'),
        "tfgov.yaml:17: runtime.python: TensorFlow 2.21.0 supports Python 3.10-3.13, not 3.9",
        "TensorFlow 2.20 supports Python 3.9",
    ),
    "requirements file missing": (
        _missing_requirements,
        "tfgov.yaml:21: dependencies.requirements: requirements file 'requirements.txt' not found",
        "hint:",
    ),
    "app path with ..": (
        _edit("files: [train.py, params.yaml]", "files: [train.py, ../other.py]"),
        "tfgov.yaml:25: app.files[1]: '../other.py' leaves the project folder",
        "hint:",
    ),
    "absolute app path": (
        _edit("files: [train.py, params.yaml]", "files: [/etc/passwd]"),
        "tfgov.yaml:25: app.files[0]: '/etc/passwd' leaves the project folder",
        "hint:",
    ),
    "app symlink out of the repository": (
        _symlink_out,
        "tfgov.yaml:25: app.files[1]: 'link.py' is a symlink to",
        "hint:",
    ),
    "app folder holding a symlink out of the repository": (
        _symlink_out_inside_a_folder,
        "tfgov.yaml:25: app.files[1]: 'src/data' is a symlink to",
        "copy the file into the repository",
    ),
}


@pytest.mark.parametrize("case", list(BAD_CASES), ids=list(BAD_CASES))
@pytest.mark.parametrize("command", ["validate", "plan", "run"])
def test_bad_config_is_one_clear_line_exit_2_and_writes_nothing(
    case: str, command: str, example_repo: Path, cli: Callable[..., CliResult]
) -> None:
    breaker, expected, hint = BAD_CASES[case]
    breaker(example_repo)
    before = snapshot(example_repo)
    result = cli(command, cwd=example_repo)
    assert result.code == 2, result.err
    assert expected in result.err
    assert hint in result.err
    assert "Traceback" not in result.err
    assert all(line.startswith("error: ") for line in result.err.splitlines())
    assert snapshot(example_repo) == before


def test_validate_prints_every_problem_not_just_the_first(
    example_repo: Path, cli: Callable[..., CliResult]
) -> None:
    _edit("name: tf-mnist", "name: Bad_Name")(example_repo)
    _edit("  variant: cpu", "  variant: cpu\n  colour: blue")(example_repo)
    _edit("  workdir: /app", "  workdir: app")(example_repo)
    result = cli("validate", cwd=example_repo)
    assert result.code == 2
    lines = result.err.splitlines()
    assert len(lines) == 3, lines
    assert any("image.name" in line for line in lines)
    assert any("image.colour: unknown key" in line for line in lines)
    assert any("app.workdir" in line for line in lines)


def test_not_a_git_repository_is_a_config_error(tmp_path: Path, cli: Callable[..., CliResult]) -> None:
    for name in ("tfgov.yaml", "requirements.txt", "train.py", "params.yaml"):
        (tmp_path / name).write_text((EXAMPLE / name).read_text())
    before = snapshot(tmp_path)
    for command in ("validate", "plan", "run"):
        result = cli(command, cwd=tmp_path)
        assert result.code == 2
        assert "is not inside a git repository" in result.err
        assert "hint:" in result.err
    assert snapshot(tmp_path) == before


def test_commit_tags_on_a_dirty_tree_are_refused(example_repo: Path, cli: Callable[..., CliResult]) -> None:
    (example_repo / "train.py").write_text("print('changed')\n")
    before = snapshot(example_repo)
    for command in ("plan", "run"):
        result = cli(command, cwd=example_repo)
        assert result.code == 2
        assert "uncommitted changes (train.py)" in result.err
        assert "--allow-dirty" in result.err
    assert snapshot(example_repo) == before


def test_missing_config_file_names_it(tmp_path: Path, cli: Callable[..., CliResult]) -> None:
    result = cli("validate", "--config", str(tmp_path / "nope.yaml"), cwd=tmp_path)
    assert result.code == 2
    assert "nope.yaml: file not found" in result.err


def test_a_duplicated_key_is_an_error_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "tfgov.yaml"
    path.write_text(GOOD.replace("  variant: cpu", "  variant: cpu\n  variant: gpu"))
    with pytest.raises(ConfigError) as raised:
        config.load(path)
    assert [p.render() for p in raised.value.problems] == [
        f"{path}: image.variant: duplicate key (hint: keep one of them)".replace(f"{path}:", f"{path}:9:")
    ]


def test_unknown_stage_backend_names_the_choices(example_repo: Path, cli: Callable[..., CliResult]) -> None:
    (example_repo / "tfgov.yaml").write_text(GOOD + "stages:\n  build:\n    backend: kaniko\n")
    result = cli("validate", cwd=example_repo)
    assert result.code == 2
    assert "tfgov.yaml:34: stages.build.backend: unknown build backend 'kaniko'" in result.err
    assert "native, buildah, docker" in result.err


# --- the organisation file -------------------------------------------------------------------

ORG = f"""version: 1
defaults:
  image:
    registry: harbor.corp.example
  base:
    image: harbor.corp.example/platform/tf-base@{DIGEST}
    allowed_registries: [harbor.corp.example]
locked:
  - base.allowed_registries
  - image.registry
"""

PROJECT = """version: 1
image:
  name: fraud-trainer
  repository: ml/fraud-trainer
runtime: {python: "3.11", tensorflow: "2.21.0"}
app: {files: [train.py]}
"""


@pytest.fixture
def org_project(tmp_path: Path) -> tuple[Path, Path]:
    repo = make_repo(
        tmp_path / "fraud", {"tfgov.yaml": PROJECT, "train.py": "print(1)\n", "requirements.txt": "numpy\n"}
    )
    org = tmp_path / "org.yaml"
    org.write_text(ORG)
    return repo, org


def test_organisation_defaults_merge_under_the_project(org_project: tuple[Path, Path]) -> None:
    repo, org = org_project
    loaded = config.load(repo / "tfgov.yaml", org)
    assert loaded.image.registry == "harbor.corp.example"
    assert loaded.image.name == "fraud-trainer"
    assert loaded.base.allowed_registries == ("harbor.corp.example",)
    assert loaded.locked == ("base.allowed_registries", "image.registry")


def test_organisation_file_comes_from_the_environment(
    org_project: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, cli: Callable[..., CliResult]
) -> None:
    repo, org = org_project
    monkeypatch.setenv("TFGOV_ORG_CONFIG", str(org))
    result = cli("validate", cwd=repo)
    assert result.code == 0, result.err
    assert "base harbor.corp.example/platform/tf-base" in result.out


def test_a_project_cannot_set_a_locked_key(
    org_project: tuple[Path, Path], cli: Callable[..., CliResult]
) -> None:
    repo, org = org_project
    (repo / "tfgov.yaml").write_text(PROJECT + "base:\n  allowed_registries: [docker.io]\n")
    result = cli("validate", "--org-config", str(org), cwd=repo)
    assert result.code == 2
    assert "tfgov.yaml:8: base.allowed_registries: locked by the organisation file" in result.err
    assert "ask the platform team" in result.err


def test_errors_in_organisation_defaults_point_into_the_organisation_file(
    org_project: tuple[Path, Path], cli: Callable[..., CliResult]
) -> None:
    repo, org = org_project
    org.write_text(ORG.replace("registry: harbor.corp.example", "registry: [harbor]"))
    result = cli("validate", "--org-config", str(org), cwd=repo)
    assert result.code == 2
    assert re.search(r"org\.yaml:4: defaults\.image\.registry: expected string, found array", result.err)


def test_a_locked_path_that_is_no_key_is_an_error(
    org_project: tuple[Path, Path], cli: Callable[..., CliResult]
) -> None:
    repo, org = org_project
    org.write_text(ORG + "  - base.allowlist\n")
    result = cli("validate", "--org-config", str(org), cwd=repo)
    assert result.code == 2
    assert "org.yaml:11: locked[2]: 'base.allowlist' is not a tfgov.yaml key" in result.err


def test_an_empty_allowlist_is_accepted_loudly(example_repo: Path, cli: Callable[..., CliResult]) -> None:
    _edit("  allowed_registries: [registry.example.com]\n", "")(example_repo)
    git(example_repo, "commit", "-qam", "no allowlist")
    result = cli("validate", cwd=example_repo)
    assert result.code == 0
    assert "warning: base.allowed_registries is empty: a base image from ANY registry" in result.err
