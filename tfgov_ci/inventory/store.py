"""The inventory's database: opened, migrated to the newest schema, and used one transaction at a time.

Opening a store connects once (an unreachable database is :class:`InventoryError`, exit 3, naming
the URL with its password masked) and runs the Alembic migrations shipped in ``migrations/``
(:func:`migrate`), so a database made by an older tfgov-ci is brought up to date rather than
misread. Two pipelines opening a fresh PostgreSQL database at once both migrate under one advisory
lock; on SQLite every write transaction is ``BEGIN IMMEDIATE`` (WAL journal, a busy timeout), so
concurrent writers queue instead of failing half-way.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tfgov_ci.errors import TfgovError
from tfgov_ci.inventory import location
from tfgov_ci.tools import redact

if TYPE_CHECKING:
    from sqlalchemy.engine import URL, Connection, Engine

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
# Any constant: the key of the PostgreSQL advisory lock that migrations take.
_MIGRATION_LOCK = 7_318_502_113
_WRITE = "tfgov_write"  # execution option: this transaction writes (SQLite: BEGIN IMMEDIATE)
SQLITE_BUSY_TIMEOUT_S = 60
SQLITE_CACHE_KIB = 64 * 1024


class InventoryError(TfgovError):
    """The inventory database cannot be reached or used (exit 3); the URL shown is masked."""


@dataclass(frozen=True)
class Store:
    """An open, migrated inventory. ``reading()`` and ``writing()`` are one transaction each."""

    engine: Engine
    url: URL
    shown: str  # the URL as the user gave it, password masked

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        with self._transaction(write=False) as conn:
            yield conn

    @contextmanager
    def writing(self) -> Iterator[Connection]:
        """One write transaction: committed whole when the block ends, rolled back on any error."""
        with self._transaction(write=True) as conn:
            yield conn

    @contextmanager
    def _transaction(self, *, write: bool) -> Iterator[Connection]:
        from sqlalchemy.exc import SQLAlchemyError

        try:
            with self.engine.connect().execution_options(**{_WRITE: write}) as conn, conn.begin():
                yield conn
        except SQLAlchemyError as exc:
            raise _error(self.url, self.shown, "the inventory database failed", exc) from None

    def failure(self, exc: Exception, what: str = "the inventory database failed") -> InventoryError:
        """A database failure caught inside a transaction, as :meth:`writing` reports one."""
        return _error(self.url, self.shown, what, exc)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def plain_rows(conn: Connection, statement: Any) -> list[tuple[Any, ...]]:
    """A select's rows as the driver gives them (tuples; SQLite's booleans as 0 and 1): run by
    SQLAlchemy (its cache of compiled statements), fetched from the driver's cursor, for answers
    of tens of thousands of rows, where SQLAlchemy's result rows cost more than the query. A
    failure is SQLAlchemy's ``DBAPIError``, as for any other statement."""
    from sqlalchemy.exc import DBAPIError

    result: Any = conn.execute(statement)
    error = conn.dialect.loaded_dbapi.Error
    try:
        return list(result.cursor.fetchall())
    except error as exc:
        raise DBAPIError.instance(str(statement), None, exc, error, dialect=conn.dialect) from exc
    finally:
        result.close()


def _error(url: URL, shown: str, what: str, exc: Exception) -> InventoryError:
    """The driver's own reason, first line, with the password and any URL credentials masked."""
    reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    text = redact(reason[0] if reason else type(exc).__name__, [str(url.password or "")])
    return InventoryError(
        f"{what}: {shown}: {text}",
        "check that the database is up and the URL (--inventory / $TFGOV_INVENTORY_URL) is right",
    )


def _sqlite_setup(engine: Engine) -> None:
    """Foreign keys on, WAL, and transactions begun by us: ``BEGIN IMMEDIATE`` when writing, so
    that two writers queue on the busy timeout instead of one failing on a lock upgrade."""
    from sqlalchemy import event

    @event.listens_for(engine, "connect")
    def _connect(dbapi: Any, _record: Any) -> None:
        dbapi.isolation_level = None  # no implicit BEGIN from the driver: the "begin" hook below
        cursor = dbapi.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        _into_wal(cursor)
        # WAL's own recommendation: a commit waits for no fsync, the database cannot be corrupted,
        # a power cut may lose the last commits (the records they came from are still there).
        cursor.execute("PRAGMA synchronous=NORMAL")
        # 64 MiB of pages instead of 2: the links of a 10,000-image fleet are 3 million rows, and
        # an import's inserts into their indexes or a fleet query's joins would otherwise re-read
        # the same pages over and over.
        cursor.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        write = conn.get_execution_options().get(_WRITE, True)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def _into_wal(cursor: Any) -> None:
    """``PRAGMA journal_mode=WAL``, waiting its turn as long as any statement would. SQLite does
    not wait when it cannot take the lock to switch a new file's journal (no busy handler): two
    processes opening a fresh inventory at once, one failed with "database is locked" in half of
    200 rounds. So a busy switch is tried again here, up to the same timeout."""
    import sqlite3
    import time

    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_S
    pause = 0.001
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY or time.monotonic() > deadline:
                raise
        time.sleep(pause)
        pause = min(2 * pause, 0.05)


def connectable(url: URL) -> Engine:
    """The engine for ``url`` with the store's connection set-up (SQLite: the busy timeout, WAL,
    foreign keys), nothing connected yet; :func:`open_store` makes its engine here."""
    from sqlalchemy import create_engine

    if url.get_backend_name() != "sqlite":
        return create_engine(url, connect_args={"connect_timeout": 10})
    engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S})
    _sqlite_setup(engine)
    return engine


def open_store(given: str | None = None) -> Store:
    """The inventory ``given`` names (else $TFGOV_INVENTORY_URL, else the default SQLite file),
    connected and migrated to the newest schema."""
    from sqlalchemy.exc import SQLAlchemyError

    text = location.chosen(given)
    url = location.parse(text)
    shown = location.masked(text)
    if url.get_backend_name() == "sqlite":
        path = Path(str(url.database))
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InventoryError(
                f"cannot make the inventory's folder {path.parent}: {exc.strerror}",
                "choose another place with --inventory sqlite:///PATH or $TFGOV_INVENTORY_URL",
            ) from None
    engine = connectable(url)
    try:
        migrate(engine)
    except SQLAlchemyError as exc:
        engine.dispose()
        raise _error(url, shown, "cannot open the inventory", exc) from None
    except BaseException:
        engine.dispose()
        raise
    return Store(engine, url, shown)


def head() -> str:
    """The newest schema revision this tfgov-ci ships."""
    revision = _script().get_current_head()
    assert isinstance(revision, str)
    return revision


def revision(conn: Connection) -> str | None:
    """The schema revision the database is at (None: empty, never migrated)."""
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(conn).get_current_revision()


def _script() -> Any:
    from alembic.script import ScriptDirectory

    return ScriptDirectory(str(MIGRATIONS))


def migrate(engine: Engine, target: str = "head") -> None:
    """Bring the schema to ``target`` (every migration after the database's revision), in one
    transaction under a lock; nothing to do when it is there already."""
    from alembic import command
    from alembic.config import Config

    wanted = head() if target == "head" else target
    with engine.connect().execution_options(**{_WRITE: False}) as conn, conn.begin():
        current = revision(conn)
        if current == wanted:
            return  # the usual case: no lock taken, nothing written
    known = {script.revision for script in _script().walk_revisions()}
    if current is not None and current not in known:
        raise InventoryError(
            f"the inventory's schema is at revision {current}, made by a newer tfgov-ci "
            f"(this one knows up to {head()})",
            "upgrade tfgov-ci here: every pipeline writing into one inventory needs a version that "
            "knows its schema",
        )
    with engine.connect().execution_options(**{_WRITE: True}) as conn, conn.begin():
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK})")
        if revision(conn) == wanted:
            return  # another process migrated it while this one waited for the lock
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        config.attributes["connection"] = conn
        command.upgrade(config, target)
