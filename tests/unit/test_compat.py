"""The TensorFlow compatibility table and the image-reference parser."""

from __future__ import annotations

import pytest

from tfgov_ci import compat
from tfgov_ci.oci import reference


@pytest.mark.parametrize("row", compat.RELEASES, ids=lambda r: r.version)
def test_every_release_row_is_coherent(row: compat.TfRelease) -> None:
    assert row.python_min <= row.python_max
    assert compat.release(f"{row.version}.0") is row
    assert compat.cuda_compatible(row, row.cuda)
    major = row.cuda.split(".")[0]
    assert not compat.cuda_compatible(row, f"{int(major) + 1}.0")


def test_releases_are_newest_first_and_unique() -> None:
    versions = [tuple(map(int, r.version.split("."))) for r in compat.RELEASES]
    assert versions == sorted(set(versions), reverse=True)


def test_known_pairs() -> None:
    assert compat.release("2.21.0").supports_python("3.11")  # type: ignore[union-attr]
    assert not compat.release("2.21").supports_python("3.9")  # type: ignore[union-attr]
    assert compat.release("2.15.1").supports_python("3.11")  # type: ignore[union-attr]
    assert not compat.release("2.15.1").supports_python("3.12")  # type: ignore[union-attr]
    assert compat.release("2.9.0") is None
    assert compat.releases_for_python("3.9")[0] == "2.20"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ubuntu", ("docker.io", "library/ubuntu", None, None)),
        ("tensorflow/tensorflow:2.21.0", ("docker.io", "tensorflow/tensorflow", "2.21.0", None)),
        ("localhost:5000/ml/x@sha256:" + "a" * 64, ("localhost:5000", "ml/x", None, "sha256:" + "a" * 64)),
        (
            "harbor.corp.example/platform/tf-base:2.21@sha256:" + "b" * 64,
            ("harbor.corp.example", "platform/tf-base", "2.21", "sha256:" + "b" * 64),
        ),
    ],
)
def test_references_parse_like_docker(text: str, expected: tuple[str, str, str | None, str | None]) -> None:
    ref = reference.parse(text)
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == expected
    assert ref.pinned == (expected[3] is not None)


@pytest.mark.parametrize("text", ["Registry.example.com/UPPER/x", "x@sha256:short", "x:bad tag", "x:-lead"])
def test_bad_references_are_refused(text: str) -> None:
    with pytest.raises(reference.ReferenceError):
        reference.parse(text)
