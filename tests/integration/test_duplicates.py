"""`inventory duplicates` on a real SQLite inventory of variants of the recorded pipeline run
(test_inventory.py's `variant`), each with Python packages added to its SBOM in the image's own
layer (as syft reports them) and TensorFlow in a base layer: two teams' near-copies, one image
unlike them, an older build of one repository, and an image that adds no Python package of its own."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers import CliResult
from tests.integration.test_inventory import variant
from tests.services import RecordedBuild
from tfgov_ci._cli import main

COMMON = [("numpy", "1.26.4"), ("pandas", "2.2.2"), ("scikit-learn", "1.5.0"), ("scipy", "1.13.1"),
          ("joblib", "1.4.2"), ("threadpoolctl", "3.5.0"), ("python-dateutil", "2.9.0"), ("pytz", "2024.1"),
          ("tzdata", "2024.1"), ("six", "1.16.0")]  # fmt: skip
FRAUD, CHURN, VISION, FRAUD_OLD, PLAIN = ("sha256:" + f"{n:064x}" for n in (21, 22, 23, 24, 25))
BASE_LAYER = "sha256:" + "b" * 64


def _in_base(component: dict[str, object]) -> None:
    for prop in component.get("properties", []):  # type: ignore[attr-defined]
        if prop["name"].endswith(":layerID"):
            prop["value"] = BASE_LAYER


def _image(build: RecordedBuild, folder: Path, n: int, repository: str, added: list[tuple[str, str]],
           created: str | None = None) -> Path:  # fmt: skip
    out = variant(build, folder, n)
    sbom = out / "sbom" / "sbom.cdx.json"
    doc = json.loads(sbom.read_text())
    pyyaml = next(c for c in doc["components"] if c.get("name", "").lower() == "pyyaml")
    for name, version in added:  # the same layer and kind of entry as the image's own PyYAML
        entry = json.loads(json.dumps(pyyaml))
        entry.update(name=name, version=version, purl=f"pkg:pypi/{name}@{version}")
        entry.pop("bom-ref", None)
        doc["components"].append(entry)
    # a Python package the base provides (in a layer that is not the image's own): not locked here
    base = json.loads(json.dumps(pyyaml))
    base.update(name="tensorflow", version="2.21.0", purl="pkg:pypi/tensorflow@2.21.0")
    base.pop("bom-ref", None)
    _in_base(base)
    doc["components"].append(base)
    if not added:  # its own layer holds its code only: PyYAML came with its base too
        _in_base(pyyaml)
    sbom.write_text(json.dumps(doc))
    record = json.loads((out / "record.json").read_text())
    record["image"]["repository"] = record["image"]["repository"].replace("ml/recorded", repository)
    if created:
        record["created"] = created
    (out / "record.json").write_text(json.dumps(record))
    return out


@pytest.fixture(scope="module")
def fleet(recorded_build: RecordedBuild, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("duplicates")
    outs = [
        _image(recorded_build, folder, 21, "team-a/fraud", [*COMMON, ("xgboost", "2.0.3")]),
        _image(recorded_build, folder, 22, "team-a/churn", [*COMMON, ("lightgbm", "4.3.0")]),
        _image(
            recorded_build, folder, 23, "team-b/vision", [("pillow", "10.3.0"), ("opencv-python", "4.9.0.80")]
        ),
        _image(recorded_build, folder, 24, "team-a/fraud", COMMON[:6], created="2020-01-02T03:04:05.000Z"),
        _image(recorded_build, folder, 25, "team-c/plain", []),
    ]
    db = folder / "inventory.sqlite"
    assert main(["inventory", "import", *map(str, outs), "--inventory", str(db)]) == 0
    return db


def _dupes(cli: Callable[..., CliResult], db: Path, *args: str) -> dict[str, object]:
    done = cli("inventory", "duplicates", *args, "--format", "json", "--inventory", str(db))
    assert done.code == 0, done.err
    answer: dict[str, object] = json.loads(done.out)
    return answer


def test_near_copies_are_grouped_with_what_they_share_and_what_each_adds(
    fleet: Path, cli: Callable[..., CliResult]
) -> None:
    answer = _dupes(cli, fleet)
    assert answer["method"] == "exact" and answer["images_compared"] == 3  # the newest of each repository
    assert answer["images_adding_nothing"] == 1  # team-c/plain: not compared as all its base's packages
    (group,) = answer["groups"]  # type: ignore[misc]
    assert [m["digest"] for m in group["members"]] == [CHURN, FRAUD]
    shared = {f"{name}=={version}" for name, version in COMMON} | {"pyyaml==6.0.2"}
    assert set(group["shared"]) == shared  # not the base's TensorFlow
    assert [m["adds"] for m in group["members"]] == [["lightgbm==4.3.0"], ["xgboost==2.0.3"]]
    assert group["similarity"] == {"min": round(11 / 13, 4), "max": round(11 / 13, 4)}
    assert (
        group["suggestion"]
        == "a team base with the 11 shared packages; each image then locks only what it adds"
    )
    text = cli("inventory", "duplicates", "--inventory", str(fleet)).out
    assert text.startswith("1 group of near-copies among 3 images (the newest image of each repository): ")
    assert "exact Jaccard over every pair" in text and "adds xgboost==2.0.3" in text
    assert "not compared: 1 image whose own layers add no Python package" in text
    assert "suggestion: a team base with the 11 shared packages" in text


def test_the_threshold_decides_and_every_image_brings_in_the_older_build(
    fleet: Path, cli: Callable[..., CliResult]
) -> None:
    assert _dupes(cli, fleet, "--threshold", "0.9")["groups"] == []
    every = _dupes(cli, fleet, "--all-images", "--threshold", "0.5")
    (group,) = every["groups"]  # type: ignore[misc]
    assert every["images_compared"] == 4 and len(group["members"]) == 3
    assert len(group["shared"]) == 7  # the older build's six packages and PyYAML


def test_minhash_lsh_finds_the_same_group_and_says_it_ran(fleet: Path, cli: Callable[..., CliResult]) -> None:
    answer = _dupes(cli, fleet, "--method", "minhash-lsh")
    assert answer["method"] == "minhash-lsh"
    assert [[m["digest"] for m in g["members"]] for g in answer["groups"]] == [[CHURN, FRAUD]]  # type: ignore[attr-defined]
    text = cli("inventory", "duplicates", "--method", "minhash-lsh", "--inventory", str(fleet)).out
    assert "MinHash LSH (128 permutations, datasketch), each proposed pair checked exactly" in text


def test_an_empty_inventory_has_no_groups_and_a_threshold_out_of_range_exits_2(
    cli: Callable[..., CliResult], tmp_path: Path
) -> None:
    db = tmp_path / "empty.sqlite"
    done = cli("inventory", "duplicates", "--inventory", str(db))
    assert done.code == 0 and done.out.startswith("0 groups of near-copies among 0 images")
    for bad in ("0", "1.5", "-1"):
        refused = cli("inventory", "duplicates", "--threshold", bad, "--inventory", str(db))
        assert refused.code == 2 and "a Jaccard similarity above 0 and at most 1" in refused.err
