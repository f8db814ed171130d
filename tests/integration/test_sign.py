"""The sign stage with the real cosign 3, against the real local registry, offline (no Rekor, no
Fulcio): signed by digest, attested, and accepted by cosign's own verify commands."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import CliResult, git, plan_is_what_ran, require_tool
from tests.integration.test_native_build import build, govern, model  # noqa: F401 (model: a fixture)
from tests.refusing_proxy import RefusingProxy
from tests.services import BuiltBase, SigningKey
from tfgov_ci.oci import reference, referrers
from tfgov_ci.oci.registry import Access, push_layout, remote_digest
from tfgov_ci.predicates import POLICY_PREDICATE, SBOM_PREDICATE, SCAN_PREDICATE, SLSA_PROVENANCE
from tfgov_ci.stages.record.builtin import RECORD_PREDICATE
from tfgov_ci.testing.registry import LocalRegistry

PASSWORD = "s3cret-key-password"


@pytest.fixture
def key_pair(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """A cosign key pair, outside the repository; its password in COSIGN_PASSWORD, as CI sets it."""
    cosign = require_tool("cosign")
    folder = tmp_path / "keys"
    folder.mkdir()
    env = {**os.environ, "COSIGN_PASSWORD": PASSWORD}
    subprocess.run([cosign, "generate-key-pair"], cwd=folder, env=env, capture_output=True, check=True)
    monkeypatch.setenv("COSIGN_PASSWORD", PASSWORD)
    return folder / "cosign.key", folder / "cosign.pub"


def cosign_verify(command: str, public: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """cosign's own verify or verify-attestation, offline: the key alone, no transparency log."""
    return subprocess.run(
        [
            require_tool("cosign"),
            command,
            "--key",
            str(public),
            "--insecure-ignore-tlog",
            "--allow-insecure-registry",
            *args,
        ],
        capture_output=True,
        text=True,
        check=False,
    )


def test_sign_signs_by_digest_attests_the_evidence_and_cosign_itself_accepts_it(
    model: Path,  # noqa: F811
    key_pair: tuple[Path, Path],
    session_registry: LocalRegistry,
    cli: Callable[..., CliResult],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    private, public = key_pair
    monkeypatch.setenv("COSIGN_PRIVATE_KEY", private.read_text())  # the default key: env://COSIGN_PRIVATE_KEY
    # A repository of its own: other tests publish this very commit of the model under ml/hello.
    config = model / "tfgov.yaml"
    config.write_text(config.read_text().replace("repository: ml/hello", "repository: ml/signed"))
    git(model, "commit", "-qam", "its own repository")
    digest = str(build(cli, model)["data"]["digest"])  # type: ignore[index]
    govern(cli, model)
    signed = cli("run", "sign", cwd=model)
    assert signed.code == 0, signed.err
    assert PASSWORD not in signed.out + signed.err
    repository = f"{session_registry.host}/ml/signed"
    ref = f"{repository}@{digest}"
    result = json.loads((model / ".tfgov/out/sign/result.json").read_text())
    assert result["data"]["reference"] == ref and result["data"]["transparency_log"] == "none"
    assert [a["predicate_type"] for a in result["data"]["attestations"]] == [
        SLSA_PROVENANCE,
        SBOM_PREDICATE,
        SCAN_PREDICATE,
        POLICY_PREDICATE,
    ]
    assert PASSWORD not in (model / ".tfgov/out/sign/result.json").read_text()
    # By digest, and no tag yet: publish points the tags at it once the evidence is there.
    sha = git(model, "rev-parse", "HEAD")
    access = Access(session_registry.host, False, None, None)
    assert all(remote_digest(repository, tag, access) is None for tag in (sha, sha[:8], "main"))
    ran = plan_is_what_ran(model, ["sign"])
    # cosign makes the five bundles (at once), tfgov-ci stores them: one push each (the build pushed
    # the image itself by digest), then the referrers tag fallback read once and written once.
    assert [c[:2] for c in ran["sign"]] == [
        ["cosign", "signing-config"],
        ["cosign", "sign"],
        *[["cosign", "attest"]] * 4,
        *[["skopeo", "copy"]] * 5,
        ["skopeo", "inspect"],
        ["skopeo", "copy"],
    ]
    assert all("--key" in c and "env://COSIGN_PRIVATE_KEY" in c for c in ran["sign"][1:6])
    assert all("--upload=false" in c or "--no-upload" in c for c in ran["sign"][1:6])

    # An independent check of the format: cosign's own verify accepts the signature and each
    # attestation, offline, with the public key.
    verified = cosign_verify("verify", public, ref)
    assert verified.returncode == 0, verified.stderr
    for kind in (SLSA_PROVENANCE, SBOM_PREDICATE, SCAN_PREDICATE, POLICY_PREDICATE):
        done = cosign_verify("verify-attestation", public, "--type", kind, ref)
        assert done.returncode == 0, (kind, done.stderr)
        statements = [
            json.loads(base64.b64decode(json.loads(line)["payload"]))
            for line in done.stdout.splitlines()
            if line.strip()
        ]
        assert statements and all(s["predicateType"] == kind for s in statements)
        assert statements[0]["subject"][0]["digest"] == {"sha256": digest.removeprefix("sha256:")}
        if kind == SLSA_PROVENANCE:
            provenance = statements[0]["predicate"]
            external = provenance["buildDefinition"]["externalParameters"]
            assert external["commit"] == sha and external["config"]["path"] == "tfgov.yaml"
            assert external["pipeline"] == "tf-image"
            deps = provenance["buildDefinition"]["resolvedDependencies"]
            assert deps[0]["digest"] == {"gitCommit": sha}
            assert any(d.get("name") == "pyyaml" and "sha256" in d.get("digest", {}) for d in deps)
        if kind == SBOM_PREDICATE:
            cyclonedx = model / ".tfgov/out/sbom/sbom.cdx.json"
            assert statements[0]["predicate"]["digest"].removeprefix("sha256:") == _sha256(cyclonedx)

    # verify finds the bundles in the referrers tag fallback; no SBOM is stored yet, so: denied.
    early = json.loads(cli("verify", ref, "--key", str(public), "--format", "json", cwd=model).out)
    assert early["signature_layout"] == "bundles (referrers tag fallback)" and not early["allowed"]

    # Then publish tags what is signed; the tag now names the signed digest.
    assert cli("run", "publish", cwd=model).code == 0
    assert remote_digest(repository, sha, access) == digest
    other = cosign_verify("verify", public, f"{repository}:{sha}")
    assert other.returncode == 0, other.stderr
    # And the record stage attests the build record: a registry alone says where it came from.
    recorded = cli("run", "record", cwd=model)
    assert recorded.code == 0, recorded.err
    done = cosign_verify("verify-attestation", public, "--type", RECORD_PREDICATE, ref)
    assert done.returncode == 0, done.stderr
    statement = json.loads(base64.b64decode(json.loads(done.stdout.splitlines()[0])["payload"]))
    record = statement["predicate"]
    assert record["commit"]["sha"] == sha and record["image"]["digest"] == digest
    assert record["evidence"]["signed"] is True and len(record["evidence"]["attestations"]) == 4
    signing = next(s for s in record["stages"] if s["stage"] == "sign")
    assert [c["argv"][1] for c in signing["commands"]][:6] == ["signing-config", "sign", *["attest"] * 4]
    assert PASSWORD not in json.dumps(record)
    assert [c[1] for c in plan_is_what_ran(model, ["record"])["record"]][-4:] == [
        "attest",
        "copy",
        "inspect",
        "copy",
    ]
    # Every signature and attestation, stored by sign and record, in the one fallback index (none
    # lost: cosign's processes ran at the same time), beside the two SBOMs publish attached.
    index = json.loads(
        subprocess.run(
            ["skopeo", "inspect", "--raw", "--tls-verify=false",
             f"docker://{repository}:{digest.replace(':', '-')}"],
            capture_output=True, text=True, check=True,
        ).stdout
    )  # fmt: skip
    kinds = sorted(
        m["annotations"].get("dev.sigstore.bundle.predicateType") or m["annotations"]["io.tfgov.sbom.format"]
        for m in index["manifests"]
    )
    assert kinds == sorted(
        [
            "https://sigstore.dev/cosign/sign/v1",
            SLSA_PROVENANCE,
            SBOM_PREDICATE,
            SCAN_PREDICATE,
            POLICY_PREDICATE,
            RECORD_PREDICATE,
            "cyclonedx",
            "spdx",
        ]
    )


def test_a_wrong_key_password_or_no_key_is_a_clear_error_without_the_password(
    model: Path,  # noqa: F811
    key_pair: tuple[Path, Path],
    cli: Callable[..., CliResult],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    private, _ = key_pair
    build(cli, model)
    govern(cli, model)
    monkeypatch.delenv("COSIGN_PRIVATE_KEY")  # the model fixture's key: none here
    missing = cli("run", "sign", cwd=model)
    assert missing.code == 2
    assert "no signing key: COSIGN_PRIVATE_KEY is not set" in missing.err
    monkeypatch.setenv("COSIGN_PRIVATE_KEY", private.read_text())
    monkeypatch.setenv("COSIGN_PASSWORD", "not-the-password")
    wrong = cli("run", "sign", cwd=model)
    assert wrong.code == 2, wrong.err
    assert "could not open the signing key (wrong password?)" in wrong.err
    assert "not-the-password" not in wrong.out + wrong.err
    assert "not-the-password" not in (model / ".tfgov/out/sign/result.json").read_text()
    assert "not-the-password" not in (model / ".tfgov/out/record.json").read_text()


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def signed(
    model: Path,  # noqa: F811
    key_pair: tuple[Path, Path],
    cli: Callable[..., CliResult],
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[Path, str, str]:
    """The model built, governed, signed and published as ml/verified (a repository of its own: these
    tests tamper with it), with the default key: (repo, sha, digest)."""
    monkeypatch.setenv("COSIGN_PRIVATE_KEY", key_pair[0].read_text())
    digest = signed_as(model, "ml/verified", cli)
    return model, git(model, "rev-parse", "HEAD"), digest


def signed_as(repo: Path, repository: str, cli: Callable[..., CliResult], stages: str = "") -> str:
    """The model under a repository of its own (``stages``: rows added under ``stages:``), built,
    governed, signed and published: its digest."""
    config = repo / "tfgov.yaml"
    config.write_text(
        config.read_text().replace("repository: ml/hello", f"repository: {repository}") + stages
    )
    git(repo, "commit", "-qam", "its own repository")
    digest = str(build(cli, repo)["data"]["digest"])  # type: ignore[index]
    govern(cli, repo)
    for stage in ("sign", "publish"):
        result = cli("run", stage, cwd=repo)
        assert result.code == 0, result.err
    return digest


def test_verify_allows_the_signed_image_by_tag_and_names_every_check(
    signed: tuple[Path, str, str],
    key_pair: tuple[Path, Path],
    session_registry: LocalRegistry,
    cli: Callable[..., CliResult],
) -> None:
    repo, sha, digest = signed
    image = f"{session_registry.host}/ml/verified:{sha}"
    local = "https://tfgov-ci.dev/builders/local"  # a laptop's run: trusted only when said so
    args = ("verify", image, "--key", str(key_pair[1]), "--trusted-builder", local)
    done = cli(*args, "--commit", sha, "--branch", "main", "--config-path", "tfgov.yaml", cwd=repo)
    assert done.code == 0, done.out + done.err
    assert done.out.splitlines()[-1] == f"allowed: {image} ({digest})"
    for name in (
        "signature",
        "attestation provenance",
        "attestation sbom",
        "builder",
        "commit",
        "sbom",
        "policy",
    ):
        assert f"ok   {name}:" in done.out, name
    verdict = json.loads(cli(*args, "--format", "json", cwd=repo).out)
    assert verdict["allowed"] is True and verdict["digest"] == digest
    assert verdict["signature_layout"] == "bundles (referrers tag fallback)"  # the local registry: no API
    assert verdict["signatures_checked_by"].startswith("tfgov-ci (the bundles read and checked in-process")
    assert RECORD_PREDICATE not in verdict["attested"]  # the record stage has not run: optional
    # The team's own rules over the attested documents (--policy): one passes, one denies.
    rules = repo.parent / "rules"
    rules.mkdir()
    (rules / "from_main.rego").write_text(
        "package tfgov.rules.from_main\nimport rego.v1\n"
        'deny contains "not built from main" if { '
        'input.provenance.buildDefinition.externalParameters.ref != "refs/heads/main" }\n'
    )
    assert cli(*args, "--policy", str(rules), cwd=repo).code == 0
    # The build record's attestation, once the record stage has run, is there for rules to read.
    (rules / "recorded.rego").write_text(
        "package tfgov.rules.recorded\nimport rego.v1\n"
        'deny contains "no build record attested" if { not input.record.commit.sha }\n'
    )
    assert "FAIL rule recorded: no build record attested" in cli(*args, "--policy", str(rules), cwd=repo).out
    assert cli("run", "record", cwd=repo).code == 0
    assert cli(*args, "--policy", str(rules), cwd=repo).code == 0
    (rules / "no_findings.rego").write_text(
        "package tfgov.rules.no_findings\nimport rego.v1\n"
        'deny contains msg if { input.scan.total >= 0; msg := sprintf("%d findings", [input.scan.total]) }\n'
    )
    team = cli(*args, "--policy", str(rules), cwd=repo)
    assert team.code == 1 and "ok   rule from_main: passed" in team.out
    assert "FAIL rule no_findings: 0 findings" in team.out
    # The default builders are tfgov-ci on GitLab and Jenkins: a laptop's build is not trusted.
    untrusted = cli("verify", image, "--key", str(key_pair[1]), cwd=repo)
    assert untrusted.code == 1
    assert f"FAIL builder: {local} is not a trusted builder" in untrusted.out


def test_verify_says_no_with_the_reason_for_each_kind_of_tampering(
    signed: tuple[Path, str, str],
    key_pair: tuple[Path, Path],
    session_registry: LocalRegistry,
    tmp_path: Path,
    cli: Callable[..., CliResult],
) -> None:
    from tfgov_ci.oci.layout import Descriptor

    repo, sha, digest = signed
    host = session_registry.host
    image = f"{host}/ml/verified:{sha}"
    base = ("--key", str(key_pair[1]), "--trusted-builder", "https://tfgov-ci.dev/builders/local")

    def no(*args: str) -> str:
        done = cli("verify", *args, cwd=repo)
        assert done.code == 1, done.out + done.err
        assert done.out.splitlines()[-1].startswith("denied:")
        return done.out

    assert f"FAIL commit: '{sha}', expected '{'0' * 40}'" in no(image, *base, "--commit", "0" * 40)
    assert "FAIL repository:" in no(image, *base, "--repo", "https://gitlab.example.com/other/repo.git")
    other = tmp_path / "other"
    other.mkdir()
    env = {**os.environ, "COSIGN_PASSWORD": "x"}
    subprocess.run(
        [require_tool("cosign"), "generate-key-pair"], cwd=other, env=env, capture_output=True, check=True
    )
    wrong_key = no(image, "--key", str(other / "cosign.pub"))
    assert "FAIL signature: no signature verifies with the key" in wrong_key
    # An image nobody signed: the same layout, pushed to another repository without the stage.
    layout = repo / ".tfgov/out/build/oci"
    unsigned_ref = f"{host}/ml/unsigned"
    push_layout(layout, sha, digest, unsigned_ref, ("v1",), {}, env={})
    assert "FAIL signature: never signed: no signature in the registry" in no(f"{unsigned_ref}:v1", *base)
    # The SBOM stored beside the image replaced by another one (attached later, so the newest).
    fake = tmp_path / "sbom.cdx.json"
    fake.write_text(json.dumps({"bomFormat": "CycloneDX", "specVersion": "1.6", "components": []}))
    manifest = json.loads((layout / "index.json").read_text())["manifests"][0]
    subject = Descriptor(manifest["mediaType"], manifest["digest"], manifest["size"])
    target = reference.parse(f"{host}/ml/verified")
    referrers.attach(
        target, subject, [referrers.sbom_artifact("cyclonedx", fake, "2099-01-01T00:00:00Z")], {}, env={}
    )
    assert "FAIL sbom: the stored SBOM is sha256:" in no(image, *base)
    missing = cli("verify", f"{host}/ml/verified@sha256:{'1' * 64}", *base, cwd=repo)
    assert missing.code == 1 and "FAIL image: no image" in missing.out


def governed_behind(
    proxy: RefusingProxy, repo: Path, session_registry: LocalRegistry, cli: Callable[..., CliResult]
) -> str:
    """The model's registry set to ``proxy``, committed, built and governed: its digest."""
    config = repo / "tfgov.yaml"
    text = config.read_text()
    config.write_text(text.replace(f"registry: {session_registry.host}", f"registry: {proxy.host}"))
    git(repo, "commit", "-qam", "behind the proxy")
    digest = str(build(cli, repo)["data"]["digest"])  # type: ignore[index]
    govern(cli, repo)
    return digest


def test_a_registry_that_refuses_signature_writes_says_what_happened_and_what_to_configure(
    model: Path,  # noqa: F811
    registry: LocalRegistry,
    session_registry: LocalRegistry,
    cli: Callable[..., CliResult],
) -> None:
    """Harbor cannot run here: a proxy in front of the real registry answers as Harbor does to a
    robot account without push rights (403) and under a tag immutability rule covering sha256-*
    tags (412); every other request reaches the real registry."""
    with RefusingProxy(registry.host) as proxy:
        digest = governed_behind(proxy, model, session_registry, cli)
        sha = git(model, "rev-parse", "HEAD")
        access = Access(registry.host, False, None, None)

        def refused(stage: str, *said: str) -> None:
            done = cli("run", stage, cwd=model)
            assert done.code == 3, done.out + done.err
            assert all(words in done.err for words in said) and "Traceback" not in done.err, done.err

        proxy.rule = "forbid"
        refused(
            "sign",
            f"{proxy.host} refused to store the signature or an attestation (storing the bundles): "
            "access denied",
            "push rights",
        )

        # The tag is written once a stage, so an immutability rule refuses the stage that finds it
        # there already: signing the same image again (a pipeline run again), here.
        proxy.rule = None
        assert cli("run", "sign", cwd=model).code == 0
        proxy.rule = "immutable"
        refused("sign", "tag immutability rule", "sha256-*")
        assert proxy.refused >= 2
        # Nothing lost, nothing wrong named: no tag points at the half-signed image, and once the
        # registry lets the writes through, the same run signs it.
        assert all(remote_digest(f"{registry.host}/ml/hello", t, access) is None for t in (sha, "main"))
        proxy.rule = None
        signed = cli("run", "sign", cwd=model)
        assert signed.code == 0, signed.err
        assert json.loads((model / ".tfgov/out/sign/result.json").read_text())["data"]["digest"] == digest

        # publish attaches the SBOMs before it sets a tag: when the registry refuses them (the
        # referrers tag is there already, under the rule), no tag names an image without its SBOMs.
        proxy.rule = "immutable"
        refused(
            "publish",
            f"{proxy.host} refused to update the image's referrers tag sha256-<digest> (attaching the "
            "SBOMs): a tag immutability rule covers it",
            "run publish again",
        )
        assert all(remote_digest(f"{registry.host}/ml/hello", t, access) is None for t in (sha, "main"))


def test_on_a_registry_with_the_referrers_api_the_evidence_writes_no_tag(
    model: Path,  # noqa: F811
    registry: LocalRegistry,
    session_registry: LocalRegistry,
    can_sign: SigningKey,
    cli: Callable[..., CliResult],
) -> None:
    """Harbor 2.8+ lists an image's referrers by their subject: the OCI 1.1 referrers API, MOCKED
    by the proxy in front of the real registry (tests/refusing_proxy.py; distribution 2.8 has
    none). There, sign, publish and record store the bundles and SBOMs and write no ``sha256-*``
    tag, so an immutability rule covering those tags refuses nothing, a pipeline run again
    included (before, sign wrote the fallback tag and publish's update of it was refused). verify,
    cosign itself and the SBOM fetch read them back through the API."""
    with RefusingProxy(registry.host, referrers_api=True) as proxy:
        digest = governed_behind(proxy, model, session_registry, cli)
        proxy.rule = "immutable"
        for stage in ("sign", "publish", "record", "sign", "record"):  # the last two: run again
            done = cli("run", stage, cwd=model)
            assert done.code == 0, done.out + done.err
        assert (proxy.tag_writes, proxy.refused) == ([], 0)
        access = Access(registry.host, False, None, None)
        assert remote_digest(f"{registry.host}/ml/hello", referrers.fallback_tag(digest), access) is None
        ran = plan_is_what_ran(model, ["sign", "publish", "record"])
        assert not any("sha256-" in arg for argv in ran.values() for command in argv for arg in command)

        sha = git(model, "rev-parse", "HEAD")
        image = f"{proxy.host}/ml/hello:{sha}"
        local = "https://tfgov-ci.dev/builders/local"
        args = ("verify", image, "--key", str(can_sign.public), "--trusted-builder", local)
        verdict = json.loads(cli(*args, "--format", "json", cwd=model).out)
        assert verdict["allowed"] is True, verdict
        assert verdict["signature_layout"] == "bundles (OCI 1.1 referrers API)"
        assert verdict["signatures_checked_by"].startswith("tfgov-ci")  # the API read in-process
        by_digest = f"{proxy.host}/ml/hello@{digest}"
        assert cosign_verify("verify", can_sign.public, by_digest).returncode == 0
        recorded = cosign_verify("verify-attestation", can_sign.public, "--type", RECORD_PREDICATE, by_digest)
        assert recorded.returncode == 0, recorded.stderr  # the record stage's bundle, through the API
        stored = referrers.fetch(by_digest, "cyclonedx", {}, env={})
        assert stored == (model / ".tfgov/out/sbom/sbom.cdx.json").read_bytes()


def test_one_at_a_time_signs_one_cosign_process_after_another_as_a_hardware_token_needs(
    model: Path,  # noqa: F811
    key_pair: tuple[Path, Path],
    session_registry: LocalRegistry,
    cli: Callable[..., CliResult],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """No PKCS#11 token can be had here (nor a cosign built with PKCS#11), so ``one_at_a_time:
    true`` takes the path a ``pkcs11:`` key takes. cosign is the real one, behind a wrapper on
    PATH that logs when each of its processes starts and ends."""
    private, public = key_pair
    monkeypatch.setenv("COSIGN_PRIVATE_KEY", private.read_text())
    log, wrapper = tmp_path / "cosign.log", tmp_path / "bin" / "cosign"
    wrapper.parent.mkdir()
    wrapper.write_text(
        f'#!/bin/sh\necho start >> {log}\n{require_tool("cosign")} "$@"\nrc=$?\necho end >> {log}\nexit $rc\n'
    )
    wrapper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{wrapper.parent}{os.pathsep}{os.environ['PATH']}")
    digest = signed_as(model, "ml/one-by-one", cli, "  sign:\n    options: {one_at_a_time: true}\n")
    (planned,) = json.loads(cli("plan", "sign", "--format", "json", cwd=model).out)["stages"]
    assert any("attestations one after another" in step["description"] for step in planned["steps"])
    ran = plan_is_what_ran(model, ["sign"])["sign"]
    assert [c[1] for c in ran if c[0] == "cosign"] == ["signing-config", "sign", *["attest"] * 4]
    started = log.read_text().split()  # (`cosign version` for the record goes through it too)
    assert len(started) >= 12 and started == ["start", "end"] * (len(started) // 2)  # never two at once
    ref = f"{session_registry.host}/ml/one-by-one@{digest}"
    assert cosign_verify("verify", public, ref).returncode == 0


def test_verify_reads_the_legacy_sig_and_att_tags_as_older_admission_controllers_write_them(
    model: Path,  # noqa: F811
    key_pair: tuple[Path, Path],
    session_registry: LocalRegistry,
    cli: Callable[..., CliResult],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    private, public = key_pair
    monkeypatch.setenv("COSIGN_PRIVATE_KEY", private.read_text())
    digest = signed_as(model, "ml/legacy", cli, "  sign:\n    options: {format: legacy}\n")
    ran = plan_is_what_ran(model, ["sign"])["sign"]
    assert [c[1] for c in ran] == ["sign", *["attest"] * 4]  # no signing config: no log at all
    assert all("--new-bundle-format=false" in c and "--tlog-upload=false" in c for c in ran)
    ref = f"{session_registry.host}/ml/legacy@{digest}"
    tags = json.loads(
        subprocess.run(
            ["skopeo", "list-tags", "--tls-verify=false", f"docker://{session_registry.host}/ml/legacy"],
            capture_output=True, text=True, check=True,
        ).stdout
    )["Tags"]  # fmt: skip
    hex_ = digest.removeprefix("sha256:")
    assert {f"sha256-{hex_}.sig", f"sha256-{hex_}.att"} <= set(tags)
    assert cosign_verify("verify", public, ref).returncode == 0
    args = ("verify", ref, "--key", str(public), "--trusted-builder", "https://tfgov-ci.dev/builders/local")
    verdict = json.loads(cli(*args, "--format", "json", cwd=model).out)
    assert verdict["allowed"] is True, verdict
    assert verdict["signature_layout"].startswith("legacy .sig and .att tags")
    assert verdict["signatures_checked_by"] == "cosign"  # the legacy layout: cosign reads it
    assert {c["name"] for c in verdict["checks"]} >= {"attestation provenance", "sbom", "policy"}


def test_verify_says_no_to_forged_evidence_a_copied_signature_and_a_moved_tag(
    signed: tuple[Path, str, str],
    key_pair: tuple[Path, Path],
    session_registry: LocalRegistry,
    small_base: BuiltBase,
    tmp_path: Path,
    cli: Callable[..., CliResult],
) -> None:
    """Evidence made by hand with bare cosign on copies of the signed image: attestations signed
    with another key; with the right key, a provenance with an unknown external parameter, a policy
    denial and no SBOM attestation; the genuine signature copied to another repository; the tag
    moved to another image."""
    repo, sha, digest = signed
    private, public = key_pair
    host = session_registry.host
    cosign = require_tool("cosign")
    other = tmp_path / "other"
    other.mkdir()
    subprocess.run([cosign, "generate-key-pair"], cwd=other, env={**os.environ, "COSIGN_PASSWORD": "x"},
                   capture_output=True, check=True)  # fmt: skip
    config = tmp_path / "sc.json"
    subprocess.run(
        [cosign, "signing-config", "create", "--out", str(config)], check=True, capture_output=True
    )
    genuine = {}
    for kind in (SLSA_PROVENANCE, SBOM_PREDICATE, SCAN_PREDICATE, POLICY_PREDICATE):
        done = cosign_verify("verify-attestation", public, "--type", kind, f"{host}/ml/verified@{digest}")
        genuine[kind] = json.loads(base64.b64decode(json.loads(done.stdout.splitlines()[0])["payload"]))[
            "predicate"
        ]

    def copy(name: str) -> str:
        push_layout(repo / ".tfgov/out/build/oci", sha, digest, f"{host}/{name}", ("v1",), {}, env={})
        return f"{host}/{name}@{digest}"

    def by_hand(ref: str, key: Path, password: str, *, predicates: dict[str, Any] | None = None) -> None:
        env = {**os.environ, "COSIGN_PASSWORD": password}
        signing = ["--yes", "--key", str(key), "--signing-config", str(config), "--allow-insecure-registry"]
        if predicates is None:
            argvs = [[cosign, "sign", *signing, ref]]
        else:
            argvs = []
            for index, (kind, predicate) in enumerate(predicates.items()):
                path = tmp_path / f"{ref.split('/')[-1].split('@')[0]}-{index}.json"
                path.write_text(json.dumps(predicate))
                argvs.append([cosign, "attest", *signing, "--type", kind, "--predicate", str(path), ref])
        for argv in argvs:
            done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
            assert done.returncode == 0, done.stderr

    base = ("--key", str(public), "--trusted-builder", "https://tfgov-ci.dev/builders/local")

    def no(image: str, *args: str) -> str:
        done = cli("verify", image, *base, *args, cwd=repo)
        assert done.code == 1 and done.out.splitlines()[-1].startswith("denied:"), done.out + done.err
        return done.out

    other_key = copy("ml/other-key")
    by_hand(other_key, private, PASSWORD)
    by_hand(other_key, other / "cosign.key", "x", predicates=genuine)
    out = no(other_key)
    assert "ok   signature:" in out
    for name in ("provenance", "sbom", "scan", "policy"):
        assert f"FAIL attestation {name}: missing, or not signed by the key" in out, out

    forged = copy("ml/forged")
    by_hand(forged, private, PASSWORD)
    provenance = json.loads(json.dumps(genuine[SLSA_PROVENANCE]))
    provenance["buildDefinition"]["externalParameters"]["debug"] = "true"
    by_hand(forged, private, PASSWORD, predicates={
        SLSA_PROVENANCE: provenance,
        SCAN_PREDICATE: genuine[SCAN_PREDICATE],
        POLICY_PREDICATE: {**genuine[POLICY_PREDICATE], "allow": False},
    })  # fmt: skip
    out = no(forged)
    assert "FAIL external parameters: unknown external parameter(s): debug" in out
    assert "FAIL attestation sbom: missing" in out and "FAIL policy: the policy denied it" in out

    # The image and its referrers tag (the bundles, the SBOMs) copied as they are to another
    # repository: every signature still verifies with the key, but was made for ml/verified.
    copied = copy("ml/copied")
    fallback = f"sha256-{digest.removeprefix('sha256:')}"
    subprocess.run(["skopeo", "copy", "--all", "--preserve-digests", "--src-tls-verify=false",
                    "--dest-tls-verify=false", f"docker://{host}/ml/verified:{fallback}",
                    f"docker://{host}/ml/copied:{fallback}"], capture_output=True, check=True)  # fmt: skip
    assert f"FAIL signed for: the evidence was made for {host}/ml/verified, not {host}/ml/copied" in no(
        copied
    )
    mirrored = cli("verify", copied, *base, "--mirror-of", f"{host}/ml/verified", cwd=repo)
    assert f"ok   signed for: {host}/ml/verified" in mirrored.out

    # The tag moved to another image: the tag is resolved once, and that image was never signed.
    subprocess.run(["skopeo", "copy", "--src-tls-verify=false", "--dest-tls-verify=false",
                    f"docker://{small_base.ref}", f"docker://{host}/ml/verified:{sha}"],
                   capture_output=True, check=True)  # fmt: skip
    moved = no(f"{host}/ml/verified:{sha}")
    assert f"is {small_base.ref.split('@')[1]}" in moved and "FAIL signature: never signed" in moved


def test_reads_behind_credentials_only_skopeo_and_cosign_have_fall_back_to_them(
    tmp_path: Path, small_base: BuiltBase, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A registry with htpasswd auth and no TFGOV_REGISTRY_USER (the credentials only in an auth
    file, which skopeo and cosign read): the in-process bundle reader answers None (cosign checks
    then), not a "never signed", and verify's reads go to skopeo, with the same answer."""
    from cryptography.hazmat.primitives.asymmetric import ec

    from tfgov_ci.oci.reference import Reference
    from tfgov_ci.oci.registry import HttpRefused, Registry
    from tfgov_ci.stages.sign import bundles
    from tfgov_ci.stages.sign.verify import Reads

    require_tool("htpasswd")
    listed = {"manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "size": 2,
                             "digest": "sha256:" + "b" * 64,
                             "artifactType": "application/vnd.dev.sigstore.bundle.v0.3+json"}]}  # fmt: skip
    with LocalRegistry(user="ci-bot", password="s3cret-Pa55") as reg:
        pinned = Reference(reg.host, "ml/hello", None, "sha256:" + "a" * 64)
        key = ec.generate_private_key(ec.SECP256R1()).public_key()
        unauthenticated = Registry(Access(reg.host, False, None, None))
        assert bundles.read(unauthenticated, pinned, json.dumps(listed).encode(), key) is None
        # why: the registry refused the reader (401); with the credentials it answers (404: none there)
        entry = Reference(reg.host, "ml/hello", None, listed["manifests"][0]["digest"])
        with pytest.raises(HttpRefused) as refused:
            unauthenticated.read(entry)
        with pytest.raises(HttpRefused) as absent:
            Registry(Access(reg.host, False, None, "ci-bot", "s3cret-Pa55")).read(entry)
        assert (refused.value.code, absent.value.code) == (401, 404)
        # an image there, the credentials in skopeo's auth file only: read by skopeo after the 401
        image = f"{reg.host}/ml/hello:v1"
        subprocess.run(["skopeo", "copy", "--quiet", "--src-tls-verify=false", "--dest-tls-verify=false",
                        "--dest-creds", "ci-bot:s3cret-Pa55", f"docker://{small_base.ref}", f"docker://{image}"],
                       capture_output=True, check=True)  # fmt: skip
        auth = tmp_path / "auth.json"
        token = base64.b64encode(b"ci-bot:s3cret-Pa55").decode()
        auth.write_text(json.dumps({"auths": {reg.host: {"auth": token}}}))
        monkeypatch.setenv("REGISTRY_AUTH_FILE", str(auth))
        reads = Reads(unauthenticated)
        raw = reads.manifest(reference.parse(image))
        assert raw is not None and not reads.http  # skopeo's answer, HTTP given up for the rest
        assert f"sha256:{hashlib.sha256(raw).hexdigest()}" == small_base.ref.split("@")[1]
        assert reads.manifest(reference.parse(f"{reg.host}/ml/hello:v2")) is None  # none: still None


def test_sign_and_verify_against_a_registry_with_tls_and_a_password(
    model: Path,  # noqa: F811
    key_pair: tuple[Path, Path],
    session_registry: LocalRegistry,
    cli: Callable[..., CliResult],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The registry an organisation runs: TLS with its own CA and a robot account's password (from
    the environment, as a masked CI variable). Signed, attested and published there; verify's
    in-process reads use the CA and the password; cosign's own verify accepts the same evidence;
    the password is in no output, result or record."""
    require_tool("htpasswd")
    password = "s3cret-Pa55-robot"
    monkeypatch.setenv("COSIGN_PRIVATE_KEY", key_pair[0].read_text())
    with LocalRegistry(user="ci-bot", password=password, tls=True) as reg:
        monkeypatch.setenv("TFGOV_REGISTRY_USER", "ci-bot")
        monkeypatch.setenv("TFGOV_REGISTRY_PASSWORD", password)
        config = model / "tfgov.yaml"
        text = config.read_text().replace(f"registry: {session_registry.host}", f"registry: {reg.host}")
        config.write_text(text + f"registries:\n  {reg.host}: {{ca_file: {reg.ca_file}}}\n")
        digest = signed_as(model, "ml/secure", cli)
        sha = git(model, "rev-parse", "HEAD")
        args = ("verify", f"{reg.host}/ml/secure:{sha}", "--key", str(key_pair[1]), "--trusted-builder",
                "https://tfgov-ci.dev/builders/local")  # fmt: skip
        done = cli(*args, "--format", "json", cwd=model)
        assert done.code == 0, done.out + done.err
        verdict = json.loads(done.out)
        assert verdict["allowed"] and verdict["digest"] == digest
        assert verdict["signatures_checked_by"].startswith("tfgov-ci")
        # cosign itself, the CA and the password handed over as the sign stage hands them
        access = Access(reg.host, True, reg.ca_file, "ci-bot", password)
        with access.docker_config() as cosign_env:
            for name, value in cosign_env.items():
                monkeypatch.setenv(name, value)
            ref = f"{reg.host}/ml/secure@{digest}"
            assert cosign_verify("verify", key_pair[1], ref).returncode == 0
            accepted = cosign_verify("verify-attestation", key_pair[1], "--type", SLSA_PROVENANCE, ref)
            assert accepted.returncode == 0, accepted.stderr
        written = [p.read_text() for p in (model / ".tfgov/out").rglob("*.json")]
        assert written and all(password not in text for text in [done.out, done.err, *written])
