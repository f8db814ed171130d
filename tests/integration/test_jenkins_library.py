"""The emitted Jenkins shared library: compiled with groovyc (Debian's Groovy 2.4, Jenkins' own),
then run in this project's step-recording harness (tests/jenkins/Harness.groovy) with Jenkins'
steps stubbed: the exact tfgov-ci calls, their order, credentials only through the environment,
unknown settings refused, reports archived whatever happens."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import ROOT, require_tools

LIBRARY = ROOT / "templates" / "jenkins"
HARNESS = ROOT / "tests" / "jenkins" / "Harness.groovy"
SECRET = "s3cret-Pa55-for-harbor"


def harness(tmp_path: Path, jenkinsfile: str, *extra: str) -> dict[str, Any]:
    require_tools("groovy")
    script = tmp_path / "Jenkinsfile.groovy"
    script.write_text(jenkinsfile)
    done = subprocess.run(
        ["groovy", str(HARNESS), str(LIBRARY), str(script), "--secret", f"harbor=ci-bot:{SECRET}", *extra],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def calls(result: dict[str, Any], step: str) -> list[dict[str, Any]]:
    return [c for c in result["calls"] if c["step"] == step]


def test_the_library_compiles_with_groovyc(tmp_path: Path) -> None:
    require_tools("groovyc")
    sources = sorted(str(p) for p in (LIBRARY / "vars").glob("*.groovy"))
    assert len(sources) == 2
    done = subprocess.run(
        ["groovyc", "-d", str(tmp_path), *sources], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "tfgovPipeline.class").is_file() and (tmp_path / "tfgovStage.class").is_file()
    for var in ("tfgovPipeline", "tfgovStage"):
        assert (LIBRARY / "vars" / f"{var}.txt").is_file()  # each var has its help


def test_the_pipeline_runs_each_stage_in_order_with_credentials_only_in_the_environment(
    tmp_path: Path,
) -> None:
    result = harness(
        tmp_path,
        "node {\n  checkout scm\n"
        "  tfgovPipeline(config: 'models/tfgov.yaml', registryCredentialsId: 'harbor',\n"
        "                stages: ['validate', 'lock', 'build', 'sbom', 'scan', 'policy', 'publish'])\n}\n",
    )
    assert result["error"] is None and result["violations"] == []
    stages = [c["name"] for c in calls(result, "stage")]
    assert stages == [
        f"tfgov: {s}" for s in ("validate", "lock", "build", "sbom", "scan", "policy", "publish")
    ]
    commands = [c["expanded"] for c in calls(result, "sh")]
    assert commands == [
        f'"tfgov-ci" --config "models/tfgov.yaml" --out ".tfgov/out" run "{s}"'
        for s in ("validate", "lock", "build", "sbom", "scan", "policy", "publish")
    ]
    for call in calls(result, "sh"):
        assert SECRET not in call["script"]
        # validate reads no registry; scan and policy read the image the build pushed
        registry = not call["expanded"].endswith('"validate"')
        assert (call["env"].get("TFGOV_REGISTRY_PASSWORD") == SECRET) == registry  # only where needed
    assert calls(result, "withCredentials")[0]["ids"] == ["harbor"]
    assert calls(result, "archiveArtifacts") == [
        {
            "step": "archiveArtifacts",
            "artifacts": ".tfgov/out/**",
            "excludes": ".tfgov/out/**/build/oci/**",  # the image went to the registry
            "allowEmptyArchive": "true",
            "fingerprint": "true",
        }
    ]
    assert [c["testResults"] for c in calls(result, "junit")] == [".tfgov/out/policy/junit.xml"]


def test_a_failing_gate_still_archives_and_publishes_the_junit(tmp_path: Path) -> None:
    result = harness(
        tmp_path, "tfgovPipeline(stages: ['validate', 'policy', 'publish'])\n", "--fail", "policy"
    )
    assert result["error"] == "script returned exit code 1 (tfgov policy)"
    assert [c["name"] for c in calls(result, "stage")] == [
        "tfgov: validate",
        "tfgov: policy",
    ]  # publish never ran
    assert calls(result, "archiveArtifacts") and calls(result, "junit")  # in the finally


def test_a_scan_failure_can_be_allowed_and_marks_the_build_unstable(tmp_path: Path) -> None:
    result = harness(
        tmp_path, "tfgovPipeline(stages: ['scan', 'policy'], allowScanFailure: true)\n", "--fail", "scan"
    )
    assert result["error"] is None
    caught = calls(result, "caught")
    assert caught == [
        {"step": "caught", "message": "script returned exit code 1 (tfgov scan)", "result": "UNSTABLE"}
    ]
    assert [c["name"] for c in calls(result, "stage")] == ["tfgov: scan", "tfgov: policy"]


def test_one_stage_with_tfgov_stage(tmp_path: Path) -> None:
    result = harness(tmp_path, "tfgovStage('publish', registryCredentialsId: 'harbor')\ntfgovStage('scan')\n")
    assert [c["expanded"].rsplit(" ", 1)[-1] for c in calls(result, "sh")] == ['"publish"', '"scan"']
    assert len(calls(result, "withCredentials")) == 1


@pytest.mark.parametrize(
    ("jenkinsfile", "message"),
    [
        (
            "tfgovPipeline(confg: 'tfgov.yaml')\n",
            "tfgov: unknown setting(s) confg; known: config, out, stages",
        ),
        ("tfgovPipeline(stages: ['build', 'deploy'])\n", "tfgov: unknown stage(s) deploy; stages: validate"),
        ("tfgovStage('scna')\n", "tfgov: unknown stage 'scna'; stages: validate"),
    ],
)
def test_a_misspelled_key_or_stage_is_an_error(tmp_path: Path, jenkinsfile: str, message: str) -> None:
    result = harness(tmp_path, jenkinsfile)
    assert result["error"] is not None and result["error"].startswith(message)
    assert calls(result, "sh") == []


def test_the_harness_flags_a_jenkinsfile_that_interpolates_a_secret(tmp_path: Path) -> None:
    """The check the library passes is real: a Jenkinsfile doing what the library never does."""
    result = harness(
        tmp_path,
        "withCredentials([usernamePassword(credentialsId: 'harbor', usernameVariable: 'U', "
        "passwordVariable: 'P')]) {\n  sh \"skopeo login -u ${U} -p ${P} harbor.example.com\"\n}\n",
    )
    assert result["violations"] == ["sh: the secret of credential 'harbor' is in the sh string itself"]


def test_the_sign_stage_gets_its_key_and_password_from_secret_text_credentials(tmp_path: Path) -> None:
    key = "-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----"
    result = harness(
        tmp_path,
        "node {\n  tfgovStage('sign', cosignPrivateKeyCredentialsId: 'cosign-key',\n"
        "             cosignPasswordCredentialsId: 'cosign-password')\n  tfgovStage('scan')\n}\n",
        "--secret",
        f"cosign-key=unused:{key}",
        "--secret",
        "cosign-password=unused:pw-for-the-key",
    )
    assert result["error"] is None and result["violations"] == []
    sign, scan = calls(result, "sh")
    assert sign["expanded"].endswith('run "sign"') and scan["expanded"].endswith('run "scan"')
    assert sign["env"]["COSIGN_PRIVATE_KEY"] == key and sign["env"]["COSIGN_PASSWORD"] == "pw-for-the-key"
    assert "COSIGN_PASSWORD" not in scan["env"]  # only the stage that reads it
    assert "pw-for-the-key" not in sign["script"] and key not in sign["script"]  # never in the sh string
    assert calls(result, "withCredentials")[0]["ids"] == ["cosign-key", "cosign-password"]


def test_with_tools_image_every_stage_runs_inside_the_ci_tools_image(tmp_path: Path) -> None:
    """toolsImage: Docker Pipeline's docker.image(...).inside around the stages (the harness stands
    in for the plugin, as for every Jenkins step: no Jenkins can run here)."""
    image = "harbor.example.com/platform/tfgov-ci@sha256:" + "a" * 64
    result = harness(tmp_path, f"node {{\n  tfgovPipeline(toolsImage: '{image}', stages: ['validate'])\n}}\n")
    assert result["error"] is None
    steps = [c["step"] for c in result["calls"]]
    assert steps.index("docker.inside") < steps.index("stage") < steps.index("sh")
    assert calls(result, "docker.inside") == [{"step": "docker.inside", "image": image}]
    plain = harness(tmp_path, "node {\n  tfgovPipeline(stages: ['validate'])\n}\n")
    assert calls(plain, "docker.inside") == [] and calls(plain, "sh")
