"""`tfgov-ci gitlab lint|note` (python-gitlab) and `tfgov-ci jenkins run` (jenkinsapi), against
recorded HTTP responses: neither a GitLab nor a Jenkins server can run on these machines. The
responses follow the servers' documented shapes (GitLab's /projects/:id/ci/lint and notes API;
Jenkins' api/python, queue items, buildWithParameters and progressive console text)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
import responses

from tests.helpers import CliResult

GITLAB = "https://gitlab.example.com"
TOKEN = "glpat-s3cret-token-value"
CI = (
    "include:\n  - project: platform/tfgov-ci\n    file: /templates/gitlab/tfgov.yml\n"
    "    inputs:\n      stages: validate lock\n"
)


@pytest.fixture
def gitlab_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("CI_SERVER_URL", GITLAB)
    monkeypatch.setenv("CI_PROJECT_ID", "42")
    monkeypatch.setenv("TFGOV_GITLAB_TOKEN", TOKEN)
    (tmp_path / ".gitlab-ci.yml").write_text(CI)
    return tmp_path


@responses.activate
def test_gitlab_lint_sends_the_configuration_and_reports_valid(
    gitlab_env: Path, cli: Callable[..., CliResult]
) -> None:
    responses.post(
        f"{GITLAB}/api/v4/projects/42/ci/lint",
        json={
            "valid": True,
            "errors": [],
            "warnings": ["jobs:tfgov-scan may allow multiple pipelines"],
            "merged_yaml": "tfgov-validate: {}",
            "includes": [],
            "jobs": [{"name": "tfgov-validate"}, {"name": "tfgov-lock"}],
        },
    )
    result = cli("gitlab", "lint", cwd=gitlab_env)
    assert result.code == 0, result.err
    assert "ok: GitLab says .gitlab-ci.yml is valid (2 jobs in a dry run)" in result.out
    assert "warning: jobs:tfgov-scan may allow multiple pipelines" in result.err
    sent = responses.calls[0].request
    assert json.loads(sent.body)["content"] == CI and json.loads(sent.body)["dry_run"] is True
    assert sent.headers["PRIVATE-TOKEN"] == TOKEN
    assert TOKEN not in result.out + result.err


@responses.activate
def test_gitlab_lint_of_an_invalid_configuration_exits_1_with_gitlabs_reasons(
    gitlab_env: Path, cli: Callable[..., CliResult]
) -> None:
    responses.post(
        f"{GITLAB}/api/v4/projects/42/ci/lint",
        json={
            "valid": False,
            "errors": ["jobs:tfgov-build config contains unknown keys: tagz"],
            "warnings": [],
        },
    )
    result = cli("gitlab", "lint", cwd=gitlab_env)
    assert result.code == 1
    assert (
        "GitLab says .gitlab-ci.yml is invalid: jobs:tfgov-build config contains unknown keys: tagz"
        in result.err
    )


@responses.activate
def test_gitlab_lint_catches_a_wrong_input_before_calling_gitlab(
    gitlab_env: Path, cli: Callable[..., CliResult]
) -> None:
    (gitlab_env / ".gitlab-ci.yml").write_text(CI + "      scan-alow-failure: true\n")
    result = cli("gitlab", "lint", cwd=gitlab_env)
    assert result.code == 2
    assert (
        ".gitlab-ci.yml:6: include[0].inputs.scan-alow-failure: the tfgov template has no such input"
        in result.err
    )
    assert len(responses.calls) == 0


@responses.activate
def test_a_refused_token_is_a_tool_error_that_never_shows_it(
    gitlab_env: Path, cli: Callable[..., CliResult]
) -> None:
    responses.post(f"{GITLAB}/api/v4/projects/42/ci/lint", json={"message": "401 Unauthorized"}, status=401)
    result = cli("gitlab", "lint", cwd=gitlab_env)
    assert result.code == 3
    assert "check TFGOV_GITLAB_TOKEN" in result.err and TOKEN not in result.err


@responses.activate
def test_gitlab_note_posts_the_policy_summary_once_and_then_updates_it(
    gitlab_env: Path, cli: Callable[..., CliResult], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CI_MERGE_REQUEST_IID", "7")
    summary = gitlab_env / "summary.md"
    summary.write_text("## tfgov-ci policy: **denied**\n\n| rule | result |\n")
    notes = f"{GITLAB}/api/v4/projects/42/merge_requests/7/notes"
    other = {"id": 5, "body": "LGTM", "author": {"username": "reviewer"}}
    responses.get(notes, json=[other])
    responses.post(notes, json={"id": 991, "body": "..."}, status=201)
    first = cli("gitlab", "note", "--summary", str(summary), cwd=gitlab_env)
    assert first.code == 0, first.err
    assert "posted the policy summary as note 991" in first.out
    posted = json.loads(responses.calls[1].request.body)["body"]
    assert posted == "<!-- tfgov-ci policy summary -->\n" + summary.read_text()
    # the next pipeline's summary replaces it instead of adding another note
    responses.get(notes, json=[other, {"id": 991, "body": posted}])
    responses.put(f"{notes}/991", json={"id": 991, "body": "..."})
    summary.write_text("## tfgov-ci policy: **allowed**\n")
    second = cli("gitlab", "note", "--summary", str(summary), cwd=gitlab_env)
    assert second.code == 0, second.err
    assert "updated the policy summary as note 991" in second.out
    assert [c.request.method for c in responses.calls] == ["GET", "POST", "GET", "PUT"]
    assert "**allowed**" in json.loads(responses.calls[3].request.body)["body"]


def test_gitlab_commands_say_what_is_missing(tmp_path: Path, cli: Callable[..., CliResult]) -> None:
    result = cli("gitlab", "lint", cwd=tmp_path)
    assert result.code == 2 and "no GitLab server or project" in result.err


JENKINS = "http://jenkins.example.com"
JOB = f"{JENKINS}/job/tf-mnist/"
BUILD = f"{JOB}12/"
CONSOLE = "Started by user ci-bot\n+ tfgov-ci run build\nFinished: {result}\n"


def fake_jenkins(result: str) -> tuple[Callable[..., tuple[int, dict[str, str], str]], list[str]]:
    """Jenkins' side of one parameterised build, as its API answers (api/python is JSON here)."""
    posted: list[str] = []

    def answer(request: object) -> tuple[int, dict[str, str], str]:
        url = urlparse(request.url)  # type: ignore[attr-defined]
        path = url.path
        if path == "/api/python":
            return 200, {}, json.dumps({"jobs": [{"name": "tf-mnist", "color": "blue", "url": JOB}]})
        if path == "/job/tf-mnist/api/python":
            built = [{"number": 12, "url": BUILD}] if posted else []
            return (
                200,
                {},
                json.dumps(
                    {
                        "name": "tf-mnist",
                        "url": JOB,
                        "color": "blue",
                        "builds": built,
                        "lastBuild": built[0] if built else None,
                        "nextBuildNumber": 13 if posted else 12,
                        "property": [
                            {
                                "parameterDefinitions": [
                                    {"name": "REF", "defaultParameterValue": {"value": "main"}}
                                ]
                            }
                        ],
                        "actions": [{"parameterDefinitions": [{"name": "REF"}]}],
                        "queueItem": None,
                        "inQueue": False,
                    }
                ),
            )
        if path == "/job/tf-mnist/buildWithParameters":
            posted.append(request.body)  # type: ignore[attr-defined]
            return 201, {"Location": f"{JENKINS}/queue/item/5/"}, ""
        if path == "/queue/item/5/api/python":
            return (
                200,
                {},
                json.dumps(
                    {
                        "id": 5,
                        "task": {"name": "tf-mnist", "url": JOB},
                        "executable": {"number": 12, "url": BUILD},
                        "actions": [],
                    }
                ),
            )
        if path == "/job/tf-mnist/12/api/python":
            return (
                200,
                {},
                json.dumps(
                    {
                        "number": 12,
                        "url": BUILD,
                        "building": False,
                        "result": result,
                        "actions": [],
                        "timestamp": 0,
                        "duration": 1000,
                        "changeSet": {"items": []},
                    }
                ),
            )
        if path == "/job/tf-mnist/12/logText/progressiveText":
            text = CONSOLE.format(result=result)
            assert parse_qs(url.query) == {"start": ["0"]}
            return 200, {"X-Text-Size": str(len(text))}, text
        return 404, {}, ""

    return answer, posted


@pytest.mark.parametrize(("result", "code"), [("SUCCESS", 0), ("FAILURE", 1)])
def test_jenkins_run_triggers_the_job_streams_its_console_and_exits_by_its_result(
    result: str, code: int, cli: Callable[..., CliResult], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("JENKINS_URL", JENKINS)
    monkeypatch.setenv("TFGOV_JENKINS_USER", "ci-bot")
    monkeypatch.setenv("TFGOV_JENKINS_TOKEN", "11aa-jenkins-api-token")
    answer, posted = fake_jenkins(result)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        for method in (responses.GET, responses.POST):
            mock.add_callback(method, re.compile(f"{JENKINS}/.*"), callback=answer)
        outcome = cli("jenkins", "run", "tf-mnist", "--param", "REF=main", cwd=tmp_path)
        authorised = [c.request.headers.get("Authorization", "") for c in mock.calls]
    assert outcome.code == code, outcome.err
    assert posted and "REF=main" in str(posted[0])
    assert all(a.startswith("Basic ") for a in authorised)
    assert f"tfgov-ci: tf-mnist #12 started: {JENKINS}/job/tf-mnist/12" in outcome.out
    assert CONSOLE.format(result=result) in outcome.out
    if code:
        assert "tf-mnist #12 finished FAILURE" in outcome.err
    assert "11aa-jenkins-api-token" not in outcome.out + outcome.err
