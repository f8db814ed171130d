"""The Jenkins shared library: ``templates/jenkins/`` (configure that folder as the library path).

``tfgovPipeline(config: 'tfgov.yaml')`` runs the pipeline's stages as Jenkins stages;
``tfgovStage('scan')`` runs one. Settings merge over documented defaults and an unknown key is an
``error``. Values reach the shell through the environment (``withEnv``, ``withCredentials``), never
through Groovy string interpolation, so no secret and no quoting surprise ends up in an ``sh``
string. Reports are archived and the policy JUnit published in a ``finally``.
"""

from __future__ import annotations

import json

from tfgov_ci import __version__
from tfgov_ci.emit import HEADER, HEADER2, closure
from tfgov_ci.pipeline import STAGES, PipelineDef, StageSpec


def secret_setting(variable: str) -> str:
    """The setting naming the secret-text credential of a stage's secret: COSIGN_PASSWORD ->
    cosignPasswordCredentialsId."""
    head, *rest = variable.lower().split("_")
    return head + "".join(part.capitalize() for part in rest) + "CredentialsId"


def credentials(spec: StageSpec) -> dict[str, str]:
    """The variables a stage's credentials fill: its secrets and, for keyless signing, the OIDC id
    token (Jenkins' oidc-provider plugin makes one as a credential that binds as a string)."""
    token = {spec.id_token: "the CI's OIDC id token, for keyless signing"} if spec.id_token else {}
    return {**spec.secrets, **token}


def soft_failure_setting(stage: str) -> str:
    """The setting that lets a stage fail softly (the stage table's ``soft_failure``)."""
    return f"allow{stage.capitalize()}Failure"


DEFAULTS = {
    "config": ("tfgov.yaml", "the tfgov.yaml to use, relative to the workspace"),
    "out": (".tfgov/out", "the out directory for stage results (archived)"),
    "stages": (None, "the stages to run, in pipeline order (default: all of the pipeline's)"),
    "command": ("tfgov-ci", "the tfgov-ci command on the agent"),
    "toolsImage": (
        None,
        "the CI tools image the stages run in (Docker Pipeline's docker.image(...).inside), e.g. "
        "'harbor.example.com/platform/tfgov-ci@sha256:...' (make tools-image publishes it); "
        "null: on the agent as it is",
    ),
    "registryCredentialsId": (None, "a username/password credential for the registry (publish, sbom)"),
    **{
        secret_setting(variable): (
            None,
            f"a secret-text credential for {variable}, {what} "
            f"({', '.join(n for n, s in STAGES.items() if variable in credentials(s))} stages)",
        )
        for spec in STAGES.values()
        for variable, what in credentials(spec).items()
    },
    **{
        soft_failure_setting(name): (
            False,
            f"mark the build unstable instead of failing when the {name} stage fails",
        )
        for name, spec in STAGES.items()
        if spec.soft_failure
    },
}
COMMAND = '"$TFGOV_COMMAND" --config "$TFGOV_CONFIG" --out "$TFGOV_OUT" run "$TFGOV_STAGE"'
# Stages that talk to the registry get its credentials, as environment variables (the table says which).
REGISTRY_STAGES = tuple(name for name, spec in STAGES.items() if spec.uses_registry)


def groovy(value: object) -> str:
    """A Groovy literal of a JSON-like value (strings single-quoted: no interpolation)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(groovy(v) for v in value) + "]"
    if isinstance(value, dict):
        if not value:
            return "[:]"
        return "[" + ", ".join(f"{groovy(k)}: {groovy(v)}" for k, v in value.items()) + "]"
    return json.dumps(value)


def _header(pipeline_def: PipelineDef) -> str:
    source = f"pipelines/{pipeline_def.file.name}"
    return f"// {HEADER.format(target='jenkins', pipeline=source)}\n// {HEADER2.format(target='jenkins')}\n"


def _stage_script(pipeline_def: PipelineDef) -> str:
    defaults: dict[str, object] = {key: value for key, (value, _) in DEFAULTS.items()}
    defaults["stages"] = list(pipeline_def.stages)
    needs = {stage: closure(stage, pipeline_def) for stage in pipeline_def.stages}
    reports = {stage: dict(STAGES[stage].reports) for stage in pipeline_def.stages if STAGES[stage].reports}
    # stage -> the setting that lets it fail softly
    soft = {stage: soft_failure_setting(stage) for stage in pipeline_def.stages if STAGES[stage].soft_failure}
    # stage -> {variable: the setting naming its credential}
    secrets = {
        stage: {variable: secret_setting(variable) for variable in credentials(STAGES[stage])}
        for stage in pipeline_def.stages
        if credentials(STAGES[stage])
    }
    return (
        _header(pipeline_def)
        + f"""import groovy.transform.Field

@Field static final String VERSION = {groovy(__version__)}
@Field static final List STAGES = {groovy(list(pipeline_def.stages))}
@Field static final Map NEEDS = {groovy(needs)}
@Field static final Map REPORTS = {groovy(reports)}
@Field static final Map DEFAULTS = {groovy(defaults)}
@Field static final List REGISTRY_STAGES = {groovy([s for s in REGISTRY_STAGES if s in pipeline_def.stages])}
@Field static final Map SOFT_FAILURE = {groovy(soft)}
@Field static final Map SECRETS = {groovy(secrets)}
// The one shell line: a constant; the values come from the environment.
@Field static final String COMMAND = {groovy(COMMAND)}

/** Settings over the defaults; an unknown key or stage is an error, never ignored. */
Map settings(Map args) {{
    def unknown = (args.keySet() as List) - (DEFAULTS.keySet() as List)
    if (unknown) {{
        error("tfgov: unknown setting(s) ${{unknown.join(', ')}}; known: ${{DEFAULTS.keySet().join(', ')}}")
    }}
    Map merged = [:] + DEFAULTS + args
    def badStages = (merged.stages as List) - STAGES
    if (badStages) {{
        error("tfgov: unknown stage(s) ${{badStages.join(', ')}}; stages: ${{STAGES.join(', ')}}")
    }}
    return merged
}}

/** Run one stage: `tfgovStage('scan')` or `tfgovStage('publish', registryCredentialsId: 'harbor')`. */
def call(Map args, String name) {{
    if (!(name in STAGES)) {{
        error("tfgov: unknown stage '${{name}}'; stages: ${{STAGES.join(', ')}}")
    }}
    Map cfg = settings(args)
    // Values reach the shell as environment variables: the sh string below is a constant.
    withEnv(["TFGOV_CONFIG=${{cfg.config}}", "TFGOV_OUT=${{cfg.out}}", "TFGOV_COMMAND=${{cfg.command}}",
             "TFGOV_STAGE=${{name}}", 'SYFT_CHECK_FOR_APP_UPDATE=false']) {{
        List bindings = []
        if (cfg.registryCredentialsId && name in REGISTRY_STAGES) {{
            bindings << usernamePassword(credentialsId: cfg.registryCredentialsId,
                    usernameVariable: 'TFGOV_REGISTRY_USER', passwordVariable: 'TFGOV_REGISTRY_PASSWORD')
        }}
        (SECRETS[name] ?: [:]).each {{ String variable, String setting ->
            if (cfg[setting]) {{
                bindings << string(credentialsId: cfg[setting], variable: variable)
            }}
        }}
        if (bindings) {{
            withCredentials(bindings) {{
                sh(script: COMMAND, label: "tfgov ${{name}}")
            }}
        }} else {{
            sh(script: COMMAND, label: "tfgov ${{name}}")
        }}
    }}
}}

def call(String name) {{
    call([:], name)
}}
"""
    )


def _pipeline_script(pipeline_def: PipelineDef) -> str:
    return (
        _header(pipeline_def)
        + """/**
 * The governed pipeline as Jenkins stages, inside the caller's node:
 *   node { checkout scm; tfgovPipeline(config: 'tfgov.yaml', registryCredentialsId: 'harbor') }
 * With toolsImage set, inside that image (the CI tools image), as the GitLab jobs run in it.
 */
def call(Map args = [:]) {
    Map cfg = tfgovStage.settings(args)
    if (cfg.toolsImage) {
        docker.image(cfg.toolsImage).inside {
            runStages(cfg)
        }
    } else {
        runStages(cfg)
    }
}

def runStages(Map cfg) {
    try {
        for (String name in tfgovStage.STAGES) {
            if (!(name in cfg.stages)) {
                continue
            }
            stage("tfgov: ${name}") {
                if (tfgovStage.SOFT_FAILURE[name] && cfg[tfgovStage.SOFT_FAILURE[name]]) {
                    catchError(buildResult: 'UNSTABLE', stageResult: 'FAILURE') {
                        tfgovStage(cfg, name)
                    }
                } else {
                    tfgovStage(cfg, name)
                }
            }
        }
    } finally {
        // Results and evidence; the image went to the registry by digest (the build pushed it).
        archiveArtifacts(artifacts: "${cfg.out}/**", excludes: "${cfg.out}/**/build/oci/**",
                         allowEmptyArchive: true, fingerprint: true)
        for (Map.Entry reports in tfgovStage.REPORTS) {
            if (reports.value.junit && reports.key in cfg.stages) {
                junit(testResults: "${cfg.out}/${reports.value.junit}", allowEmptyResults: true)
            }
        }
    }
}
"""
    )


def _help(pipeline_def: PipelineDef, which: str) -> str:
    rows = []
    for key, (value, text) in DEFAULTS.items():
        shown = groovy(list(pipeline_def.stages) if key == "stages" else value)
        rows.append(f"  {key}: {shown}\n      {text}")
    if which == "tfgovPipeline":
        usage = [
            "tfgovPipeline(Map settings): run the tfgov-ci pipeline as Jenkins stages, inside a node:",
            "",
            "  node {",
            "    checkout scm",
            "    tfgovPipeline(config: 'tfgov.yaml', registryCredentialsId: 'harbor')",
            "  }",
            "",
            "Reports under the out directory are archived, and the policy JUnit published, whatever",
            "the result. An unknown setting or stage is an error.",
        ]
    else:
        usage = [
            "tfgovStage(Map settings = [:], String stage): run one tfgov-ci stage, reading the earlier",
            "stages' results from the out directory:",
            "",
            "  tfgovStage('scan')",
            "  tfgovStage('publish', registryCredentialsId: 'harbor')",
            "",
            f"Stages: {', '.join(pipeline_def.stages)}.",
            "Registry credentials reach "
            f"{', '.join(s for s in REGISTRY_STAGES if s in pipeline_def.stages)} as TFGOV_REGISTRY_USER and",
            "TFGOV_REGISTRY_PASSWORD through withCredentials, never through the sh string.",
        ]
    return "\n".join([*usage, "", "Settings (defaults):", *rows, "", f"tfgov-ci {__version__}"]) + "\n"


def render(pipeline_def: PipelineDef) -> dict[str, str]:
    return {
        "vars/tfgovStage.groovy": _stage_script(pipeline_def),
        "vars/tfgovStage.txt": _help(pipeline_def, "tfgovStage"),
        "vars/tfgovPipeline.groovy": _pipeline_script(pipeline_def),
        "vars/tfgovPipeline.txt": _help(pipeline_def, "tfgovPipeline"),
    }
