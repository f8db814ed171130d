"""`tfgov-ci emit`: the committed templates are its output, drift is caught, the stage table
reaches both CI systems; `plan --as`; the offline check of a GitLab include's inputs."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import yaml

from tests.helpers import ROOT, CliResult
from tfgov_ci.ci.gitlab_api import check_inputs, packaged_template
from tfgov_ci.emit import render
from tfgov_ci.pipeline import load_pipeline


def test_the_committed_templates_are_what_emit_writes(cli: Callable[..., CliResult]) -> None:
    result = cli("emit", "--check", cwd=ROOT)
    assert result.code == 0, result.err
    assert "templates match tf-image.yaml and the stage table (gitlab, jenkins)" in result.out


def test_template_drift_fails_the_check_and_emit_repairs_it(
    tmp_path: Path, cli: Callable[..., CliResult]
) -> None:
    shutil.copytree(ROOT / "templates", tmp_path / "templates")
    shutil.copytree(ROOT / "pipelines", tmp_path / "pipelines")
    edited = tmp_path / "templates/gitlab/tfgov.yml"
    edited.write_text(edited.read_text().replace("expire_in: 30 days", "expire_in: 1 year", 1))
    (tmp_path / "templates/jenkins/vars/tfgovStage.txt").unlink()
    result = cli("emit", "--check", cwd=tmp_path)
    assert result.code == 1
    assert "templates/gitlab/tfgov.yml: differs from what `tfgov-ci emit gitlab` writes" in result.err
    assert "templates/jenkins/vars/tfgovStage.txt: missing" in result.err
    assert cli("emit", "gitlab", cwd=tmp_path).code == 0 and cli("emit", "jenkins", cwd=tmp_path).code == 0
    assert cli("emit", "--check", cwd=tmp_path).code == 0


def test_a_pipeline_naming_an_unknown_stage_is_refused_with_its_line(
    tmp_path: Path, cli: Callable[..., CliResult]
) -> None:
    (tmp_path / "bad.yaml").write_text(
        "version: 1\nname: bad\nstages:\n  - stage: build\n  - stage: deploy\n"
    )
    result = cli("emit", "gitlab", "--pipeline", "bad.yaml", "--dir", str(tmp_path / "out"), cwd=tmp_path)
    assert result.code == 2
    assert "bad.yaml:5: stages[1].stage: unknown stage 'deploy'" in result.err
    assert not (tmp_path / "out").exists()


def test_the_templates_follow_the_pipeline_definition(tmp_path: Path) -> None:
    (tmp_path / "short.yaml").write_text(
        "version: 1\nname: short\nstages:\n  - stage: validate\n  - stage: lock\n  - stage: build\n"
        "  - stage: sbom\n  - stage: policy\n  - stage: publish\n"
    )
    pipeline_def = load_pipeline("short.yaml", tmp_path)
    gitlab = list(yaml.safe_load_all(render("gitlab", pipeline_def)["tfgov.yml"]))[1]
    assert "tfgov-scan" not in gitlab and ".tfgov-scan" not in gitlab
    assert [n["job"] for n in gitlab["tfgov-policy"]["needs"]] == [
        "tfgov-validate",
        "tfgov-lock",
        "tfgov-build",
        "tfgov-sbom",
    ]
    jenkins = render("jenkins", pipeline_def)["vars/tfgovStage.groovy"]
    assert (
        "@Field static final List STAGES = ['validate', 'lock', 'build', 'sbom', 'policy', 'publish']"
        in jenkins
    )


def test_plan_as_gitlab_and_jenkins(example_repo: Path, cli: Callable[..., CliResult]) -> None:
    gitlab = cli("plan", "--as", "gitlab", cwd=example_repo)
    assert gitlab.code == 0, gitlab.err
    assert (
        "  tfgov-publish [tfgov.yaml]\n      needs:   tfgov-validate, tfgov-lock, tfgov-build, tfgov-sbom, "
        in gitlab.out
    )
    assert 'script:  tfgov-ci --config "$TFGOV_CONFIG"' not in gitlab.out  # the config is filled in
    assert 'script:  tfgov-ci --config "tfgov.yaml" --out ".tfgov/out/tfgov.yaml" run scan' in gitlab.out
    assert "report:  junit .tfgov/out/tfgov.yaml/policy/junit.xml" in gitlab.out
    assert (
        "tfgov-record [tfgov.yaml]\n" in gitlab.out and "not available" not in gitlab.out
    )  # every stage runs
    jenkins = cli("plan", "--as", "jenkins", cwd=example_repo)
    assert (
        "  stage 'tfgov: build'\n"
        '      sh:      "tfgov-ci" --config "tfgov.yaml" --out ".tfgov/out" run "build"' in jenkins.out
    )
    assert "finally: archiveArtifacts .tfgov/out/**; junit .tfgov/out/policy/junit.xml" in jenkins.out


def test_an_include_with_an_unknown_input_or_a_wrong_type_is_found_offline(tmp_path: Path) -> None:
    ci = tmp_path / ".gitlab-ci.yml"
    ci.write_text(
        "include:\n  - project: platform/tfgov-ci\n    ref: v0.1.0\n    file: /templates/gitlab/tfgov.yml\n"
        "    inputs:\n      config-file: tfgov.yaml\n      scan-allow-failure: 'yes'\n"
        "      stages: validate lock\n"
        "  - local: other.yml\n"
    )
    problems = check_inputs(ci, packaged_template())
    assert [(p.key, p.line, p.message) for p in problems] == [
        ("include[0].inputs.config-file", 6, "the tfgov template has no such input"),
        ("include[0].inputs.scan-allow-failure", 7, "must be a boolean"),
    ]
    assert "config-files" in (problems[0].hint or "")


def test_the_base_image_pipeline_emits_too() -> None:
    """A platform team emits the central base's own CI from pipelines/base-image.yaml."""
    pipeline_def = load_pipeline("base-image", ROOT)
    gitlab = list(yaml.safe_load_all(render("gitlab", pipeline_def)["tfgov.yml"]))[1]
    assert "tfgov-lock" not in gitlab
    assert [n["job"] for n in gitlab["tfgov-build"]["needs"]] == ["tfgov-validate"]
    jenkins = render("jenkins", pipeline_def)["vars/tfgovStage.groovy"]
    assert "'build': ['validate']" in jenkins
