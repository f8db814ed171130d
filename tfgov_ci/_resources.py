"""Where the data files that ship with tfgov-ci live: schemas/ and pipelines/.

In a checkout (and an editable install) they are the top-level folders; a wheel carries them
inside the package as ``tfgov_ci/_data/`` (see pyproject.toml). Everything finds them here.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

_PACKAGE = Path(__file__).resolve().parent


@functools.cache
def data_dir(name: str) -> Path:
    """The folder ``schemas`` or ``pipelines``, wherever this installation keeps it."""
    for candidate in (_PACKAGE / "_data" / name, _PACKAGE.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"tfgov-ci installation is missing its {name}/ folder")


@functools.cache
def schema(name: str) -> dict[str, Any]:
    """A JSON Schema by file stem, e.g. ``schema("tfgov")`` for schemas/tfgov.schema.json."""
    loaded: dict[str, Any] = json.loads(
        (data_dir("schemas") / f"{name}.schema.json").read_text(encoding="utf-8")
    )
    return loaded
