"""A lock kept, not resolved again, when nothing its resolution read has changed (issue 15).

Re-resolving an unchanged lock asks the index about every package again (uv: a second on the
TensorFlow example, nearly all of it revalidating index pages) to write the same bytes: the
compile keeps the versions of the existing lock that still fit. So the lock stage keeps each
resolution's output in the cache, keyed by everything the compile reads that tfgov-ci can see
(requirements, the base's digest and packages, tfgov-ci's and the tool's versions, its argv, its
settings: for uv its ``UV_*`` variables, the files they name, and its configuration files), and
reuses it while it is younger than ``stages.lock.options.reuse_hours`` (default 24; 0: resolve
every time) and the lock on disk is exactly what it wrote (the lock a compile starts from is then
its own output, which it keeps). What no key sees is the index's state (a yanked version, a wheel
added to a locked version) and the network's (a proxy, ``.netrc``): that is what the window
bounds. Requirements that name other files (``-r``, ``-c``, ``--find-links``, paths, URLs) or
variables (``${VAR}``) are resolved every time. Credentials are left out of the key (a job's token
would make every key new). ``tfgov-ci lock`` and ``lock --check`` always resolve.

The cache is an input: whoever can write ``<cache>/lock/`` can make the stage keep a lock that uv
would not write. Locally that is the user; in GitLab, any pipeline of the project that shares the
cache (keep "separate caches for protected branches" on, GitLab's default, so that no merge
request's pipeline writes what a protected branch reads).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tfgov_ci._files import atomic_write_json, cache_dir

FOLDER = "lock"  # under the cache: one small file a resolution, safe to delete
REUSE_HOURS = 24.0
MAX_HOURS = 24.0 * 366  # a year: the index's state cannot be trusted for longer
OPTION = "stages.lock.options.reuse_hours"
WINDOW_HINT = "give hours as a number (24, the default; 0 resolves every run)"
# Requirement lines whose answer lies outside the file: other files, URLs, paths, variables.
_OUTSIDE = re.compile(
    r"^(-r|-c|-e|-f|--requirement|--constraint|--editable|--find-links|[./~]|file:)|://|\$\{"
)
_INDEX = re.compile(r"^(-i|--index-url|--extra-index-url)[\s=]")
_SECRET_NAME = re.compile(r"(PASSWORD|TOKEN|USERNAME|SECRET|KEYRING)", re.IGNORECASE)
_URL_CREDENTIALS = re.compile(r"(?<=://)[^/@\s]+@")


def window_problem(options: Mapping[str, Any]) -> str | None:
    """What is wrong with ``reuse_hours`` (None: it is a number of hours, 0 to a year)."""
    hours = options.get("reuse_hours", REUSE_HOURS)
    if isinstance(hours, bool) or not isinstance(hours, int | float) or not math.isfinite(hours):
        return f"{hours!r} is not a number of hours"
    if not 0 <= hours <= MAX_HOURS:
        return f"{hours!r} is not between 0 and {MAX_HOURS:g} hours"
    return None


def window(options: Mapping[str, Any]) -> float:
    """``reuse_hours`` once :func:`window_problem` has found nothing wrong with it."""
    return float(options.get("reuse_hours", REUSE_HOURS))


def self_contained(requirements: str) -> bool:
    """Whether the requirements file alone says what it asks for (no other file, URL, path or
    variable decides it), so that its bytes can stand for it in a key."""
    for raw in requirements.splitlines():
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        if _INDEX.match(line) and "${" not in line:
            continue  # an index named in the file: its bytes are in the key
        if _OUTSIDE.search(line):
            return False
    return True


def setting(name: str, value: str) -> str | None:
    """A variable's value as the key takes it: credentials left out (None: a secret's own
    variable; in a URL, its user and password)."""
    if _SECRET_NAME.search(name):
        return None
    return _URL_CREDENTIALS.sub("", value)


def key(parts: Mapping[str, str | bytes]) -> str:
    """One digest of every input, each named (so that no two inputs run together)."""
    digest = hashlib.sha256()
    for name in sorted(parts):
        value = parts[name]
        data = value.encode() if isinstance(value, str) else value
        digest.update(f"{name}\0{len(data)}\0".encode())
        digest.update(data)
    return digest.hexdigest()


def found(key: str, lock: Path, hours: float, now: datetime | None = None) -> str | None:
    """When the resolution under ``key`` was made, if it is reusable: younger than ``hours`` and
    exactly the lock on disk; else None (a damaged entry too: the resolution writes it again)."""
    entry = _path(key)
    if hours <= 0 or not entry.is_file() or not lock.is_file():
        return None
    try:
        kept = json.loads(entry.read_text())
        made = datetime.fromisoformat(kept["resolved_at"])
        age = (now or datetime.now(UTC)) - made
        fresh = timedelta(0) <= age < timedelta(hours=hours)
        text = kept["text"]
    except (OSError, ValueError, KeyError, TypeError, OverflowError):
        return None
    return str(kept["resolved_at"]) if fresh and text == lock.read_text() else None


def keep(key: str, text: str, hours: float, now: datetime | None = None) -> str | None:
    """Keep a resolution's output for the next run, and drop the entries older than the window:
    the error, if the cache cannot take it (the lock itself is written regardless; the next run
    resolves again)."""
    made = now or datetime.now(UTC)
    try:
        atomic_write_json(_path(key), {"resolved_at": made.isoformat(timespec="seconds"), "text": text})
        for old in _path(key).parent.glob("*.json"):
            if old.stat().st_mtime < time.time() - hours * 3600:
                old.unlink(missing_ok=True)
    except OSError as exc:
        return f"the resolution is not kept for the next run: {_path(key).parent}: {exc.strerror}"
    return None


def _path(key: str) -> Path:
    return cache_dir() / FOLDER / f"{key}.json"
