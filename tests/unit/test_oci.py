"""OCI layouts and deterministic layers: same entries, same bytes; corruption is caught."""

from __future__ import annotations

import gzip
import io
import tarfile
from pathlib import Path

import pytest

from tfgov_ci.oci.layer import LayerBuilder
from tfgov_ci.oci.layout import Layout, LayoutError


def _layer(folder: Path, order: list[str], epoch: int = 1_700_000_000) -> tuple[str, str]:
    builder = LayerBuilder(epoch)
    files = {"app/train.py": b"print(1)\n", "app/data/x.csv": b"a,b\n", "usr/bin/tool": b"#!/bin/true\n"}
    for name in order:
        builder.add_bytes(name, files[name], 0o755 if name.startswith("usr/bin") else 0o644)
    layer = builder.write(Layout.create(folder))
    return layer.descriptor.digest, layer.diff_id


def test_the_same_entries_in_any_order_give_the_same_layer(tmp_path: Path) -> None:
    one = _layer(tmp_path / "a", ["app/train.py", "app/data/x.csv", "usr/bin/tool"])
    two = _layer(tmp_path / "b", ["usr/bin/tool", "app/data/x.csv", "app/train.py"])
    assert one == two
    assert _layer(tmp_path / "c", ["app/train.py"], epoch=1) != _layer(tmp_path / "d", ["app/train.py"])


def test_layer_entries_are_sorted_with_parents_fixed_owners_and_times(tmp_path: Path) -> None:
    layout = Layout.create(tmp_path)
    builder = LayerBuilder(42)
    builder.add_bytes("b/file", b"x")
    builder.add_bytes("a/file", b"y")
    layer = builder.write(layout)
    blob = layout.read_blob(layer.descriptor.digest)
    assert blob[4:8] == b"\0\0\0\0"  # gzip header: no time
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(blob))) as tar:
        members = tar.getmembers()
    assert [m.name for m in members] == ["a", "a/file", "b", "b/file"]
    assert {(m.mtime, m.uid, m.gid, m.uname, m.gname) for m in members} == {(42, 0, 0, "", "")}


def test_a_corrupted_blob_is_detected_and_not_used(tmp_path: Path) -> None:
    layout = Layout.create(tmp_path)
    descriptor = layout.put_bytes(b"hello", "application/octet-stream")
    layout.blob_path(descriptor.digest).write_bytes(b"HELLO")
    with pytest.raises(LayoutError, match="corrupted"):
        layout.read_blob(descriptor.digest)
    with pytest.raises(LayoutError, match="corrupted"):
        layout.verify_blob(descriptor)


def test_a_layer_write_killed_midway_leaves_no_blob(tmp_path: Path) -> None:
    layout = Layout.create(tmp_path)
    builder = LayerBuilder(0)

    def exploding() -> io.BytesIO:
        raise KeyboardInterrupt

    builder.add_bytes("a", b"fine")
    builder.add_file("b", exploding, 10)  # type: ignore[arg-type]
    with pytest.raises(KeyboardInterrupt):
        builder.write(layout)
    assert list((tmp_path / "blobs" / "sha256").iterdir()) == []


def test_refs_move_between_manifests_and_resolve(tmp_path: Path) -> None:
    layout = Layout.create(tmp_path)
    one = layout.put_bytes(b"{}", "application/vnd.oci.image.manifest.v1+json")
    two = layout.put_bytes(b"{ }", "application/vnd.oci.image.manifest.v1+json")
    layout.tag(one, ("main", "abc"))
    layout.tag(two, ("main",))
    assert layout.resolve("main").digest == two.digest
    assert layout.resolve("abc").digest == one.digest
    with pytest.raises(LayoutError, match="no image 'zzz'"):
        layout.resolve("zzz")
