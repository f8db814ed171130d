"""Writing an image into the store: idempotent, and whole or nothing.

:func:`save` runs inside one write transaction (:meth:`Store.writing`): the image row is upserted
by digest (the same image twice is one row), everything its record says is replaced, and packages
are inserted once per distinct version (``ON CONFLICT DO NOTHING``), then looked up. Two pipelines
recording at once into PostgreSQL cannot lose or duplicate a row: the unique constraints decide,
and each transaction inserts packages in one sorted order, so two never wait on each other in a
cycle. What deploy jobs and rescans added to an image (deployments, the rescans that counted it)
is kept.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import itertools
import json
import sys
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tfgov_ci import tools
from tfgov_ci.errors import TfgovError
from tfgov_ci.findings import package_key
from tfgov_ci.inventory import builds, evidence, tables
from tfgov_ci.inventory.evidence import ImageEvidence
from tfgov_ci.inventory.sbom import Package
from tfgov_ci.pipeline import now
from tfgov_ci.stages.scan.advisories import source_name

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from tfgov_ci.findings import Finding
    from tfgov_ci.inventory.store import Store


def insert(conn: Connection, table: Any) -> Any:
    """The dialect's INSERT, which has ``on_conflict_do_nothing`` / ``on_conflict_do_update``."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table)
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(table)


def _finding_package(finding: Finding) -> Package:
    return Package(
        finding.package_type,
        finding.package,
        finding.installed_version,
        finding.purl or "",
        finding.source_package
        or (source_name(finding.purl or "") if finding.package_type == "deb" else None),
    )


Identity = tuple[str, str, str, str]
_CHUNK = 400  # identities a lookup asks at once: under SQLite's old limit of 999 bound parameters


class PackageIds:
    """The row ids of package versions an import has already stored or found, kept across its
    images: a package row is never changed or deleted, so an id seen committed stays right. Ids
    learnt inside a transaction are kept only once it has committed (:meth:`keep`)."""

    def __init__(self) -> None:
        self.committed: dict[Identity, int] = {}
        self.pending: dict[Identity, int] = {}

    def keep(self) -> None:
        self.committed.update(self.pending)
        self.pending.clear()


def package_ids(
    conn: Connection, packages: Iterable[Package], cache: PackageIds | None = None
) -> dict[Identity, int]:
    """The row id of each distinct package version, inserting those the store does not hold yet.

    Those ``cache`` knows are not asked again; the others are looked up by identity, the ones
    still missing inserted in sorted order, their ids returned by the insert itself."""
    return _package_ids(conn, {p.identity: package_row(p) for p in packages}, cache)


def _package_ids(
    conn: Connection, wanted: Mapping[Identity, PackageRow], cache: PackageIds | None
) -> dict[Identity, int]:
    known = cache.committed if cache is not None else {}
    found = {identity: known[identity] for identity in wanted if identity in known}
    missing = sorted(identity for identity in wanted if identity not in found)
    if missing:
        _look_up(conn, missing, found)
        absent = [identity for identity in missing if identity not in found]
        if absent:
            names = ("type", "name", "version", "purl", "key", "source_name")
            rows = [dict(zip(names, wanted[identity], strict=True)) for identity in absent]
            p = tables.packages
            inserted = insert(conn, p).on_conflict_do_nothing()
            returned = inserted.returning(p.c.id, p.c.type, p.c.name, p.c.version, p.c.purl)
            for row in conn.execute(returned, rows):
                found[(row.type, row.name, row.version, row.purl)] = row.id
            # those another transaction inserted (and committed) since the look-up
            _look_up(conn, [identity for identity in absent if identity not in found], found)
        if cache is not None:
            cache.pending.update({identity: found[identity] for identity in missing})
    return found


def _look_up(conn: Connection, identities: Sequence[Identity], found: dict[Identity, int]) -> None:
    """Each identity's row id, where there is one. Asked as ``type = ? AND name IN (...)``, which
    walks the identity's unique index on both SQLite and PostgreSQL, then keeps the exact
    identities: the rows are every stored version of those names, far fewer than the probes of
    ``name IN (...) AND version IN (...)`` (400 x 400 a chunk), and a row-value ``IN`` makes
    SQLite scan the whole table."""
    from sqlalchemy import select

    table = tables.packages
    wanted = set(identities)
    by_type: dict[str, list[str]] = {}
    for identity in identities:
        by_type.setdefault(identity[0], []).append(identity[1])
    for kind, names in sorted(by_type.items()):
        distinct = sorted(set(names))
        for start in range(0, len(distinct), _CHUNK):
            query = select(table.c.id, table.c.name, table.c.version, table.c.purl).where(
                table.c.type == kind, table.c.name.in_(distinct[start : start + _CHUNK])
            )
            for row in conn.execute(query):
                identity = (kind, row.name, row.version, row.purl)
                if identity in wanted:
                    found[identity] = row.id


def _image_row(image: ImageEvidence) -> dict[str, Any]:
    """The image's row of ``images``, but for ``recorded`` (the time it is stored)."""
    return {
        "digest": image.digest,
        "repository": image.repository,
        "governed": image.governed,
        "status": image.status,
        "pipeline": image.pipeline,
        "commit_sha": image.commit_sha,
        "branch": image.branch,
        "commit_time": image.commit_time,
        "repository_url": image.repository_url,
        "ci_provider": image.ci.get("provider"),
        "pipeline_id": image.ci.get("pipeline_id"),
        "pipeline_url": image.ci.get("pipeline_url"),
        "job_id": image.ci.get("job_id"),
        "job_url": image.ci.get("job_url"),
        "builder": image.builder,
        "runner_host": image.runner_host,
        "runner_platform": image.runner_platform,
        "tfgov_ci_version": image.tfgov_ci_version,
        "tools": json.dumps(dict(image.tools), sort_keys=True),
        "base_ref": image.base_ref,
        "base_digest": image.base_digest,
        "lock_digest": image.lock_digest,
        "python_version": image.python_version,
        "tensorflow_version": image.tensorflow_version,
        "decision": image.decision,
        "signed": image.signed,
        "signature_ref": image.signature_ref,
        "sbom_digest": image.sbom_digest,
        "record_digest": image.record_digest,
        "created": image.created,
    }


# A package version's row of ``packages``: its identity (type, name, version, purl), then its key
# and source package. An SBOM entry adds where the image holds it: location, layer, licences (JSON).
PackageRow = tuple[str, str, str, str, str, str | None]
Entry = tuple[str, str, str, str, str, str | None, str, str, str]
_FINDING_VALUES = ("advisory", "aliases", "severity", "fix_state", "fixed_versions", "cvss_score", "title",
                   "scanners")  # fmt: skip


def package_row(p: Package) -> PackageRow:
    return (p.type, p.name, p.version, p.purl, _key(p.type, p.name), p.source_name)


_key = functools.lru_cache(maxsize=1 << 16)(package_key)  # the same names in every image


def finding_values(finding: Finding) -> tuple[Any, ...]:
    """A finding's own columns of ``findings`` (:data:`_FINDING_VALUES`), whichever image has it."""
    return (
        finding.id,
        json.dumps(sorted(finding.aliases)),
        finding.severity,
        finding.fix_state,
        json.dumps(list(finding.fixed_versions)),
        finding.cvss_score,
        finding.title,
        json.dumps(list(finding.scanners)),
    )


@dataclass(frozen=True)
class Prepared:
    """One image as it goes into the store: read and checked whole, made into rows that only want
    their ids (which the store gives) and plain tuples, cheap to send from a reading process."""

    source: str
    digest: str
    repository: str | None
    warnings: tuple[str, ...]
    row: Mapping[str, Any]  # the images row but ``recorded``
    tags: tuple[str, ...]
    build: builds.BuildFacts | None
    packages: tuple[Entry, ...]  # each SBOM package, in the SBOM's order
    findings: tuple[tuple[PackageRow, tuple[Any, ...], bool], ...]  # package, values, excepted
    advisory_db: str | None
    exceptions: tuple[tuple[str, str, str, str, str, str], ...]
    attestations: tuple[tuple[str, str | None], ...]


def prepare(image: ImageEvidence) -> Prepared:
    """The rows of one image (see :class:`Prepared`)."""
    licences: dict[tuple[str, ...], str] = {}  # an image's packages share a few licence lists
    entries = []
    for p in image.packages:
        text = licences.get(p.licenses)
        if text is None:
            text = licences[p.licenses] = json.dumps(list(p.licenses))
        entries.append((*package_row(p), p.location, p.layer, text))
    return Prepared(
        source=image.source,
        digest=image.digest,
        repository=image.repository,
        warnings=image.warnings,
        row=_image_row(image),
        tags=image.tags,
        build=image.build,
        packages=tuple(entries),
        findings=tuple(
            (package_row(_finding_package(f)), finding_values(f), image.excepted(f)) for f in image.findings
        ),
        advisory_db=image.advisory_db,
        exceptions=tuple(
            (e.finding, e.package, e.reason, e.owner, e.approved_by, e.expires) for e in image.exceptions
        ),
        attestations=tuple((a.predicate_type, a.document_digest) for a in image.attestations),
    )


def read_prepared(path: Path) -> Prepared:
    """One path read, checked and made into rows (what each process of a large import does)."""
    return prepare(evidence.read(path))


def save(conn: Connection, image: ImageEvidence, cache: PackageIds | None = None) -> int:
    """Store one image (inside the caller's transaction); returns its row id. ``cache``: the
    package ids an import has learnt so far (see :class:`PackageIds`)."""
    return store_images(conn, [prepare(image)], cache or PackageIds())[image.digest]


_CHILDREN = (tables.image_tags, tables.image_packages, tables.exceptions_used, tables.attestations,
             tables.image_builds)  # fmt: skip


def store_images(conn: Connection, images: Sequence[Prepared], cache: PackageIds) -> dict[str, int]:
    """Store images (inside the caller's transaction), a statement per table for all of them;
    returns each digest's row id. Each image row is upserted by digest and everything its record
    says replaced; what deploy jobs and rescans added (deployments, rescan scopes) is kept. Of an
    image given twice the later is stored. Package rows are inserted in one sorted order and image
    rows in digest order, so two transactions never wait on each other in a cycle."""
    from sqlalchemy import delete, select

    latest = sorted({p.digest: p for p in images}.values(), key=lambda p: p.digest)
    if not latest:
        return {}
    wanted: dict[Identity, PackageRow] = {}
    for p in latest:
        for entry in p.packages:
            wanted.setdefault(entry[:4], entry[:6])
        for package, _, _ in p.findings:
            wanted.setdefault(package[:4], package)
    ids = _package_ids(conn, wanted, cache)
    i = tables.images
    digests = [p.digest for p in latest]
    recorded = now()
    rows = [{**p.row, "recorded": recorded} for p in latest]
    upsert = insert(conn, i)
    upsert = upsert.on_conflict_do_update(
        index_elements=[i.c.digest], set_={k: upsert.excluded[k] for k in rows[0] if k != "digest"}
    )
    conn.execute(upsert, rows)
    image_ids: dict[str, int] = {
        digest: int(image_id)
        for digest, image_id in conn.execute(select(i.c.digest, i.c.id).where(i.c.digest.in_(digests)))
    }
    # What the images held before goes, after their rows are upserted (and so locked): another
    # transaction storing one of them at the same moment has committed its rows by then, and
    # they are replaced, not doubled (an image new to the store finds nothing to delete).
    stored = sorted(image_ids.values())
    for table in _CHILDREN:
        conn.execute(delete(table).where(table.c.image_id.in_(stored)))
    findings = tables.findings
    conn.execute(delete(findings).where(findings.c.image_id.in_(stored), findings.c.origin == "scan"))
    tags: list[tuple[Any, ...]] = []
    built: list[tuple[Any, ...]] = []
    links: list[tuple[Any, ...]] = []
    found: list[tuple[Any, ...]] = []
    excepted: list[tuple[Any, ...]] = []
    attested: list[tuple[Any, ...]] = []
    for p in latest:
        image_id = image_ids[p.digest]
        tags.extend((image_id, tag) for tag in p.tags)
        if p.build is not None:
            built.append(builds.row(image_id, p.build))
        placed: set[tuple[int, str]] = set()
        for entry in p.packages:  # one link a package and place; the first entry of a duplicate wins
            package_id = ids[entry[:4]]
            if (package_id, entry[6]) not in placed:
                placed.add((package_id, entry[6]))
                links.append((image_id, package_id, entry[6], entry[7], entry[8]))
        scanned: dict[tuple[int, str], list[Any]] = {}
        for package, values, is_excepted in p.findings:
            package_id = ids[package[:4]]
            row = scanned.setdefault(
                (package_id, values[0]),
                [image_id, package_id, *values, "scan", p.advisory_db, None, recorded, False],
            )
            row[-1] = is_excepted  # of a finding given twice, the last one's verdict stands
        found.extend(tuple(row) for row in scanned.values())
        excepted.extend({(e[0], e[1]): (image_id, *e) for e in p.exceptions}.values())
        attested.extend({a[0]: (image_id, *a) for a in p.attestations}.values())
    insert_tuples(conn, tables.image_tags, tags, ["image_id", "tag"])
    insert_tuples(conn, tables.image_builds, built, builds.COLUMNS)
    insert_tuples(conn, tables.image_packages, links)
    insert_tuples(conn, tables.findings, found, FINDING_COLUMNS)
    insert_tuples(conn, tables.exceptions_used, excepted)
    insert_tuples(conn, tables.attestations, attested)
    return image_ids


FINDING_COLUMNS = ("image_id", "package_id", *_FINDING_VALUES, "origin", "advisory_db", "advisory_db_digest",
                   "found", "excepted")  # fmt: skip


def insert_tuples(
    conn: Connection, table: Any, rows: Sequence[tuple[Any, ...]], columns: Sequence[str] | None = None
) -> None:
    """Rows as tuples (in the order of ``columns``, else every column of the table), straight to
    the driver: PostgreSQL's ``COPY`` (a round trip per batch of rows, not per row), SQLite's
    ``executemany`` of one prepared statement; without SQLAlchemy processing each row's
    parameters, which costs more than the insert itself (the 300 links of an image). A failure is
    SQLAlchemy's ``DBAPIError``, as for any other statement."""
    if not rows:
        return
    names = list(columns) if columns is not None else [c.name for c in table.columns]
    quoted = ", ".join(conn.dialect.identifier_preparer.quote(name) for name in names)
    if conn.dialect.name == "postgresql":
        with _copy(conn, table, names) as copy:
            for row in rows:
                copy.write_row(row)
        return
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    marks = ", ".join(mark for _ in names)
    conn.exec_driver_sql(f"INSERT INTO {table.name} ({quoted}) VALUES ({marks})", list(rows))


@contextlib.contextmanager
def _copy(conn: Connection, table: Any, columns: Sequence[str]) -> Iterator[Any]:
    """psycopg's ``COPY table (columns) FROM STDIN``, on the connection's own transaction; a
    failure is SQLAlchemy's ``DBAPIError``, as for any other statement."""
    from sqlalchemy.exc import DBAPIError

    quoted = ", ".join(conn.dialect.identifier_preparer.quote(name) for name in columns)
    sql = f"COPY {table.name} ({quoted}) FROM STDIN"
    driver: Any = conn.connection.driver_connection
    error = conn.dialect.loaded_dbapi.Error
    try:
        with driver.cursor() as cursor, cursor.copy(sql) as copy:
            yield copy
    except error as exc:
        raise DBAPIError.instance(sql, None, exc, error, dialect=conn.dialect) from exc


@dataclass(frozen=True)
class Stored:
    """One image an import stored (what it says of it; its rows are in the store, not here)."""

    source: str
    digest: str
    repository: str | None
    packages: int
    findings: int
    warnings: tuple[str, ...]


@dataclass(frozen=True)
class Imported:
    """What one ``inventory import`` stored, in the order of its paths."""

    images: tuple[Stored, ...]


class ImportStopped(TfgovError):
    """A path an import could not read (its own error, as reading it raised it), and how many
    images were stored before it, each whole."""

    def __init__(self, cause: TfgovError, stored: int, total: int) -> None:
        super().__init__(cause.message, cause.hint)
        self.cause, self.stored, self.total = cause, stored, total
        self.exit_code = cause.exit_code

    def lines(self) -> list[str]:
        if not self.stored:
            return [*self.cause.lines(), f"note: nothing was stored (of {self.total} paths)"]
        before = "the image before it is" if self.stored == 1 else f"the {self.stored} images before it are"
        return [
            *self.cause.lines(),
            f"note: {before} stored, whole (of {self.total} paths); import the same paths again once "
            "it is mended: an image stored twice is one row",
        ]


BATCH = 200  # images a write transaction stores at most (a few seconds of a SQLite writer's lock)
POOL_FROM = 32  # paths from which an import reads in worker processes (each costs a fork)
CHUNK = 16  # paths a reading process reads at a time, at most
AHEAD = 4  # chunks a reading process may have read ahead of the store (in all, two batches' worth)
Chunk = tuple[list[Prepared], "_Unreadable | None"]  # a chunk's images, then why one was not read


def import_paths(
    store: Store, paths: Sequence[Path], on_stored: Callable[[Stored], None] | None = None
) -> Imported:
    """Read the paths (many of them by a process per core) and store the images as they come, in
    write transactions of up to :data:`BATCH` images: storing overlaps reading, and an import holds
    a few hundred images at a time, however many it is given. ``on_stored`` is told of each image
    once its transaction has committed.

    Each image is whole or not at all. A path that cannot be read (a record that breaks its schema)
    stops the import there: the images before it are stored, it and those after it are not, and
    :class:`ImportStopped` says so. A batch is stored under a savepoint; when the database refuses
    it, it is rolled back and its images stored again one by one, each under a savepoint of its
    own, so that the image the database refused is not stored at all and those before it are
    (committed); the import then stops with that failure, naming the image."""
    done: list[Stored] = []
    cache = PackageIds()

    def commit(batch: list[Prepared]) -> None:
        with store.writing() as conn:
            refused = _store_batch(conn, batch, cache)
        cache.keep()
        kept = batch if refused is None else batch[: batch.index(refused[0])]
        for image in kept:
            stored = Stored(image.source, image.digest, image.repository, len(image.packages),
                            len(image.findings), image.warnings)  # fmt: skip
            done.append(stored)
            if on_stored is not None:
                on_stored(stored)
        if refused is not None:
            image, exc = refused
            raise store.failure(
                exc,
                f"the inventory database failed on {image.source} ({len(done)} of {len(paths)} "
                "images stored before it, whole; an import of the same images again is safe: "
                "each is one row)",
            )

    with no_cycle_collection(), contextlib.closing(_read(paths)) as images:
        batch: list[Prepared] = []
        try:
            for image in images:
                batch.append(image)
                if len(batch) == BATCH:
                    commit(batch)
                    batch = []
        except _Unreadable as exc:
            if batch:
                commit(batch)  # the images read before the one that failed
            raise ImportStopped(exc.cause, len(done), len(paths)) from None
        if batch:
            commit(batch)
    return Imported(tuple(done))


class _Unreadable(Exception):
    """A path's reading failed (``cause``): told apart from the store's failures while both run."""

    def __init__(self, cause: TfgovError) -> None:
        super().__init__(cause.message)
        self.cause = cause

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled by its cause (from a reading process to the one storing)."""
        return (_Unreadable, (self.cause,))


@contextlib.contextmanager
def no_cycle_collection() -> Iterator[None]:
    """No cyclic garbage collection while an import or a rescan runs: they make millions of
    objects that live until they end (rows, parsed JSON, sets of images), hardly any in cycles,
    and the collector's passes over them were half of an import's time and a third of a rescan's.
    Refcounting still frees them; the collector, back afterwards, takes the few cycles (an
    exception's traceback)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _store_batch(
    conn: Connection, batch: Sequence[Prepared], cache: PackageIds
) -> tuple[Prepared, Exception] | None:
    """Store a batch under a savepoint; when the database refuses it, each image again under its
    own; the first image refused, and why (those before it stay stored), else None."""
    from sqlalchemy.exc import SQLAlchemyError

    try:
        with conn.begin_nested():
            store_images(conn, batch, cache)
        return None
    except SQLAlchemyError:
        cache.pending.clear()  # learnt inside the savepoint, which was rolled back
    for image in batch:
        learnt = dict(cache.pending)
        try:
            with conn.begin_nested():
                store_images(conn, [image], cache)
        except SQLAlchemyError as exc:
            cache.pending = learnt
            return image, exc
    return None  # each alone went in (what failed was the batch: a deadlock that did not recur)


def _read(paths: Sequence[Path]) -> Generator[Prepared]:
    """Every path read, checked and made into rows, in order; the first bad one raises
    :class:`_Unreadable`. Many paths are shared out among a process per core (reading is most of an
    import's work: JSON, the schema, 300 packages an image), a chunk at a time and never more than
    :data:`AHEAD` chunks a process (two batches in all, or a chunk a process on many cores) ahead
    of what has been taken; the rows come back as plain tuples, cheap to send."""
    workers = tools.cores()
    if workers < 2 or len(paths) < POOL_FROM:
        yield from _taken(map(_read_chunk, ([path] for path in paths)))
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # fork: the workers start in milliseconds with everything imported, all of them at the first
    # chunk (before anything is stored); they only read files (never the parent's database
    # connections) and leave by os._exit
    method = (
        "fork" if "fork" in multiprocessing.get_all_start_methods() and sys.platform == "linux" else "spawn"
    )
    size = max(1, min(CHUNK, -(-len(paths) // (workers * 2))))  # a few paths: every process gets some
    chunks = iter([paths[start : start + size] for start in range(0, len(paths), size)])
    ahead = max(workers, min(workers * AHEAD, 2 * BATCH // size))  # a chunk a process, at least
    gc.freeze()  # what the workers inherit is not theirs to collect (nor to copy, page by page)
    try:
        context = multiprocessing.get_context(method)
        pool = ProcessPoolExecutor(workers, mp_context=context, initializer=gc.disable)
        try:
            reading = deque(pool.submit(_read_chunk, chunk) for chunk in itertools.islice(chunks, ahead))

            def results() -> Iterator[Chunk]:
                while reading:
                    done = reading.popleft().result()
                    following = next(chunks, None)
                    if following is not None:
                        reading.append(pool.submit(_read_chunk, following))
                    yield done

            yield from _taken(results())
        finally:
            pool.shutdown(wait=True, cancel_futures=True)  # a bad path: what is queued is not read
    finally:
        gc.unfreeze()


def _taken(results: Iterable[Chunk]) -> Iterator[Prepared]:
    """The images of each chunk in turn; a chunk's failure raised after the images before it."""
    for read, failed in results:
        yield from read
        if failed is not None:
            raise failed


def _read_chunk(paths: Sequence[Path]) -> Chunk:
    """The paths read in order, up to the first that cannot be read, and why that one could not."""
    read = []
    for path in paths:
        try:
            read.append(read_prepared(path))
        except TfgovError as exc:
            return read, _Unreadable(exc)
    return read, None
