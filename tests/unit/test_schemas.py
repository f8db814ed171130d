"""Every schema is a valid JSON Schema 2020-12, and every file tfgov-ci reads or writes has one."""

from __future__ import annotations

import json

import jsonschema
import pytest
import yaml

from tests.helpers import EXAMPLE, ROOT

SCHEMAS = sorted((ROOT / "schemas").glob("*.schema.json"))


@pytest.mark.parametrize("path", SCHEMAS, ids=lambda p: p.name)
def test_schema_is_valid_2020_12(path: object) -> None:
    schema = json.loads(path.read_text())  # type: ignore[attr-defined]
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)


def test_the_files_tfgov_reads_and_writes_each_have_a_schema() -> None:
    names = {p.name.removesuffix(".schema.json") for p in SCHEMAS}
    assert {
        "tfgov",
        "org-config",
        "pipeline",
        "stage-result",
        "build-record",
        "base",
        "base-lock",
        "dependency-tree",
    } <= names


def test_example_and_pipelines_validate() -> None:
    tfgov = json.loads((ROOT / "schemas/tfgov.schema.json").read_text())
    jsonschema.validate(yaml.safe_load((EXAMPLE / "tfgov.yaml").read_text()), tfgov)
    jsonschema.validate(yaml.safe_load((ROOT / "examples/tf-base/tfgov.yaml").read_text()), tfgov)
    pipeline = json.loads((ROOT / "schemas/pipeline.schema.json").read_text())
    for path in (ROOT / "pipelines").glob("*.yaml"):
        jsonschema.validate(yaml.safe_load(path.read_text()), pipeline)
