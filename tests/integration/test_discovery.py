"""`inventory import --registry`: the real local registry holding one governed image (the model
through the whole pipeline: signed, published, its record attested) and one pushed by plain
`skopeo copy` (ungoverned), read through the catalog and tag-list APIs, with the real cosign
verifying the record attestation and the real syft cataloguing the ungoverned one."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

from tests.helpers import CliResult, require_tool
from tests.services import BuiltBase, RecordedBuild, SigningKey
from tfgov_ci.testing.registry import LocalRegistry


def test_a_registry_import_records_governed_images_from_their_attested_record_and_the_rest_as_ungoverned(
    recorded_build: RecordedBuild,
    small_base: BuiltBase,
    session_registry: LocalRegistry,
    signing_key: SigningKey,
    tmp_path: Path,
    cli: Callable[..., CliResult],
) -> None:
    host = session_registry.host
    forgotten = f"{host}/research/forgotten:debug-ssh"  # nobody remembers who pushed it, or why
    subprocess.run(["skopeo", "copy", "--quiet", "--src-tls-verify=false", "--dest-tls-verify=false",
                    f"docker://{small_base.ref}", f"docker://{forgotten}"], check=True)  # fmt: skip
    db = tmp_path / "inventory.sqlite"
    key = str(signing_key.public)
    args = ("inventory", "import", "--registry", host, "--repository", "ml/recorded",
            "--repository", "research/*", "--key", key, "--inventory", str(db))  # fmt: skip
    done = cli(*args, "--sbom")
    assert done.code == 0, done.out + done.err
    assert f"recorded {host}/ml/recorded@{recorded_build.digest} (governed" in done.out
    base_digest = small_base.ref.split("@")[1]
    assert f"recorded {host}/research/forgotten@{base_digest} (UNGOVERNED, tags debug-ssh)" in done.out
    assert "1 governed, 1 ungoverned" in done.out

    # From the registry alone: the commit, the pipeline, the base and the stored SBOM's packages.
    traced = json.loads(cli("trace", recorded_build.digest, "--inventory", str(db), "--format", "json").out)
    image = traced["image"]
    assert image["governed"] is True and image["commit_sha"] == recorded_build.sha
    assert image["decision"] == "allow" and image["base_digest"] == base_digest
    assert traced["packages"].get("pypi", 0) > 0  # the stored SBOM, checked against its attestation
    # The forgotten image shows in fleet queries too: syft's packages, from the registry.
    found = json.loads(cli("which", "python3.11-minimal", "--inventory", str(db), "--format", "json").out)
    ungoverned = [m for m in found["matches"] if not m["governed"]]
    assert [i["digest"] for i in ungoverned] == [base_digest]

    # Idempotent: the same registry again is the same rows.
    rows = json.loads(cli("inventory", "list", "--inventory", str(db), "--format", "json").out)["images"]
    assert cli(*args).code == 0
    again = json.loads(cli("inventory", "list", "--inventory", str(db), "--format", "json").out)["images"]
    assert len(again) == len(rows) == 2

    # Another key verifies no record: into a new inventory, everything is ungoverned; into this
    # one, the image known as governed keeps its record.
    keys = tmp_path / "other"
    keys.mkdir()
    subprocess.run([require_tool("cosign"), "generate-key-pair"], cwd=keys, capture_output=True, check=True,
                   env={**os.environ, "COSIGN_PASSWORD": "other"})  # fmt: skip
    other = keys / "cosign.pub"
    wrong = cli("inventory", "import", "--registry", host, "--repository", "ml/recorded",
                "--key", str(other), "--inventory", str(tmp_path / "new.sqlite"))  # fmt: skip
    assert wrong.code == 0 and "0 governed, 1 ungoverned" in wrong.out
    kept = cli(
        "inventory", "import", "--registry", host, "--repository", "ml/recorded", "--inventory", str(db)
    )
    assert kept.code == 0 and "no --key" in kept.err
    assert f"kept {host}/ml/recorded@{recorded_build.digest}: in the inventory already" in kept.out

    # An image its pipeline recorded (the out directory: findings, exceptions) keeps all of that
    # when a registry import meets it: the registry only adds the tags it shows.
    fleet = str(tmp_path / "fleet.sqlite")
    assert cli("inventory", "import", str(recorded_build.out), "--inventory", fleet).code == 0
    before = json.loads(cli("trace", recorded_build.digest, "--inventory", fleet, "--format", "json").out)
    assert sum(before["findings"].values()) > 0
    again = cli("inventory", "import", "--registry", host, "--repository", "ml/recorded", "--key", key,
                "--inventory", fleet)  # fmt: skip
    assert again.code == 0 and "kept" in again.out
    after = json.loads(cli("trace", recorded_build.digest, "--inventory", fleet, "--format", "json").out)
    assert after["findings"] == before["findings"] and after["packages"] == before["packages"]
    assert set(before["tags"]) <= set(after["tags"])


def test_a_registry_import_needs_a_registry_it_can_reach_and_says_what_goes_with_what(
    tmp_path: Path, cli: Callable[..., CliResult]
) -> None:
    db = str(tmp_path / "inventory.sqlite")
    assert cli("inventory", "import", "--inventory", db).code == 2
    assert "go with --registry" in cli("inventory", "import", "out", "--sbom", "--inventory", db).err
    from tfgov_ci.testing.registry import free_port

    gone = cli("inventory", "import", "--registry", f"127.0.0.1:{free_port()}", "--inventory", db)
    assert gone.code == 3 and "is unreachable" in gone.err and "Traceback" not in gone.err
