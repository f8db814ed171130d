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

import json
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import unquote

from tfgov_ci.errors import UsageError
from tfgov_ci.inventory import instances, refs, tables
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


@dataclass(frozen=True)
class Answer:
    spec: Spec
    matches: tuple[Match, ...]
    undecided: tuple[str, ...] = field(default=())  # package versions no ordering could place

    def to_json(self) -> dict[str, Any]:
        return {
            "schema_version": 1,
            "spec": self.spec.text,
            "images": len({m.digest for m in self.matches}),
            "matches": [m.to_json() for m in self.matches],
            "undecided": list(self.undecided),
        }


def which(conn: Connection, spec: Spec) -> Answer:
    from sqlalchemy import or_, select

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
    # Every question below is asked of the images holding a chosen version (a subquery: no list
    # of a thousand ids sent and bound), each once: a name every image holds is 1,000 matches.
    holding = select(link.c.image_id).where(link.c.package_id.in_(sorted(chosen)))
    held: dict[int, list[int]] = {}
    query = select(link.c.image_id, link.c.package_id).where(link.c.package_id.in_(sorted(chosen))).distinct()
    for image_id, package_id in conn.execute(query).all():
        held.setdefault(image_id, []).append(package_id)
    images = conn.execute(
        select(i.c.id, i.c.digest, i.c.repository, i.c.commit_sha, i.c.governed, i.c.decision).where(
            i.c.id.in_(holding)
        )
    ).all()
    tags = refs.by_image(conn, tables.image_tags, "tag", holding)
    deployed = refs.by_image(conn, tables.deployments, "environment", holding)
    running = {
        digest: tuple(f"{r['cluster']}/{r['namespace']}/{r['pod']}/{r['container']}" for r in found)
        for digest, found in instances.where_running(
            conn, select(i.c.digest).where(i.c.id.in_(holding)), running_only=True
        ).items()
    }
    # in order (repository, digest, then type, name, version), made so: images and package
    # versions sorted once each, not every match
    packages = {
        package_id: (c["name"], c["type"], c["version"], c["purl"])
        for package_id, c in sorted(
            chosen.items(), key=lambda kv: (kv[1]["type"], kv[1]["name"], kv[1]["version"])
        )
    }
    rank = {package_id: n for n, package_id in enumerate(packages)}
    matches = []
    for image_id, digest, repository, commit, governed, decision in sorted(
        images, key=lambda r: (r.repository or "", r.digest)
    ):
        facts = (tags.get(image_id, ()), commit, bool(governed), decision)
        where = (deployed.get(image_id, ()), running.get(digest, ()))
        for package_id in sorted(held.get(image_id, ()), key=rank.__getitem__):
            matches.append(Match(digest, repository, *facts, *packages[package_id], *where))
    return Answer(spec, tuple(matches), tuple(sorted(undecided)))


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
    images = len({m.digest for m in answer.matches})
    lines = [f"{images} image{'s' if images != 1 else ''} with {answer.spec.text}"]
    facts: dict[str, tuple[str, str]] = {}  # an image's lines, made once for all its matches
    for m in answer.matches:
        made = facts.get(m.digest)
        if made is None:
            governed = "governed" if m.governed else "UNGOVERNED"
            made = facts[m.digest] = (
                f"{m.repository}@{m.digest}" if m.repository else m.digest,
                f"  tags {', '.join(m.tags) or '-'}; commit {m.commit or '-'}; {governed}; "
                f"decision {m.decision or '-'}; deployed {', '.join(m.deployments) or 'not known'}; "
                f"running {', '.join(m.running) or 'not seen'}",
            )
        lines.append(f"{made[0]}  {m.type}/{m.package} {m.version}")
        lines.append(made[1])
    if answer.undecided:
        lines.append(
            f"undecided: {len(answer.undecided)} package version(s) of that name whose ecosystem has no "
            f"ordering here: {', '.join(answer.undecided[:5])}"
        )
    return lines


def dumps(answer: Answer) -> str:
    return json.dumps(answer.to_json(), indent=2)
