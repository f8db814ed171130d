"""The GitLab CI template: ``templates/gitlab/tfgov.yml``, also usable as a CI/CD component
(``templates/gitlab/template.yml``, the same text).

One hidden job per stage (``.tfgov-build``: a team extends it to change one stage) and one job
that uses it (``tfgov-build``), with ``needs`` from the stage table (the stages whose results it
reads, so a failing ``sign`` does not hold back a ``publish`` that does not need it), the out
directory passed along as artifacts, and the stage's reports as GitLab reports. Every job runs
once per configuration file (``parallel: matrix`` over the ``config-files`` input: image variants
such as cpu and gpu), each with its own out directory.
"""

from __future__ import annotations

from typing import Any

import yaml

from tfgov_ci import __version__
from tfgov_ci.emit import HEADER, HEADER2, closure
from tfgov_ci.pipeline import STAGES, PipelineDef

FILES = ("tfgov.yml", "template.yml")
OUT = ".tfgov/out/$TFGOV_CONFIG"  # one out directory per configuration (matrix) file
CACHE = ".tfgov/cache"  # TFGOV_CACHE_DIR, under the project folder


def artifacts() -> dict[str, Any]:
    """What a job hands the next: results and evidence. The image goes through the registry (the
    build pushes it by digest), so its layout, base and dependency layers included, is never one."""
    return {
        "when": "always",
        "expire_in": "30 days",
        "paths": [".tfgov/out/"],
        "exclude": [".tfgov/out/**/build/oci/**"],
    }


def _secrets(pipeline_def: PipelineDef) -> dict[str, tuple[str, list[str]]]:
    """Each secret the pipeline's stages read: variable -> (what it is, the jobs that read it)."""
    out: dict[str, tuple[str, list[str]]] = {}
    for name in pipeline_def.stages:
        for variable, what in STAGES[name].secrets.items():
            out.setdefault(variable, (what, []))[1].append(job(name))
    return out


def soft_failure_input(stage: str) -> str:
    """The input that lets a stage's job fail softly (the stage table's ``soft_failure``)."""
    return f"{stage}-allow-failure"


def job(stage: str) -> str:
    return f"tfgov-{stage}"


def command(stage: str) -> str:
    """The shell line a job runs (also what `tfgov-ci plan --as gitlab` shows)."""
    return f'tfgov-ci --config "$TFGOV_CONFIG" --out "{OUT}" run {stage}'


def inputs(pipeline_def: PipelineDef) -> dict[str, Any]:
    return {
        "config-files": {
            "type": "array",
            "default": ["tfgov.yaml"],
            "description": "tfgov.yaml files, one pipeline each (parallel: matrix): one per image variant, "
            "e.g. [tfgov-cpu.yaml, tfgov-gpu.yaml]. Paths relative to the repository root, without '/'.",
        },
        "tools-image": {
            "type": "string",
            "default": f"registry.example.com/platform/tfgov-ci:{__version__}",
            "description": "The image the jobs run in: the tfgov-ci tools image (tfgov-ci, syft, trivy, "
            "uv, skopeo, cosign, git, CA certificates, a shell), built and governed by the tfgov-ci "
            "project (`make tools-image TOOLS_REGISTRY=...`) and published as "
            "<registry>/platform/tfgov-ci:<version>. Mirror it into your registry; pin it by digest "
            "(...tfgov-ci@sha256:...).",
        },
        "stages": {
            "type": "string",
            "default": " ".join(pipeline_def.stages),
            "description": "The tfgov-ci stages to run, separated by spaces; jobs of the others are left "
            "out (a stage left out cannot be needed by one that runs).",
        },
        **{
            soft_failure_input(name): {
                "type": "boolean",
                "default": False,
                "description": f"Let the pipeline go on when the {name} job fails ({spec.soft_failure}).",
            }
            for name, spec in STAGES.items()
            if spec.soft_failure and name in pipeline_def.stages
        },
        **(
            {
                "sigstore-audience": {
                    "type": "string",
                    "default": "sigstore",
                    "description": "The audience of the OIDC token the signing jobs get (id_tokens, "
                    "SIGSTORE_ID_TOKEN) for keyless signing: sigstore for the public Fulcio, or your "
                    "own Fulcio's. Unused when signing with a key.",
                }
            }
            if any(STAGES[name].id_token for name in pipeline_def.stages)
            else {}
        ),
        "gitlab-stage": {
            "type": "string",
            "default": "build",
            "description": "The GitLab stage every tfgov job runs in; their order comes from needs.",
        },
    }


def jobs(pipeline_def: PipelineDef) -> dict[str, Any]:
    out: dict[str, Any] = {
        ".tfgov-defaults": {
            "image": "$[[ inputs.tools-image ]]",
            "stage": "$[[ inputs.gitlab-stage ]]",
            "variables": {
                "TFGOV_STAGES": " $[[ inputs.stages ]] ",  # spaces around: the rules match " stage "
                "SYFT_CHECK_FOR_APP_UPDATE": "false",
            },
            "parallel": {"matrix": [{"TFGOV_CONFIG": "$[[ inputs.config-files ]]"}]},
            "before_script": ["tfgov-ci --version"],
            "artifacts": artifacts(),
        }
    }
    for stage in pipeline_def.stages:
        spec = STAGES[stage]
        hidden: dict[str, Any] = {
            "extends": ".tfgov-defaults",
            "rules": [
                {"if": '$TFGOV_DISABLED == "true"', "when": "never"},
                {"if": f"$TFGOV_STAGES =~ / {stage} /"},
            ],
            "script": [command(stage)],
        }
        if spec.reports:
            hidden["artifacts"] = {
                **artifacts(),
                "reports": {kind: f"{OUT}/{path}" for kind, path in spec.reports.items()},
            }
        if spec.keeps:
            # tfgov-ci's cache in the project folder, where GitLab's cache can keep the stage's
            # folders: content-keyed (a layer's diff id, a lock's inputs), so one cache for every
            # branch and file; GitLab keeps protected branches' caches apart (its default), so a
            # merge request's pipeline writes nothing that main's reads (the kept locks are trusted).
            # trivy keeps its own where TRIVY_CACHE_DIR says.
            hidden["variables"] = {"TFGOV_CACHE_DIR": f"$CI_PROJECT_DIR/{CACHE}"}
            if "trivy" in spec.keeps:
                hidden["variables"]["TRIVY_CACHE_DIR"] = f"$CI_PROJECT_DIR/{CACHE}/trivy"
            hidden["cache"] = {
                "key": f"tfgov-{stage}",
                "paths": [f"{CACHE}/{folder}/" for folder in spec.keeps],
            }
        if spec.id_token:  # keyless signing: cosign reads the job's OIDC token there
            hidden["id_tokens"] = {spec.id_token: {"aud": "$[[ inputs.sigstore-audience ]]"}}
        if spec.soft_failure:
            hidden["allow_failure"] = f"$[[ inputs.{soft_failure_input(stage)} ]]"
        out[f".{job(stage)}"] = hidden
        out[job(stage)] = {
            "extends": f".{job(stage)}",
            "needs": [{"job": job(need), "optional": True} for need in closure(stage, pipeline_def)],
        }
    return out


def _dump(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False, width=110, allow_unicode=True)


def render(pipeline_def: PipelineDef) -> dict[str, str]:
    source = f"pipelines/{pipeline_def.file.name}"
    header = "\n".join(
        [
            f"# {HEADER.format(target='gitlab', pipeline=source)}",
            f"# {HEADER2.format(target='gitlab')}",
            "#",
            "# include:",
            "#   - project: platform/tfgov-ci",
            f"#     ref: v{__version__}",
            "#     file: /templates/gitlab/tfgov.yml",
            "#     inputs: {config-files: [tfgov.yaml]}",
            "#",
            "# Registry credentials: CI_REGISTRY_USER / CI_REGISTRY_PASSWORD for GitLab's registry, or",
            "# TFGOV_REGISTRY_USER / TFGOV_REGISTRY_PASSWORD (masked project variables) for another;",
            "# tfgov-ci reads them from the environment, never from this file. The stages' secrets, as",
            "# protected project variables (masked where single-line):",
            *(
                f"#   {variable} ({', '.join(jobs)}): {what}"
                for variable, (what, jobs) in _secrets(pipeline_def).items()
            ),
            "# TFGOV_DISABLED=true",
            "# leaves every tfgov job out. Deploy jobs read TFGOV_IMAGE and TFGOV_IMAGE_DIGEST from the",
            "# publish job's dotenv report (needs: [tfgov-publish]).",
            "",
        ]
    )
    text = header + _dump({"spec": {"inputs": inputs(pipeline_def)}}) + "---\n" + _dump(jobs(pipeline_def))
    return dict.fromkeys(FILES, text)
