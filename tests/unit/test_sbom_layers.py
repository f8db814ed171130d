"""When the layers' catalogues may be merged, and the links syft draws between Python packages.

The layers are real tar files (written here with tarfile) read by the stage's own reader; the
catalogues are syft's JSON in the shape syft 1.18 writes it (the integration tests compare the
merge with syft's whole-image scan on real images).
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path
from typing import Any

from tfgov_ci.stages.sbom.layers import (
    LayerCatalogue,
    LayerIndex,
    Untrusted,
    merge,
    package_problem,
    path_problem,
    python_dependencies,
)

SITE = "/usr/local/lib/python3.11/dist-packages"


def _layer(path: Path, files: dict[str, bytes]) -> LayerIndex:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return LayerIndex.read(path)


def _python(name: str, path: str, requires: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "id": f"id-{name}-{path}",
        "name": name,
        "version": "1.0",
        "type": "python",
        "purl": f"pkg:pypi/{name}@1.0",
        "locations": [{"path": path, "annotations": {"evidence": "primary"}}],
        "metadata": {"requiresDist": requires or []},
        **extra,
    }


def _catalogue(index: LayerIndex, *artifacts: dict[str, Any], source: str = "one-layer") -> LayerCatalogue:
    doc = {"artifacts": list(artifacts), "artifactRelationships": [], "files": [], "source": {"id": source}}
    return LayerCatalogue("sha256:" + source, "application/vnd.oci.image.layer.v1.tar+gzip", index, doc)


def _index(*files: str, whiteouts: tuple[str, ...] = ()) -> LayerIndex:
    return LayerIndex(frozenset(files), frozenset(whiteouts), frozenset(), 0)


def test_a_layers_index_holds_its_files_whiteouts_record_paths_and_size(tmp_path: Path) -> None:
    record = b"yaml/__init__.py,sha256=x,10\nPyYAML-6.0.dist-info/RECORD,,\n"
    index = _layer(
        tmp_path / "layer.tar.gz",
        {
            "usr/local/lib/python3.11/dist-packages/PyYAML-6.0.dist-info/RECORD": record,
            "usr/local/lib/python3.11/dist-packages/yaml/__init__.py": b"0123456789",
            "etc/.wh.motd": b"",
            "opt/cache/.wh..wh..opq": b"",
        },
    )
    assert index.files == {f"{SITE}/PyYAML-6.0.dist-info/RECORD", f"{SITE}/yaml/__init__.py"}
    assert index.whiteouts == {"/etc/motd", "/opt/cache/"}
    assert index.owned == {f"{SITE}/yaml/__init__.py", f"{SITE}/PyYAML-6.0.dist-info/RECORD"}
    assert index.size == len(record) + 10  # the files' sizes added up, as syft reports a layer's


def test_a_layer_that_deletes_or_replaces_a_file_below_it_cannot_be_merged() -> None:
    base = _index("/etc/passwd", "/etc/hostname", "/usr/bin/python3.11")
    assert path_problem([base, _index("/app/app.py", "/etc/hostname")]) is None  # runtimes mount over it
    replaced = path_problem([base, _index("/app/app.py", "/etc/passwd")])
    assert isinstance(replaced, Untrusted) and "/etc/passwd of layer 1" in replaced.reason
    deleted = path_problem([base, _index("/app/app.py", whiteouts=("/usr/bin/python3.11",))])
    assert isinstance(deleted, Untrusted) and "layer 2 deletes 1 path(s)" in deleted.reason


def test_packages_whose_links_span_layers_by_rules_not_reproduced_are_not_merged() -> None:
    os_layer = _index("/etc/os-release", "/var/lib/dpkg/status.d/libc6")
    libc = {"id": "libc6", "name": "libc6", "type": "deb", "locations": [], "metadata": {"files": []}}
    zlib = {**libc, "id": "zlib", "name": "zlib1g"}
    assert package_problem([_catalogue(os_layer, libc), _catalogue(_index("/app/x"))]) is None
    apart = package_problem(
        [_catalogue(os_layer, libc), _catalogue(_index("/var/lib/dpkg/status.d/z"), zlib)]
    )
    assert isinstance(apart, Untrusted) and "without the distribution's os-release" in apart.reason
    npm = [{"id": f"n{n}", "name": f"left-pad{n}", "type": "npm", "locations": []} for n in (1, 2)]
    spread = package_problem([_catalogue(_index("/a"), npm[0]), _catalogue(_index("/b"), npm[1])])
    assert isinstance(spread, Untrusted) and "npm packages in 2 layers" in spread.reason
    owner = {**libc, "metadata": {"files": [{"path": "/usr/bin/python3.11"}]}}
    binary = {"id": "py", "name": "python", "type": "binary", "locations": [{"path": "/usr/bin/python3.11"}]}
    owned = package_problem([_catalogue(os_layer, owner), _catalogue(_index("/usr/bin/python3.11"), binary)])
    assert isinstance(owned, Untrusted) and "an OS package of layer 1 owns" in owned.reason
    venv = package_problem(
        [_catalogue(_index("/opt/venv/pyvenv.cfg"), _python("six", f"{SITE}/six/METADATA"))]
    )
    assert isinstance(venv, Untrusted) and "/opt/venv/pyvenv.cfg" in venv.reason


def test_python_links_follow_syfts_rule_a_name_cut_at_a_parenthesis_or_semicolon() -> None:
    """syft 1.18 cuts each Requires-Dist entry at "(" or ";" only: "mdurl~=0.1" names no package,
    "pyyaml ; extra == 'x'" and "six (>=1.5)" do."""
    six = _python("six", f"{SITE}/six-1.17.dist-info/METADATA")
    pyyaml = _python("pyyaml", f"{SITE}/PyYAML-6.0.dist-info/METADATA")
    mdurl = _python("mdurl", f"{SITE}/mdurl-0.1.dist-info/METADATA")
    markdown = _python(
        "markdown-it-py",
        f"{SITE}/markdown_it_py-4.0.dist-info/METADATA",
        ["mdurl~=0.1", "pyyaml ; extra == 'testing'", "six (>=1.5)"],
    )
    links = {(link["parent"], link["child"]) for link in python_dependencies([six, pyyaml, mdurl, markdown])}
    assert links == {(pyyaml["id"], markdown["id"]), (six["id"], markdown["id"])}


def test_a_copy_vendored_inside_another_package_shadows_the_real_one_as_in_syft() -> None:
    """Two packages of one name in one site-packages folder: syft keeps the one whose evidence
    comes last by path (setuptools/_vendor/packaging after packaging-*.dist-info) and links only it."""
    real = _python("packaging", f"{SITE}/packaging-26.0.dist-info/METADATA")
    vendored = _python("packaging", f"{SITE}/setuptools/_vendor/packaging-24.2.dist-info/METADATA")
    keras = _python("keras", f"{SITE}/keras-3.0.dist-info/METADATA", ["packaging"])
    links = python_dependencies([real, keras, vendored])
    assert [(link["parent"], link["child"]) for link in links] == [(vendored["id"], keras["id"])]


def test_merge_joins_layers_under_the_images_id_and_links_python_packages_across_them() -> None:
    pyyaml = _python("pyyaml", f"{SITE}/PyYAML-6.0.dist-info/METADATA")
    markdown = _python(
        "markdown-it-py", f"{SITE}/markdown_it_py-4.0.dist-info/METADATA", ["pyyaml; extra == 't'"]
    )
    lower = _catalogue(_index(f"{SITE}/PyYAML-6.0.dist-info/METADATA"), pyyaml, source="a")
    upper = _catalogue(_index(f"{SITE}/markdown_it_py-4.0.dist-info/METADATA"), markdown, source="b")
    for layer, artifact in ((lower, pyyaml), (upper, markdown)):
        layer.syft["artifactRelationships"].append(
            {"parent": layer.syft["source"]["id"], "child": artifact["id"], "type": "contains"}
        )
    merged = merge([lower, upper], {"id": "image"})
    assert isinstance(merged, dict)
    assert [a["name"] for a in merged["artifacts"]] == ["markdown-it-py", "pyyaml"]
    assert {(r["parent"], r["child"], r["type"]) for r in merged["artifactRelationships"]} == {
        ("image", markdown["id"], "contains"),
        ("image", pyyaml["id"], "contains"),
        (pyyaml["id"], markdown["id"], "dependency-of"),
    }
