"""``inventory duplicates``: snowflakes, images whose locked packages are nearly the same.

Each image is compared by its locked set: ``name==version`` of the Python packages it adds on top
of its base (the packages the SBOM found in the image's own layers, matched by the layers' diff ids
that the build result lists; every Python package of the image when those are not known, as for an
image from the registry or an older build). An image whose own layers add no Python package (its
code on its base as it is) is no snowflake: it is counted, not compared. Builds of one repository
are near-copies by nature, so by default each repository is represented by its newest image
(``every_image`` compares them all).
Two sets are alike when their Jaccard similarity |A∩B| / |A∪B| is at least ``threshold``; alike
images form groups (linked transitively), and each group is reported with what all its members
share, what each adds, and the suggestion to make the shared set a team base.

A small fleet is compared pair by pair, exactly. A large one (more than ``EXACT_LIMIT`` images)
goes through datasketch's MinHash LSH, which finds the pairs likely above the threshold without
comparing every pair; each pair it proposes is then checked with the exact Jaccard, so nothing
below the threshold is reported, though a pair near it can be missed (LSH's false negatives). The
answer says which method ran.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from itertools import combinations
from typing import TYPE_CHECKING, Any

from tfgov_ci.inventory import tables

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

EXACT_LIMIT = 1500  # images; above this, MinHash LSH (~1.1 million pairs is a few seconds exactly)
NUM_PERM = 128


@dataclass(frozen=True)
class Member:
    digest: str
    repository: str | None
    packages: int
    adds: tuple[str, ...]  # name==version not shared by the whole group


@dataclass(frozen=True)
class Group:
    members: tuple[Member, ...]
    shared: tuple[str, ...]
    min_similarity: float  # the least similar pair that links the group
    max_similarity: float

    def to_json(self) -> dict[str, Any]:
        return {
            "members": [
                {"digest": m.digest, "repository": m.repository, "packages": m.packages, "adds": list(m.adds)}
                for m in self.members
            ],
            "shared": list(self.shared),
            "similarity": {"min": round(self.min_similarity, 4), "max": round(self.max_similarity, 4)},
            "suggestion": self.suggestion,
        }

    @property
    def suggestion(self) -> str:
        if not self.shared:  # alike pair by pair, linked through each other, nothing common to all
            return "no package common to every member: split the group before making a base of it"
        shared = len(self.shared)
        return f"a team base with the {shared} shared packages; each image then locks only what it adds"


@dataclass(frozen=True)
class Duplicates:
    method: str  # exact or minhash-lsh
    threshold: float
    compared: int  # images compared
    pairs: int  # pairs above the threshold
    groups: tuple[Group, ...]
    every_image: bool
    adding_nothing: int  # images whose own layers add no Python package: not compared

    def to_json(self) -> dict[str, Any]:
        return {
            "schema_version": 1,
            "method": self.method,
            "threshold": self.threshold,
            "images_compared": self.compared,
            "images_adding_nothing": self.adding_nothing,
            "every_image": self.every_image,
            "pairs": self.pairs,
            "groups": [g.to_json() for g in self.groups],
        }


def locked_sets(
    conn: Connection, *, every_image: bool = False
) -> tuple[dict[int, tuple[str, str | None, frozenset[str]]], int]:
    """Each compared image's id -> (digest, repository, its locked set); and how many images add
    no Python package in their own layers (not compared)."""
    import json

    from sqlalchemy import select

    i, b, p, link = tables.images, tables.image_builds, tables.packages, tables.image_packages
    query = select(i.c.id, i.c.digest, i.c.repository, i.c.created, i.c.recorded, b.c.layers)
    images: list[Mapping[str, Any]] = [
        dict(r) for r in conn.execute(query.select_from(i.outerjoin(b, b.c.image_id == i.c.id))).mappings()
    ]
    if not every_image:
        images = tables.newest_of_each_repository(images)
    # SBOMs name a layer by its uncompressed digest (the diff id the build result records)
    own = {
        r["id"]: {layer[2] for layer in json.loads(r["layers"] or "[]") if len(layer) > 2 and layer[2]}
        for r in images
    }
    # Python packages by id, then each image's links by its key (the primary key's first column):
    # a join filtered on the packages' type makes SQLite walk every link of every package instead
    pypi = {pid: f"{key}=={version}" for pid, key, version in
            conn.execute(select(p.c.id, p.c.key, p.c.version).where(p.c.type == "pypi"))}  # fmt: skip
    by_image: dict[int, list[tuple[str, str]]] = {r["id"]: [] for r in images}
    ids = sorted(by_image)
    for start in range(0, len(ids), 500):
        query = select(link.c.image_id, link.c.layer, link.c.package_id).where(
            link.c.image_id.in_(ids[start : start + 500])
        )
        for row in conn.execute(query):
            name = pypi.get(int(row.package_id))
            if name is not None:
                by_image[int(row.image_id)].append((str(row.layer), name))
    out, adding_nothing = {}, 0
    for r in images:
        found, layers = by_image[r["id"]], own[r["id"]]
        if layers:
            chosen = {name for layer, name in found if layer in layers}
            adding_nothing += not chosen
        else:  # layers unknown: every Python package
            chosen = {name for _, name in found}
        if chosen:
            out[r["id"]] = (r["digest"], r["repository"], frozenset(chosen))
    return out, adding_nothing


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    union = len(a | b)
    return len(a & b) / union if union else 0.0


def _exact_pairs(sets: Mapping[int, frozenset[str]], threshold: float) -> dict[tuple[int, int], float]:
    pairs = {}
    for x, y in combinations(sorted(sets), 2):
        a, b = sets[x], sets[y]
        if min(len(a), len(b)) < threshold * max(len(a), len(b)):
            continue  # |A∩B|/|A∪B| <= min/max: cannot reach the threshold
        similarity = jaccard(a, b)
        if similarity >= threshold:
            pairs[(x, y)] = similarity
    return pairs


def _lsh_pairs(sets: Mapping[int, frozenset[str]], threshold: float) -> dict[tuple[int, int], float]:
    from datasketch import MinHash, MinHashLSH  # type: ignore[import-untyped]

    ids = sorted(sets)
    hashes = MinHash.bulk([[s.encode() for s in sets[k]] for k in ids], num_perm=NUM_PERM)
    # LSH's own threshold a little under ours: fewer pairs near it missed; each is checked exactly
    lsh = MinHashLSH(threshold=max(0.05, threshold - 0.1), num_perm=NUM_PERM)
    with lsh.insertion_session() as session:
        for k, h in zip(ids, hashes, strict=True):
            session.insert(k, h)
    pairs = {}
    for k, h in zip(ids, hashes, strict=True):
        for other in lsh.query(h):
            if other <= k:
                continue
            similarity = jaccard(sets[k], sets[other])
            if similarity >= threshold:
                pairs[(k, other)] = similarity
    return pairs


def duplicates(
    conn: Connection, threshold: float = 0.8, *, every_image: bool = False, method: str = "auto"
) -> Duplicates:
    images, adding_nothing = locked_sets(conn, every_image=every_image)
    sets = {k: v[2] for k, v in images.items()}
    chosen = method if method != "auto" else ("exact" if len(sets) <= EXACT_LIMIT else "minhash-lsh")
    pairs = _exact_pairs(sets, threshold) if chosen == "exact" else _lsh_pairs(sets, threshold)
    parent = {k: k for k in sets}

    def root(k: int) -> int:
        while parent[k] != k:
            parent[k] = parent[parent[k]]
            k = parent[k]
        return k

    for x, y in pairs:
        parent[root(x)] = root(y)
    members: dict[int, list[int]] = {}
    for k in sets:
        members.setdefault(root(k), []).append(k)
    similarities: dict[int, list[float]] = {}
    for (x, _), similarity in pairs.items():
        similarities.setdefault(root(x), []).append(similarity)
    groups = []
    for top, ids in members.items():
        if len(ids) < 2:
            continue
        shared = frozenset.intersection(*(sets[k] for k in ids))
        groups.append(
            Group(
                tuple(
                    Member(images[k][0], images[k][1], len(sets[k]), tuple(sorted(sets[k] - shared)))
                    for k in sorted(ids, key=lambda k: (images[k][1] or "", images[k][0]))
                ),
                tuple(sorted(shared)),
                min(similarities[top]),
                max(similarities[top]),
            )
        )
    groups.sort(key=lambda g: (-len(g.members), -len(g.shared), g.members[0].digest))
    return Duplicates(chosen, threshold, len(sets), len(pairs), tuple(groups), every_image, adding_nothing)


def render(result: Duplicates) -> list[str]:
    how = (
        "exact Jaccard over every pair"
        if result.method == "exact"
        else f"MinHash LSH ({NUM_PERM} permutations, datasketch), each proposed pair checked exactly"
    )
    scope = "every image" if result.every_image else "the newest image of each repository"
    lines = [
        f"{len(result.groups)} group{'s' if len(result.groups) != 1 else ''} of near-copies among "
        f"{result.compared} images ({scope}): Jaccard >= {result.threshold:g} over locked "
        f"name==version, {how}"
    ]
    if result.adding_nothing:
        n = result.adding_nothing
        lines.append(f"not compared: {n} image{'s' if n != 1 else ''} whose own layers add no Python package")
    for n, group in enumerate(result.groups, 1):
        lines.append(
            f"group {n}: {len(group.members)} images, similarity {group.min_similarity:.2f}-"
            f"{group.max_similarity:.2f}, {len(group.shared)} packages shared"
        )
        shown = ", ".join(group.shared[:12]) + (
            f", ... ({len(group.shared) - 12} more)" if len(group.shared) > 12 else ""
        )
        lines.append(f"  shared: {shown or '-'}")
        for m in group.members:
            name = f"{m.repository}@{m.digest}" if m.repository else m.digest
            adds = ", ".join(m.adds[:8]) + (f", ... ({len(m.adds) - 8} more)" if len(m.adds) > 8 else "")
            lines.append(f"  {name}: {m.packages} packages; adds {adds or 'nothing'}")
        lines.append(f"  suggestion: {group.suggestion}")
    return lines
