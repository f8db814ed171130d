"""Where images run, as deploy jobs report it: ``inventory mark-deployed REF ENV``.

One row per image and environment, its time moved on each report (a redeploy is not a second
deployment). Instances themselves come from the cluster's telemetry, never from an agent of ours
(DESIGN.md); this is what a deploy job knows when it deploys.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from tfgov_ci.errors import UsageError
from tfgov_ci.inventory import refs, tables
from tfgov_ci.inventory.ingest import insert
from tfgov_ci.pipeline import now

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

_ENVIRONMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,199}$")


def mark_deployed(conn: Connection, ref: str, environment: str) -> str:
    """Record that the image ``ref`` names runs in ``environment``; returns its digest."""
    from sqlalchemy import select

    if not _ENVIRONMENT.match(environment):
        raise UsageError(
            f"{environment!r} is not an environment name",
            "letters, digits and . _ / - (e.g. production, staging/eu-west-1), at most 200",
        )
    image_id = refs.image_id(conn, ref)
    row = {"image_id": image_id, "environment": environment, "ref": ref, "deployed": now()}
    statement = insert(conn, tables.deployments).values(row)
    conn.execute(
        statement.on_conflict_do_update(
            index_elements=[tables.deployments.c.image_id, tables.deployments.c.environment],
            set_={"ref": statement.excluded.ref, "deployed": statement.excluded.deployed},
        )
    )
    digest: str = conn.execute(
        select(tables.images.c.digest).where(tables.images.c.id == image_id)
    ).scalar_one()
    return digest
