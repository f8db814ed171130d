"""What the record stage asks of the inventory: which one to write into, and writing the build.

The record stage writes the build into the inventory when one is configured:

- ``$TFGOV_INVENTORY_URL`` (in CI a masked variable holding a PostgreSQL URL and its password;
  the stage table names it among the record stage's secrets), else
- ``stages.record.options.inventory`` in tfgov.yaml: ``default`` for the per-user SQLite file, or
  a URL or path *without* a password (a password belongs in the variable, never in the file);
  ``false`` turns recording off even when the variable is set.

With neither, the stage records nothing and says so in its plan. This module is the one place the
record stage reaches into the inventory (pyproject.toml's import contract allows that one edge).
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from tfgov_ci.errors import ConfigError, Problem
from tfgov_ci.inventory import location
from tfgov_ci.inventory.evidence import Attestation, ImageEvidence
from tfgov_ci.predicates import RECORD_PREDICATE

OPTION = "stages.record.options.inventory"


def target(option: Any, config_file: Path) -> str | None:
    """The inventory URL the record stage writes into, or None when none is configured."""
    if option is False:
        return None
    if os.environ.get(location.ENV):
        return os.environ[location.ENV]
    if option is None:
        return None
    if option is True or option == "default":
        return location.chosen(None)
    if not isinstance(option, str) or not option:
        raise ConfigError(
            [Problem(str(config_file), OPTION, f"must be default, false, or a URL, not {option!r}")]
        )
    if location.holds_password(option):
        raise ConfigError(
            [
                Problem(
                    str(config_file),
                    OPTION,
                    f"{location.masked(option)} holds a password",
                    f"put the URL in ${location.ENV} (a masked CI variable), never in tfgov.yaml",
                )
            ]
        )
    return option


def record(url: str, out_dir: Path, attested_record: str | None) -> ImageEvidence:
    """Write the build of ``out_dir`` into the inventory at ``url``, in one transaction; the
    record stage's own attestation (the digest of the bytes it attested) is added, since its
    result is not on disk yet."""
    from tfgov_ci.inventory import evidence, ingest
    from tfgov_ci.inventory.store import open_store

    image = evidence.read(out_dir)
    if attested_record is not None:
        others = tuple(a for a in image.attestations if a.predicate_type != RECORD_PREDICATE)
        image = replace(image, attestations=(*others, Attestation(RECORD_PREDICATE, attested_record)))
    with open_store(url) as store, store.writing() as conn:
        ingest.save(conn, image)
    return image
