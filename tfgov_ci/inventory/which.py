"""``which``: every image holding a package, in a version range, across the fleet.

A spec is ``NAME`` (any version) or ``NAME`` then clauses ``OP VERSION`` joined by commas
(``tensorflow<2.12``, ``pyyaml>=5.1,<5.4``), OP one of ``==``, ``!=``, ``<``, ``<=``, ``>``,
``>=``; or a purl (``pkg:deb/debian/openssl``, optionally ``@VERSION``). Names compare as each
ecosystem does (PEP 503 for Python; a Debian name also matches the binary packages built from that
source, as advisories name them). Versions order as the scan stage orders them when it matches
advisories (:func:`~tfgov_ci.stages.scan.advisories.version_key`: PEP 440 for PyPI, dpkg for
Debian, pre-releases included). Other ecosystems have no ordering here: only ``==`` and ``!=``
apply to them, and a package a range cannot be decided for is counted as undecided, not guessed.
The store is asked only for the packages of that name (an index), each distinct version is
decided once, and only then are the images holding the matching versions looked up.
"""

from __future__ import annotations

import functools
import json
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import unquote

from tfgov_ci.errors import UsageError
from tfgov_ci.inventory import tables
from tfgov_ci.inventory.store import plain_rows
from tfgov_ci.stages.scan.advisories import version_key
from tfgov_ci.wheels import normalise_name

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq,
    "!=": operator.ne,
    "<=": operator.le,
    ">=": operator.ge,
    "<": operator.lt,
    ">": operator.gt,
}
EXPECTED = (
    "expected NAME, or NAME then OP VERSION[,OP VERSION...] with OP one of ==, !=, <, <=, >, >= "
    "(e.g. 'pyyaml>=5.1,<5.4'), or --purl pkg:TYPE/[NAMESPACE/]NAME[@VERSION]"
)
_ORDERINGS = {"pypi": "PEP 440", "deb": "dpkg"}
_NAME = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._+-]*)(.*)$")
_CLAUSE = re.compile(r"^\s*(==|!=|<=|>=|<|>)\s*([A-Za-z0-9][A-Za-z0-9.+~:_-]*)\s*$")
_SEPARATOR = "\x1f"  # between an image's tags as the database joins them (a tag has no control characters)
_PURL = re.compile(r"^pkg:[a-z0-9.+-]+/[^@?#\s]+(@[^?#\s]+)?$")


@dataclass(frozen=True)
class Spec:
    text: str
    name: str | None = None
    clauses: tuple[tuple[str, str], ...] = ()
    purl: str | None = None  # without a version: every version of it

    def unparsable(self, package_type: str) -> str | None:
        """A clause's version that this ecosystem's ordering cannot read (``5.x`` for PyPI)."""
        if package_type not in _ORDERINGS or (self.purl is not None):
            return None
        return next((v for _, v in self.clauses if not _parses(package_type, v)), None)

    def admits(self, package_type: str, version: str) -> bool | None:
        """Whether the version is in range; None when this ecosystem cannot order it."""
        if not self.clauses:
            return True
        key = version_key(package_type)
        if key is None:
            if all(op in ("==", "!=") for op, _ in self.clauses):
                return all(OPERATORS[op](version, wanted) for op, wanted in self.clauses)
            return None
        try:
            installed = key(version)
            return all(OPERATORS[op](installed, key(wanted)) for op, wanted in self.clauses)
        except ValueError:
            return None


def parse(text: str, *, purl: bool = False) -> Spec:
    """The spec, or :class:`UsageError` (exit 2) saying what was expected."""
    if purl:
        if not _PURL.match(text):
            raise UsageError(f"malformed purl {text!r}", EXPECTED)
        base, _, version = text.partition("@")
        return Spec(text, purl=base, clauses=(("==", unquote(version)),) if version else ())
    m = _NAME.match(text.strip())
    if not m:
        raise UsageError(f"malformed package range {text!r}", EXPECTED)
    name, rest = m.group(1), m.group(2).strip()
    clauses = []
    if rest:
        for part in rest.split(","):
            clause = _CLAUSE.match(part)
            if not clause:
                raise UsageError(
                    f"malformed package range {text!r}: {part.strip()!r} is not OP VERSION", EXPECTED
                )
            clauses.append((clause.group(1), clause.group(2)))
    for _, version in clauses:
        if not any(_parses(kind, version) for kind in ("pypi", "deb")):
            raise UsageError(
                f"malformed package range {text!r}: {version!r} is neither a PEP 440 nor a Debian version",
                EXPECTED,
            )
    return Spec(text, name=name, clauses=tuple(clauses))


def _parses(package_type: str, version: str) -> bool:
    key = version_key(package_type)
    try:
        return key is not None and key(version) is not None
    except ValueError:
        return False


class Match(NamedTuple):
    """One package version in one image. A named tuple rather than a frozen dataclass: a name
    every image holds is thousands of matches a query, and a frozen dataclass's ``__init__``
    (a guarded ``setattr`` per field) was a third of the answer's time."""

    digest: str
    repository: str | None
    tags: tuple[str, ...]
    commit: str | None
    governed: bool
    decision: str | None
    package: str
    type: str
    version: str
    purl: str
    deployments: tuple[str, ...]
    running: tuple[str, ...] = ()  # CLUSTER/NAMESPACE/POD/CONTAINER of each running instance

    def to_json(self) -> dict[str, Any]:
        return {
            "digest": self.digest,
            "repository": self.repository,
            "tags": list(self.tags),
            "commit": self.commit,
            "governed": self.governed,
            "decision": self.decision,
            "package": {"name": self.package, "type": self.type, "version": self.version, "purl": self.purl},
            "deployments": list(self.deployments),
            "running": list(self.running),
        }


class Holder(NamedTuple):
    """An image holding chosen versions, with the answer's facts of it and those versions (name,
    type, version, purl), in order: an image's facts are read, kept and rendered once, however
    many of its packages match (the Debian openssl purl is three in every image)."""

    digest: str
    repository: str | None
    tags: tuple[str, ...]
    commit: str | None
    governed: bool
    decision: str | None
    deployments: tuple[str, ...]
    running: tuple[str, ...]
    packages: tuple[tuple[str, str, str, str], ...]


@dataclass(frozen=True)
class Answer:
    spec: Spec
    holders: tuple[Holder, ...] = ()  # by repository, then digest
    undecided: tuple[str, ...] = field(default=())  # package versions no ordering could place

    @functools.cached_property
    def matches(self) -> tuple[Match, ...]:
        """One per image and package version, in order (repository, digest, type, name, version)."""
        return tuple(
            Match(h.digest, h.repository, h.tags, h.commit, h.governed, h.decision, *package, h.deployments,
                  h.running)
            for h in self.holders
            for package in h.packages
        )  # fmt: skip

    def to_json(self) -> dict[str, Any]:
        return {
            "schema_version": 1,
            "spec": self.spec.text,
            "images": len(self.holders),
            "matches": [m.to_json() for m in self.matches],
            "undecided": list(self.undecided),
        }


def which(conn: Connection, spec: Spec) -> Answer:
    from sqlalchemy import String, cast, exists, func, literal, or_, select

    p, link, i = tables.packages, tables.image_packages, tables.images
    if spec.purl is not None:
        # pkg:TYPE/[NAMESPACE/]NAME: that type, the name (or, for Debian, the source package it
        # names, as advisories do: pkg:deb/debian/openssl is libssl3 too), in that namespace
        kind, _, path = spec.purl.removeprefix("pkg:").partition("/")
        namespace, _, name = unquote(path).rpartition("/")
        keys = sorted({name, normalise_name(name)} if kind == "pypi" else {name})
        query = select(p).where(p.c.type == kind, or_(p.c.key.in_(keys), p.c.source_name == name))
        prefix = f"pkg:{kind}/{namespace}/" if namespace else f"pkg:{kind}/"
        candidates = [c for c in conn.execute(query).mappings() if unquote(c["purl"]).startswith(prefix)]
    else:
        assert spec.name is not None
        keys = sorted({spec.name, normalise_name(spec.name)})
        condition = or_(p.c.key.in_(keys), p.c.source_name == spec.name)
        candidates = list(conn.execute(select(p).where(condition)).mappings())
    chosen: dict[int, Any] = {}
    undecided = []
    for package in candidates:
        wrong = spec.unparsable(package["type"])
        if wrong is not None:
            raise UsageError(
                f"malformed package range {spec.text!r}: {wrong!r} is not a version of "
                f"{package['name']}'s ecosystem ({package['type']}: {_ORDERINGS[package['type']]})",
                EXPECTED,
            )
        verdict = spec.admits(package["type"], package["version"])
        if verdict is None:
            undecided.append(f"{package['type']}/{package['name']}@{package['version']}")
        elif verdict:
            chosen[package["id"]] = package
    if not chosen:
        return Answer(spec, (), tuple(sorted(undecided)))
    # The images holding a chosen version (a subquery), in order (repository, digest: sorted by
    # the database in Python's order of strings), each with its tags joined by the database (a
    # probe of its tags' key); the versions each holds, joined by the database too; deployments
    # and running instances a statement each; all read as the driver's tuples: a name every image
    # holds is 10,000 images and, for the Debian openssl purl, 30,000 links at 10,000 images.
    ids = sorted(chosen)
    holds = link.c.package_id.in_(ids)
    tg, d, t = tables.image_tags, tables.deployments, tables.instances
    postgresql = conn.dialect.name == "postgresql"
    order = [func.coalesce(i.c.repository, ""), i.c.digest]
    if postgresql:  # code point order, as Python compares, not the locale's
        from sqlalchemy.dialects.postgresql import aggregate_order_by

        order = [column.collate("C") for column in order]
        held = func.string_agg(cast(link.c.package_id, String), ",")
        tagged = func.string_agg(tg.c.tag, aggregate_order_by(literal(_SEPARATOR), tg.c.tag))
    else:
        held = func.group_concat(link.c.package_id, ",")
        tagged = func.group_concat(tg.c.tag, _SEPARATOR)
    images = plain_rows(
        conn,
        select(
            i.c.id, i.c.digest, i.c.repository, i.c.commit_sha, i.c.governed, i.c.decision,
            select(tagged).where(tg.c.image_id == i.c.id).scalar_subquery(),
        )
        .where(i.c.id.in_(select(link.c.image_id).where(holds)))
        .order_by(*order),
    )  # fmt: skip
    held_by = dict(plain_rows(conn, select(link.c.image_id, held).where(holds).group_by(link.c.image_id)))
    # a small table (deployments, instances) is asked row by row whether its image holds one
    # (the links' index), not given the list of every holder made first
    deployed: dict[int, list[str]] = {}
    for image_id, environment in plain_rows(
        conn,
        select(d.c.image_id, d.c.environment)
        .where(exists().where(link.c.image_id == d.c.image_id, holds))
        .order_by(d.c.image_id, d.c.environment),
    ):
        deployed.setdefault(image_id, []).append(environment)
    instances_of: dict[str, list[tuple[str, str, str, str]]] = {}
    for digest, *where in plain_rows(
        conn,
        select(t.c.digest, t.c.cluster, t.c.namespace, t.c.pod, t.c.container).where(
            t.c.running.is_(True),
            exists().where(i.c.digest == t.c.digest, link.c.image_id == i.c.id, holds),
        ),
    ):
        instances_of.setdefault(digest, []).append(tuple(where))
    running = {digest: tuple("/".join(r) for r in sorted(found)) for digest, found in instances_of.items()}
    # the versions in order (type, name, version), each ranked once; an image's, once for each
    # set of them (the images of a fleet hold a few)
    packages = {
        package_id: (c["name"], c["type"], c["version"], c["purl"])
        for package_id, c in sorted(
            chosen.items(), key=lambda kv: (kv[1]["type"], kv[1]["name"], kv[1]["version"])
        )
    }
    rank = {package_id: n for n, package_id in enumerate(packages)}
    versions_of: dict[str, tuple[tuple[str, str, str, str], ...]] = {}
    empty: tuple[str, ...] = ()
    holders = []
    for image_id, digest, repository, commit, governed, decision, tag_text in images:
        held_ids = held_by[image_id]
        versions = versions_of.get(held_ids)
        if versions is None:  # a version at two places in an image is one match
            mine = sorted({int(n) for n in held_ids.split(",")}, key=rank.__getitem__)
            versions = versions_of[held_ids] = tuple(packages[n] for n in mine)
        if not tag_text:
            tags = empty
        elif postgresql:  # ordered by the database, as tags always were there
            tags = tuple(tag_text.split(_SEPARATOR))
        else:  # SQLite's group_concat keeps no order it promises: its ORDER BY's, the binary one
            tags = tuple(sorted(tag_text.split(_SEPARATOR)))
        environments = deployed.get(image_id)
        holders.append(
            Holder(digest, repository, tags, commit, bool(governed), decision,
                   tuple(environments) if environments else empty, running.get(digest, empty), versions)
        )  # fmt: skip
    return Answer(spec, tuple(holders), tuple(sorted(undecided)))


CSV_FIELDS = ("repository", "digest", "tags", "commit", "governed", "decision", "type", "package", "version",
              "purl", "deployments", "running")  # fmt: skip


def csv_rows(answer: Answer) -> list[dict[str, str]]:
    return [
        {
            "repository": m.repository or "",
            "digest": m.digest,
            "tags": " ".join(m.tags),
            "commit": m.commit or "",
            "governed": "yes" if m.governed else "no",
            "decision": m.decision or "",
            "type": m.type,
            "package": m.package,
            "version": m.version,
            "purl": m.purl,
            "deployments": " ".join(m.deployments),
            "running": " ".join(m.running),
        }
        for m in answer.matches
    ]


def render(answer: Answer) -> list[str]:
    images = len(answer.holders)
    lines = [f"{images} image{'s' if images != 1 else ''} with {answer.spec.text}"]
    versions: dict[tuple[str, str, str, str], str] = {}  # a version's part of a line, made once
    for h in answer.holders:
        name = f"{h.repository}@{h.digest}" if h.repository else h.digest
        governed = "governed" if h.governed else "UNGOVERNED"
        facts = (
            f"  tags {', '.join(h.tags) or '-'}; commit {h.commit or '-'}; {governed}; "
            f"decision {h.decision or '-'}; deployed {', '.join(h.deployments) or 'not known'}; "
            f"running {', '.join(h.running) or 'not seen'}"
        )
        for package in h.packages:
            version = versions.get(package)
            if version is None:
                version = versions[package] = f"  {package[1]}/{package[0]} {package[2]}"
            lines.append(name + version)
            lines.append(facts)
    if answer.undecided:
        lines.append(
            f"undecided: {len(answer.undecided)} package version(s) of that name whose ecosystem has no "
            f"ordering here: {', '.join(answer.undecided[:5])}"
        )
    return lines


def dumps(answer: Answer) -> str:
    return json.dumps(answer.to_json(), indent=2)
