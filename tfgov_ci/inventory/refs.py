"""Finding an image in the store by what a user or a cluster knows of it.

A cluster reports a running pod's image by digest (``sha256:...`` or ``REPO@sha256:...``); a
person or a deploy job names a tag (``REPO:TAG``). A tag that moved (``main``) names the image
built last under it (then the one recorded last). An image the inventory does not hold is
:class:`NotRecorded` (exit 1): an answer, "not known here", with the way to make it known.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from tfgov_ci.errors import EXIT_GATE, TfgovError, UsageError
from tfgov_ci.inventory import tables

if TYPE_CHECKING:
    from sqlalchemy import Select
    from sqlalchemy.engine import Connection

_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
IMPORT_HINT = "record it with `tfgov-ci inventory import` on the build's out directory or record.json"


class NotRecorded(TfgovError):
    """The inventory holds no such image (exit 1, like a gate's no: the answer is 'unknown')."""

    exit_code = EXIT_GATE


def image_id(conn: Connection, ref: str) -> int:
    """The row id of the image ``ref`` names: a digest, ``REPO@DIGEST`` or ``REPO:TAG``."""
    from sqlalchemy import select

    images, tags = tables.images, tables.image_tags
    digest = ref.rpartition("@")[2]
    if digest.startswith("sha256:"):
        if not _DIGEST.match(digest):
            raise UsageError(f"{ref}: not a sha256 digest", "a digest is sha256: and 64 hex digits")
        query = select(images.c.id).where(images.c.digest == digest)
    else:
        repository, tag = _split_tag(ref)
        query = (
            select(images.c.id)
            .join(tags, tags.c.image_id == images.c.id)
            .where(images.c.repository == repository, tags.c.tag == tag)
            .order_by(images.c.created.desc().nulls_last(), images.c.recorded.desc(), images.c.id.desc())
            .limit(1)
        )
    found = conn.execute(query).scalar()
    if found is None:
        raise NotRecorded(f"no image {ref} in the inventory", IMPORT_HINT)
    return int(found)


def _split_tag(ref: str) -> tuple[str, str]:
    """``REPO:TAG`` (a port in the registry host is not a tag)."""
    repository, sep, tag = ref.rpartition(":")
    if not sep or "/" in tag or not repository:
        raise UsageError(
            f"{ref}: name the image by digest (sha256:...), REPO@sha256:... or REPO:TAG",
            "as `docker inspect` or the cluster reports it, e.g. registry.example.com/ml/model:main",
        )
    return repository, tag


def by_image(
    conn: Connection, table: Any, column: str, ids: list[int] | Select[Any]
) -> dict[int, tuple[str, ...]]:
    """Each image's values of ``column`` in ``table`` (tags, environments), sorted; of the images
    ``ids`` lists, or a query of image ids selects (asked in one statement however many)."""
    from sqlalchemy import select

    out: dict[int, list[str]] = {}
    if isinstance(ids, list):
        queries = [table.c.image_id.in_(ids[start : start + 500]) for start in range(0, len(ids), 500)]
    else:
        queries = [table.c.image_id.in_(ids)]
    for condition in queries:
        query = select(table.c.image_id, table.c[column]).where(condition)
        for image_id, value in conn.execute(query.order_by(table.c[column])).all():
            out.setdefault(image_id, []).append(value)
    return {k: tuple(v) for k, v in out.items()}
