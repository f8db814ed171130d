"""`tfgov-ci base build`: a distroless Python runtime from real Debian packages, reproducible."""

from __future__ import annotations

import json
from pathlib import Path

from tests.helpers import extract_image, run_in_rootfs
from tests.services import SHARED_CACHE, BuiltBase
from tfgov_ci.stages.build import base_factory


def test_the_base_is_distroless_non_root_and_visible_to_scanners(
    small_base: BuiltBase, tmp_path: Path
) -> None:
    rootfs = tmp_path / "rootfs"
    config = extract_image(small_base.layout, small_base.tag, rootfs)
    assert config["config"]["User"] == "65532:65532"  # type: ignore[index]
    for absent in ("bin/sh", "usr/bin/sh", "bin/bash", "usr/bin/dpkg", "usr/bin/apt-get", "usr/bin/perl"):
        assert not (rootfs / absent).exists(), absent
    assert "ID=debian" in (rootfs / "etc/os-release").read_text()
    status = (rootfs / "var/lib/dpkg/status").read_text()
    lock = json.loads(base_factory.load_definition(small_base.definition).lock.read_text())
    listed = sorted(line.split(": ", 1)[1] for line in status.splitlines() if line.startswith("Package: "))
    assert listed == sorted(p["name"] for p in lock["packages"])  # exactly what is inside
    assert "python3.11-minimal" in listed and "dpkg" not in listed
    assert "nonroot:x:65532:65532" in (rootfs / "etc/passwd").read_text()
    for dropped in ("usr/share/man", "usr/share/info", "usr/share/lintian"):
        assert not (rootfs / dropped).exists(), dropped
    docs = [
        p.relative_to(rootfs / "usr/share/doc") for p in (rootfs / "usr/share/doc").rglob("*") if p.is_file()
    ]
    assert docs and all(p.name == "copyright" for p in docs)  # licences kept, the rest dropped


def test_python_runs_inside_the_base_as_the_non_root_user(small_base: BuiltBase, tmp_path: Path) -> None:
    rootfs = tmp_path / "rootfs"
    extract_image(small_base.layout, small_base.tag, rootfs)
    done = run_in_rootfs(
        rootfs, ["/usr/bin/python3", "-c", "import os, ssl, sqlite3, json; print(os.getuid())"]
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "65532"


def test_rebuilding_from_the_same_lock_gives_the_same_digest(small_base: BuiltBase, tmp_path: Path) -> None:
    definition = base_factory.load_definition(small_base.definition)
    again = base_factory.build(definition, tmp_path / "elsewhere", SHARED_CACHE)
    assert again.digest == small_base.digest


def test_a_deb_whose_bytes_differ_from_the_lock_is_refused(small_base: BuiltBase, tmp_path: Path) -> None:
    import pytest

    definition = base_factory.load_definition(small_base.definition)
    lock = json.loads(definition.lock.read_text())
    lock["packages"][0]["sha256"] = "0" * 64
    bad = tmp_path / "tfgov-base.lock.json"
    bad.write_text(json.dumps(lock))
    tampered = base_factory.BaseDefinition(**{**definition.__dict__, "lock": bad})
    with pytest.raises(base_factory.BaseBuildError, match="the lock says 0000"):
        base_factory.build(tampered, tmp_path / "out", tmp_path / "fresh-cache")
