"""The incremental SBOM: each layer catalogued once by syft, merged, equal to syft's whole-image scan.

Real images (the native builder's on the session's small base; buildah's for a Dockerfile), real
syft for both sides, and the formats' own validators (spdx-tools, cyclonedx-python-lib).
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from spdx_tools.spdx.parser.parse_anything import parse_file
from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document

from tests.helpers import CliResult, git, make_repo, require_tools
from tests.integration.test_native_build import APP, build, model_config
from tests.services import BuiltBase
from tfgov_ci import tools
from tfgov_ci.testing.registry import LocalRegistry


def _sbom(cli: Callable[..., CliResult], repo: Path) -> dict[str, Any]:
    result = cli("run", "sbom", cwd=repo)
    assert result.code == 0, result.err
    loaded: dict[str, Any] = json.loads((repo / ".tfgov/out/sbom/result.json").read_text())
    return loaded


def _whole_image_scan(repo: Path, result: dict[str, Any], tmp: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """syft's own scan of the whole image, named as the stage names it: (SPDX, CycloneDX)."""
    layout = repo / ".tfgov/out/build/oci"
    repository = json.loads(Path(result["outputs"]["cyclonedx"]).read_text())["metadata"]["component"]["name"]
    spdx, cyclonedx = tmp / "whole.spdx.json", tmp / "whole.cdx.json"
    argv = [tools.which("syft"), "scan", f"oci-dir:{layout}", "--quiet", "--source-name", repository]
    argv += ["--source-version", result["data"]["digest"]]
    subprocess.run(
        [*argv, "-o", f"spdx-json={spdx}", "-o", f"cyclonedx-json={cyclonedx}"],
        check=True,
        env={**os.environ, "SYFT_CHECK_FOR_APP_UPDATE": "false"},
    )
    return json.loads(spdx.read_text()), json.loads(cyclonedx.read_text())


def _packages(cyclonedx: dict[str, Any]) -> set[tuple[Any, ...]]:
    """Each package as the issue compares them: name, version, type, purl, licences, locations."""
    out = set()
    for c in cyclonedx["components"]:
        props = c.get("properties", [])
        locations = sorted(p["value"] for p in props if p["name"].startswith("syft:location:"))
        kind = next((p["value"] for p in props if p["name"] == "syft:package:type"), c.get("type"))
        licences = json.dumps(c.get("licenses", []), sort_keys=True)
        out.add((c["name"], c.get("version"), kind, c.get("purl"), licences, tuple(locations)))
    return out


def _spdx_content(doc: dict[str, Any]) -> dict[str, Any]:
    """The SPDX document without what differs between any two runs (time, namespace, our comment)."""
    return {
        "packages": sorted(json.dumps(p, sort_keys=True) for p in doc["packages"]),
        "files": sorted(json.dumps(f, sort_keys=True) for f in doc.get("files", [])),
        "relationships": sorted(json.dumps(r, sort_keys=True) for r in doc["relationships"]),
        "name": doc["name"],
    }


def _cyclonedx_content(doc: dict[str, Any]) -> dict[str, Any]:
    metadata = {k: v for k, v in doc["metadata"].items() if k not in ("timestamp", "properties")}
    return {
        "metadata": metadata,
        "components": sorted(json.dumps(c, sort_keys=True) for c in doc["components"]),
        "dependencies": sorted(json.dumps(d, sort_keys=True) for d in doc.get("dependencies", [])),
    }


def assert_same_as_whole_image(repo: Path, result: dict[str, Any], tmp: Path) -> None:
    spdx = json.loads(Path(result["outputs"]["spdx"]).read_text())
    cyclonedx = json.loads(Path(result["outputs"]["cyclonedx"]).read_text())
    whole_spdx, whole_cyclonedx = _whole_image_scan(repo, result, tmp)
    assert _packages(cyclonedx) == _packages(whole_cyclonedx)
    assert _spdx_content(spdx) == _spdx_content(whole_spdx)
    assert _cyclonedx_content(cyclonedx) == _cyclonedx_content(whole_cyclonedx)
    assert validate_full_spdx_document(parse_file(result["outputs"]["spdx"])) == []
    version = SchemaVersion.from_version(cyclonedx["specVersion"])
    assert JsonStrictValidator(version).validate_str(json.dumps(cyclonedx)) is None


def test_the_merged_layers_are_syfts_whole_image_scan_and_a_code_change_catalogues_one_layer(
    tmp_path: Path, small_base: BuiltBase, session_registry: LocalRegistry, cli: Callable[..., CliResult]
) -> None:
    """Several dependency layers (each wheel alone: big_wheel_mb 0), a Python link across two of
    them (markdown-it-py names pyyaml in a Requires-Dist with a marker, which syft links), the app."""
    repo = make_repo(
        tmp_path / "hello",
        {
            "tfgov.yaml": model_config(
                small_base.ref, session_registry.host, "  build:\n    options: {big_wheel_mb: 0}\n"
            ),
            "requirements.txt": "PyYAML==6.0.2\nmarkdown-it-py==3.0.0\n",
            "app.py": APP,
            "data/labels.txt": "a\nb\n",
        },
    )
    (repo / "advisories").mkdir()
    for stage in ("validate", "lock"):
        assert cli("run", stage, cwd=repo).code == 0
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "lock")
    built = build(cli, repo)
    assert len(built["data"]["layers"]) == 4  # type: ignore[index,arg-type]  # pyyaml, markdown-it-py, mdurl, app
    first = _sbom(cli, repo)
    assert first["data"]["catalogue"]["method"] == "layers", first["message"]
    assert_same_as_whole_image(repo, first, tmp_path)
    spdx = json.loads(Path(first["outputs"]["spdx"]).read_text())
    names = {p["SPDXID"]: p["name"] for p in spdx["packages"]}
    links = {
        (names.get(r["spdxElementId"]), names.get(r["relatedSpdxElement"]))
        for r in spdx["relationships"]
        if r["relationshipType"] == "DEPENDENCY_OF"
    }
    assert ("pyyaml", "markdown-it-py") in links  # drawn across two layers

    # A line no earlier run wrote: the cache is shared between runs, and this app layer is new.
    (repo / "app.py").write_text(APP + f"# one line more: {uuid.uuid4()}\n")
    git(repo, "commit", "-qam", "a code change")
    build(cli, repo)
    again = _sbom(cli, repo)
    layers = again["data"]["catalogue"]
    assert (layers["method"], layers["catalogued"], layers["cached"]) == ("layers", 1, layers["layers"] - 1)
    assert "1 of" in again["message"]
    ran = [c["argv"] for c in again["commands"]]
    assert [argv[:2] for argv in ran] == [["syft", "scan"], ["syft", "convert"]]  # the app layer only
    assert_same_as_whole_image(repo, again, tmp_path)


PASSWD = "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532::/home/nonroot:/bin/false\n"
DOCKERFILE = """FROM tensorflow/tensorflow:2.21.0
WORKDIR /app
COPY app.py .
COPY passwd /etc/passwd
"""


def test_a_layer_replacing_a_base_file_is_catalogued_whole_and_the_result_says_why(
    tmp_path: Path, small_base: BuiltBase, session_registry: LocalRegistry, cli: Callable[..., CliResult]
) -> None:
    require_tools("buildah")
    config = model_config(small_base.ref, session_registry.host, "  build:\n    backend: buildah\n")
    repo = make_repo(
        tmp_path / "hello",
        {
            "tfgov.yaml": config.replace("files: [app.py, data]", "files: [app.py, passwd]"),
            "requirements.txt": "",
            "app.py": 'print("hello")\n',
            "passwd": PASSWD,
            "Dockerfile": DOCKERFILE,
        },
    )
    (repo / "advisories").mkdir()
    for stage in ("validate", "lock"):
        assert cli("run", stage, cwd=repo).code == 0
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "lock")
    build(cli, repo)
    result = _sbom(cli, repo)
    catalogue = result["data"]["catalogue"]
    assert catalogue["method"] == "whole image"
    assert "/etc/passwd of layer 1" in catalogue["reason"] and catalogue["reason"] in result["message"]
    assert result["commands"][-2]["argv"][:2] == ["syft", "scan"]
    assert "--source-name" in result["commands"][-2]["argv"]  # the whole image, named as the image
    assert_same_as_whole_image(repo, result, tmp_path)
