"""GitLab's API through python-gitlab: lint the project's CI configuration, post the policy
summary to the merge request.

Where things come from: the server URL from ``--url`` or ``CI_SERVER_URL``; the project from
``--project`` or ``CI_PROJECT_ID``; the merge request from ``--mr`` or ``CI_MERGE_REQUEST_IID``; the
token from ``TFGOV_GITLAB_TOKEN`` (a project or personal access token), else the job's
``CI_JOB_TOKEN``. Never from the command line, never in output.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tfgov_ci._files import load_yaml
from tfgov_ci.errors import ConfigError, GateFailed, Problem, ToolError, UsageError

TEMPLATE_NAMES = ("tfgov.yml", "template.yml")


@dataclass(frozen=True)
class Server:
    url: str
    project: str
    token: str
    token_kind: str  # private or job

    @classmethod
    def from_env(cls, env: Mapping[str, str], url: str | None, project: str | None) -> Server:
        url = url or env.get("CI_SERVER_URL")
        project = project or env.get("CI_PROJECT_ID")
        if not url or not project:
            raise UsageError(
                "no GitLab server or project",
                "pass --url and --project, or run in a GitLab job (CI_SERVER_URL, CI_PROJECT_ID)",
            )
        if env.get("TFGOV_GITLAB_TOKEN"):
            return cls(url, project, env["TFGOV_GITLAB_TOKEN"], "private")
        if env.get("CI_JOB_TOKEN"):
            return cls(url, project, env["CI_JOB_TOKEN"], "job")
        raise UsageError(
            "no GitLab token", "set TFGOV_GITLAB_TOKEN (a masked CI/CD variable), or run in a job"
        )

    def project_api(self) -> Any:
        import gitlab

        if self.token_kind == "private":
            client = gitlab.Gitlab(self.url, private_token=self.token)
        else:
            client = gitlab.Gitlab(self.url, job_token=self.token)
        return client.projects.get(self.project, lazy=True)


def _explain(exc: Exception, what: str) -> ToolError:
    import gitlab

    code = getattr(exc, "response_code", None)
    hint = {
        401: "the token was refused: check TFGOV_GITLAB_TOKEN",
        403: "the token lacks the api scope or the project role",
        404: "no such project or merge request (or the token cannot see it)",
    }.get(code or 0)
    message = exc.error_message if isinstance(exc, gitlab.GitlabError) else str(exc)
    return ToolError(f"GitLab refused to {what}: {message}", hint, returncode=code)


def check_inputs(ci_file: Path, template: Mapping[str, Any]) -> list[Problem]:
    """Offline, what GitLab itself would refuse (gitlab-ci-local accepts it silently): an input the
    tfgov template does not declare, or one of the wrong type, in each include of it."""
    doc = load_yaml(ci_file)
    spec = template["spec"]["inputs"]
    includes = doc.data.get("include") or []
    if isinstance(includes, dict | str):
        includes = [includes]
    problems = []
    for index, include in enumerate(includes):
        if not isinstance(include, dict):
            continue
        target = str(include.get("file") or include.get("local") or include.get("component") or "")
        if not any(target.endswith(name) or "/gitlab@" in target for name in TEMPLATE_NAMES):
            continue
        for name, value in (include.get("inputs") or {}).items():
            at = ("include", index, "inputs", name)
            line = doc.line_of(at)
            if name not in spec:
                problems.append(
                    Problem(
                        doc.file,
                        f"include[{index}].inputs.{name}",
                        "the tfgov template has no such input",
                        f"inputs are: {', '.join(spec)}",
                        line,
                    )
                )
                continue
            wanted = spec[name].get("type", "string")
            kinds = {"string": str, "boolean": bool, "number": int | float, "array": list}
            if not isinstance(value, kinds[wanted]) or (wanted == "number" and isinstance(value, bool)):
                problems.append(
                    Problem(
                        doc.file,
                        f"include[{index}].inputs.{name}",
                        f"must be a {wanted}",
                        f"default: {spec[name].get('default')!r}",
                        line,
                    )
                )
    return problems


def packaged_template() -> dict[str, Any]:
    """The spec of the template this tfgov-ci emits (what `include: project: ... tfgov.yml` gets)."""
    from tfgov_ci.emit import default_pipeline, render

    text = render("gitlab", default_pipeline())["tfgov.yml"]
    spec: dict[str, Any] = next(yaml.safe_load_all(text))
    return spec


def lint(server: Server, ci_file: Path, ref: str | None = None) -> dict[str, Any]:
    """GitLab's CI lint on the project's configuration, expanded by GitLab (includes, inputs)."""
    import gitlab

    problems = check_inputs(ci_file, packaged_template())
    if problems:
        raise ConfigError(problems)
    content = ci_file.read_text(encoding="utf-8")
    data: dict[str, Any] = {"content": content, "dry_run": True}
    if ref:
        data["ref"] = ref
    try:
        result = server.project_api().ci_lint.create(data)
    except gitlab.GitlabError as exc:
        raise _explain(exc, "lint the CI configuration") from None
    attributes: dict[str, Any] = result.attributes
    if not attributes.get("valid"):
        errors = "; ".join(attributes.get("errors") or ["(no reason given)"])
        raise GateFailed(f"GitLab says {ci_file.name} is invalid: {errors}", "fix it; lint again")
    return attributes


def summary_path(config_file: Path, out_dir: Path | None = None) -> Path:
    """The policy summary that :func:`note` posts, where the policy stage writes it:
    ``<out>/policy/summary.md``, ``<out>`` being ``out_dir`` or the default beside ``config_file``."""
    from tfgov_ci.pipeline import result_path
    from tfgov_ci.project import DEFAULT_OUT
    from tfgov_ci.stages.policy.gate import OUTPUTS

    out = out_dir if out_dir is not None else config_file.parent / DEFAULT_OUT
    return result_path(out, "policy").parent / OUTPUTS["summary"]


NOTE_MARKER = "<!-- tfgov-ci policy summary -->"


def note(server: Server, mr: str | None, body: str, env: Mapping[str, str]) -> tuple[dict[str, Any], bool]:
    """The policy summary on the merge request: the note tfgov-ci posted before is updated (one
    note a merge request, however many pipelines), else a new one is posted. (note, updated?)"""
    import gitlab

    iid = mr or env.get("CI_MERGE_REQUEST_IID")
    if not iid:
        raise UsageError("no merge request", "pass --mr IID, or run in a merge request pipeline")
    text = f"{NOTE_MARKER}\n{body}"
    try:
        notes = server.project_api().mergerequests.get(iid, lazy=True).notes
        earlier = next((n for n in notes.list(iterator=True) if NOTE_MARKER in (n.body or "")), None)
        if earlier is not None:
            earlier.body = text
            earlier.save()
            saved: dict[str, Any] = earlier.attributes
            return saved, True
        created = notes.create({"body": text})
    except gitlab.GitlabError as exc:
        raise _explain(exc, f"post a note on merge request !{iid}") from None
    attributes: dict[str, Any] = created.attributes
    return attributes, False
