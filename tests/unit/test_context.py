"""Commit context from real git repositories, CI provider detection, and the tag rules."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.helpers import COMMIT_TIME, git, make_repo
from tfgov_ci import config
from tfgov_ci.context import (
    MAX_TAG,
    CIInfo,
    commit_tags,
    detect_ci,
    discover,
    image_repository,
    read_git,
    slug,
    strip_credentials,
)
from tfgov_ci.errors import ContextError

DOCKER_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


def test_a_commit_on_a_branch_gives_sha_short_sha_branch_and_time(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", {"a.txt": "a\n"})
    info = read_git(repo)
    assert info.sha == git(repo, "rev-parse", "HEAD")
    assert info.short_sha == info.sha[:8]
    assert info.branch == "main"
    assert info.commit_time == COMMIT_TIME
    assert (info.dirty, info.detached, info.tags) == (False, False, ())


def test_detached_head_as_ci_checks_out_works(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", {"a.txt": "a\n"})
    git(repo, "tag", "v1.2.0")
    git(repo, "checkout", "-q", "--detach", "HEAD")
    info = read_git(repo)
    assert info.detached and info.branch is None
    assert info.tags == ("v1.2.0",)


def test_tags_on_other_commits_are_not_ours(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", {"a.txt": "a\n"})
    git(repo, "tag", "-a", "v1", "-m", "annotated")
    (repo / "a.txt").write_text("b\n")
    git(repo, "commit", "-qam", "second")
    assert read_git(repo).tags == ()
    git(repo, "checkout", "-q", "v1")
    assert read_git(repo).tags == ("v1",)


def test_modified_staged_and_untracked_files_make_the_tree_dirty(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", {"a.txt": "a\n", "b.txt": "b\n"})
    (repo / "a.txt").write_text("changed\n")
    (repo / "new.txt").write_text("new\n")
    (repo / "b.txt").write_text("staged\n")
    git(repo, "add", "b.txt")
    info = read_git(repo)
    assert info.dirty
    assert sorted(info.dirty_paths) == ["a.txt", "b.txt", "new.txt"]


def test_tfgov_working_folders_do_not_make_the_tree_dirty(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", {"a.txt": "a\n"})
    (repo / ".tfgov" / "out").mkdir(parents=True)
    (repo / ".tfgov" / "out" / "x.json").write_text("{}")
    (repo / "custom-out").mkdir()
    (repo / "custom-out" / "y.json").write_text("{}")
    assert read_git(repo, ignore=(repo / "custom-out",)).dirty is False
    assert read_git(repo).dirty_paths == ("custom-out/y.json",)


def test_remote_credentials_are_stripped(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", {"a.txt": "a\n"})
    git(repo, "remote", "add", "origin", "https://gitlab-ci-token:glpat-SECRET@gitlab.example.com/ml/r.git")
    info = read_git(repo)
    assert info.remote_url == "https://gitlab.example.com/ml/r.git"
    assert "SECRET" not in repr(info)


@pytest.mark.parametrize(
    ("url", "clean"),
    [
        ("https://user:pw@host.example/x.git", "https://host.example/x.git"),
        ("https://token@host.example:8443/x.git", "https://host.example:8443/x.git"),
        ("ssh://git:pw@host.example/x.git", "ssh://host.example/x.git"),
        ("git@host.example:group/x.git", "git@host.example:group/x.git"),
        ("https://host.example/x.git", "https://host.example/x.git"),
    ],
)
def test_strip_credentials(url: str, clean: str) -> None:
    assert strip_credentials(url) == clean


def test_outside_a_repository_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ContextError, match="not inside a git repository") as raised:
        read_git(tmp_path)
    assert raised.value.hint and "git init" in raised.value.hint


def test_a_repository_without_commits_is_a_clear_error(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q")
    with pytest.raises(ContextError, match="has no commit yet"):
        read_git(tmp_path)


GITLAB = {
    "GITLAB_CI": "true",
    "CI_PIPELINE_ID": "4711",
    "CI_PIPELINE_URL": "https://gitlab.example.com/ml/r/-/pipelines/4711",
    "CI_JOB_ID": "99",
    "CI_JOB_URL": "https://gitlab.example.com/ml/r/-/jobs/99",
    "CI_COMMIT_SHA": "a" * 40,
    "CI_COMMIT_REF_NAME": "feature/x",
    "CI_COMMIT_BRANCH": "feature/x",
    "CI_REPOSITORY_URL": "https://gitlab-ci-token:glcbt-SECRET@gitlab.example.com/ml/r.git",
}
JENKINS = {
    "JENKINS_URL": "https://jenkins.example.com/",
    "BUILD_NUMBER": "12",
    "BUILD_TAG": "jenkins-ml-r-main-12",
    "BUILD_URL": "https://jenkins.example.com/job/ml/job/r/job/main/12/",
    "JOB_URL": "https://jenkins.example.com/job/ml/job/r/job/main/",
    "GIT_COMMIT": "b" * 40,
    "GIT_BRANCH": "origin/main",
    "GIT_URL": "https://bot:pat@git.example.com/ml/r.git",
}


def test_gitlab_is_detected_from_its_variables() -> None:
    ci = detect_ci(GITLAB)
    assert ci == CIInfo(
        provider="gitlab",
        pipeline_id="4711",
        pipeline_url=GITLAB["CI_PIPELINE_URL"],
        job_id="99",
        job_url=GITLAB["CI_JOB_URL"],
        branch="feature/x",
        tag=None,
        commit="a" * 40,
        repo_url="https://gitlab.example.com/ml/r.git",
    )


def test_gitlab_merge_request_and_tag_pipelines() -> None:
    mr = {**GITLAB, "CI_COMMIT_BRANCH": "", "CI_MERGE_REQUEST_SOURCE_BRANCH_NAME": "fix/y"}
    assert detect_ci(mr).branch == "fix/y"
    tag = {**GITLAB, "CI_COMMIT_BRANCH": "", "CI_COMMIT_TAG": "v2.0.0"}
    assert (detect_ci(tag).branch, detect_ci(tag).tag) == (None, "v2.0.0")


def test_jenkins_is_detected_from_its_variables() -> None:
    ci = detect_ci(JENKINS)
    assert ci.provider == "jenkins"
    assert (ci.pipeline_id, ci.job_id) == ("jenkins-ml-r-main-12", "12")
    assert ci.pipeline_url == JENKINS["BUILD_URL"]
    assert ci.branch == "main"  # GIT_BRANCH without origin/
    assert ci.repo_url == "https://git.example.com/ml/r.git"


def test_jenkins_multibranch_pull_request_uses_the_source_branch() -> None:
    ci = detect_ci({**JENKINS, "BRANCH_NAME": "PR-7", "CHANGE_BRANCH": "feature/z", "TAG_NAME": ""})
    assert ci.branch == "feature/z"


def test_no_ci_variables_means_local() -> None:
    assert detect_ci({"PATH": "/usr/bin"}) == CIInfo(provider="local")


def test_ci_branch_names_the_tag_on_a_detached_checkout(tmp_path: Path) -> None:
    repo = make_repo(
        tmp_path / "r",
        {"tfgov.yaml": (Path(__file__).parents[2] / "examples/tf-mnist/tfgov.yaml").read_text()},
    )
    git(repo, "checkout", "-q", "--detach")
    ctx = discover(config.load(repo / "tfgov.yaml"), repo / ".tfgov/out", env=GITLAB)
    sha = ctx.git.sha
    assert ctx.images().tags == (sha, sha[:8], "feature-x")
    assert ctx.images().refs[0] == f"registry.example.com/ml/tf-mnist:{sha}"


def test_source_date_epoch_from_the_environment_wins_and_is_said_so(tmp_path: Path) -> None:
    repo = make_repo(
        tmp_path / "r",
        {"tfgov.yaml": (Path(__file__).parents[2] / "examples/tf-mnist/tfgov.yaml").read_text()},
    )
    loaded = config.load(repo / "tfgov.yaml")
    assert discover(loaded, repo / "out", env={}).source_date_epoch == COMMIT_TIME
    ctx = discover(loaded, repo / "out", env={"SOURCE_DATE_EPOCH": "1700000000"})
    assert (ctx.source_date_epoch, ctx.source_date_epoch_from) == (1700000000, "env")
    with pytest.raises(ContextError, match="SOURCE_DATE_EPOCH"):
        discover(loaded, repo / "out", env={"SOURCE_DATE_EPOCH": "yesterday"})


@pytest.mark.parametrize(
    ("name", "tag"),
    [
        ("main", "main"),
        ("feature/Add-Thing", "feature-add-thing"),
        ("release/1.2", "release-1.2"),
        ("--weird..name--", "weird..name"),
        ("v1.0.0+build.5", "v1.0.0-build.5"),
        ("über/straße", "ber-stra-e"),
        ("___", "___"),
        ("/", ""),
    ],
)
def test_slug_follows_the_docker_tag_grammar(name: str, tag: str) -> None:
    assert slug(name) == tag
    assert tag == "" or DOCKER_TAG.match(tag)


def _git_info(**changes: object) -> object:
    from tfgov_ci.context import GitInfo

    values: dict[str, object] = dict(
        root=Path("/r"),
        sha="0123456789abcdef" * 2 + "01234567",
        branch="main",
        tags=(),
        dirty=False,
        dirty_paths=(),
        commit_time=0,
        remote_url=None,
        detached=False,
    )
    values.update(changes)
    return GitInfo(**values)  # type: ignore[arg-type]


def test_commit_tags_are_full_sha_short_sha_branch_and_git_tags() -> None:
    info = _git_info(tags=("v1.0.0", "Release_2"))
    sha = info.sha  # type: ignore[attr-defined]
    assert commit_tags(info, CIInfo("local")) == (sha, sha[:8], "main", "release_2", "v1.0.0")  # type: ignore[arg-type]


def test_long_branch_names_are_cut_to_128_and_dirty_tags_stay_within_it() -> None:
    info = _git_info(branch="feature/" + "x" * 300, dirty=True, dirty_paths=("a",))
    tags = commit_tags(info, CIInfo("local"))  # type: ignore[arg-type]
    assert all(len(tag) <= MAX_TAG and tag.endswith("-dirty") and DOCKER_TAG.match(tag) for tag in tags)
    assert len(tags[2]) == MAX_TAG


def test_without_a_registry_images_go_to_the_local_oci_layout(tmp_path: Path) -> None:
    path = tmp_path / "tfgov.yaml"
    text = (Path(__file__).parents[2] / "examples/tf-mnist/tfgov.yaml").read_text()
    path.write_text(text.replace("  registry: registry.example.com\n", ""))
    assert image_repository(config.load(path)) == "oci:.tfgov/oci:ml/tf-mnist"


def test_gitlab_ci_local_is_a_local_run() -> None:
    """gitlab-ci-local sets GITLAB_CI=false (and made-up project URLs): not GitLab."""
    from tfgov_ci.context import detect_ci

    assert detect_ci({"GITLAB_CI": "false", "CI_PIPELINE_ID": "1001"}).provider == "local"
    assert detect_ci({"GITLAB_CI": "true", "CI_PIPELINE_ID": "1001"}).provider == "gitlab"
