"""``inventory list``: the images of the fleet, filtered by what a platform team asks about.

Filters combine (all must hold): repository (``*`` as a wildcard), governed or not, base (its
digest, or its reference), TensorFlow version (exact, or a prefix ending in ``*``: ``2.1*``),
policy decision (``allow``, ``deny``, ``none``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from tfgov_ci.inventory import refs, tables

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection


@dataclass(frozen=True)
class Filters:
    repository: str | None = None
    governed: bool | None = None
    base: str | None = None
    tensorflow: str | None = None
    decision: str | None = None  # allow, deny, none


@dataclass(frozen=True)
class Listed:
    digest: str
    repository: str | None
    tags: tuple[str, ...]
    commit: str | None
    governed: bool
    base: str | None
    tensorflow: str | None
    decision: str | None
    created: str | None
    deployments: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["tags"], out["deployments"] = list(self.tags), list(self.deployments)
        return out


def _like(pattern: str) -> str:
    escaped = pattern.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%")


def list_images(conn: Connection, filters: Filters) -> list[Listed]:
    from sqlalchemy import or_, select

    i = tables.images
    query = select(i)
    if filters.repository:
        query = query.where(i.c.repository.like(_like(filters.repository), escape="\\"))
    if filters.governed is not None:
        query = query.where(i.c.governed == filters.governed)
    if filters.base:
        query = query.where(or_(i.c.base_digest == filters.base, i.c.base_ref == filters.base,
                                i.c.base_ref.like(_like(filters.base), escape="\\")))  # fmt: skip
    if filters.tensorflow:
        query = query.where(i.c.tensorflow_version.like(_like(filters.tensorflow), escape="\\"))
    if filters.decision == "none":
        query = query.where(i.c.decision.is_(None))
    elif filters.decision:
        query = query.where(i.c.decision == filters.decision)
    rows = list(conn.execute(query.order_by(i.c.repository, i.c.created.desc(), i.c.digest)).mappings())
    ids = [r["id"] for r in rows]
    tags = refs.by_image(conn, tables.image_tags, "tag", ids)
    deployed = refs.by_image(conn, tables.deployments, "environment", ids)
    return [
        Listed(
            r["digest"],
            r["repository"],
            tags.get(r["id"], ()),
            r["commit_sha"],
            bool(r["governed"]),
            r["base_ref"] or r["base_digest"],
            r["tensorflow_version"],
            r["decision"],
            r["created"],
            deployed.get(r["id"], ()),
        )
        for r in rows
    ]


def render(images: list[Listed]) -> list[str]:
    lines = [f"{len(images)} image{'s' if len(images) != 1 else ''}"]
    for m in images:
        lines.append(f"{m.repository or '-'}@{m.digest}")
        lines.append(
            f"  tags {', '.join(m.tags) or '-'}; commit {m.commit or '-'}; "
            f"{'governed' if m.governed else 'UNGOVERNED'}; tensorflow {m.tensorflow or '-'}; "
            f"decision {m.decision or '-'}; deployed {', '.join(m.deployments) or 'not known'}"
        )
    return lines
