"""Which database the inventory is: ``--inventory URL``, else ``$TFGOV_INVENTORY_URL``, else the
per-user SQLite file :func:`default_path`.

The inventory holds every project's images, so its default is per user, not per project:
``$XDG_DATA_HOME/tfgov-ci/inventory.sqlite`` (``~/.local/share/tfgov-ci/inventory.sqlite``).
An organisation points every pipeline at one PostgreSQL database (``postgresql://...``, driven by
psycopg 3). A URL is only ever shown with its password masked (:func:`masked`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from tfgov_ci.errors import UsageError
from tfgov_ci.tools import redact

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

ENV = "TFGOV_INVENTORY_URL"
FILE_NAME = "inventory.sqlite"
SUPPORTED = "sqlite:///PATH or postgresql://USER:PASSWORD@HOST[:PORT]/DATABASE"


def default_path() -> Path:
    """``$XDG_DATA_HOME/tfgov-ci/inventory.sqlite`` (``~/.local/share/tfgov-ci/...``)."""
    data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data) / "tfgov-ci" / FILE_NAME


def chosen(given: str | None = None) -> str:
    """The URL as the user gave it: the option, else the environment, else the default file."""
    return given or os.environ.get(ENV) or f"sqlite:///{default_path()}"


def configured(given: str | None = None) -> str | None:
    """The option or the environment's URL; None when neither names one (the default unused)."""
    return given or os.environ.get(ENV) or None


def parse(text: str) -> URL:
    """The URL as SQLAlchemy's, with the driver made explicit (``postgresql`` is psycopg 3 here);
    a plain path is a SQLite file. :class:`UsageError` (exit 2) for anything else."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    if "://" not in text:
        text = f"sqlite:///{Path(text).expanduser().resolve()}"
    try:
        url = make_url(text)
    except (ArgumentError, ValueError):
        raise UsageError(f"not a database URL: {redact(text)}", f"give {SUPPORTED}") from None
    backend, _, driver = url.drivername.partition("+")
    if backend == "postgresql" and driver in ("", "psycopg"):
        return url.set(drivername="postgresql+psycopg")
    if backend == "sqlite" and driver in ("", "pysqlite"):
        if not url.database or url.database == ":memory:":
            raise UsageError(f"{masked(text)}: the inventory must be a file", f"give {SUPPORTED}")
        return url.set(drivername="sqlite")
    raise UsageError(f"unsupported inventory database {masked(text)}", f"give {SUPPORTED}")


SECRET_QUERY = ("password", "sslpassword")  # libpq takes a password in the query string too


def masked(url: str) -> str:
    """The URL with its credentials as ``***`` (``postgresql://***@host/db``), a password in its
    query string (``?password=``, ``sslpassword=``) included: the only way a URL reaches the user."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    secrets: list[str] = []
    try:
        parsed = make_url(url) if "://" in url else None
    except (ArgumentError, ValueError):  # unparseable: the credentials pattern alone
        parsed = None
    if parsed is not None:
        secrets += [str(parsed.password)] if parsed.password else []
        for key in SECRET_QUERY:
            value = parsed.query.get(key)
            secrets += [value] if isinstance(value, str) else list(value or ())
    scheme, sep, rest = url.partition("://")
    netloc, slash, tail = rest.partition("/")
    if sep and "@" in netloc:  # everything before the last @ is credentials, whatever it holds
        url = f"{scheme}://***@{netloc.rpartition('@')[2]}{slash}{tail}"
    return redact(url, [s for s in secrets if s])


def holds_password(url: str) -> bool:
    """Whether ``url`` carries a password, in its credentials or its query string."""
    parsed = parse(url)
    return bool(parsed.password) or any(key in parsed.query for key in SECRET_QUERY)
