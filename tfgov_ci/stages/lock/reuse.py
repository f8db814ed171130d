"""A lock kept, not resolved again, when nothing its resolution read has changed (issue 15).

Re-resolving an unchanged lock asks the index about every package again (uv: a second on the
TensorFlow example, nearly all of it revalidating index pages) to write the same bytes: the
compile keeps the versions of the existing lock that still fit. So the lock stage keeps each
resolution's output in the cache, keyed by everything the compile reads that tfgov-ci can see
(requirements, the base's digest and packages, the tool's binary, its argv, its settings: for uv
its ``UV_*`` variables and configuration files), and reuses it while it is younger than
``stages.lock.options.reuse_hours`` (default 24; 0: resolve every time) and the lock on disk is
exactly what it wrote (the lock a compile starts from is then its own output, which it keeps).
What no key sees is the index's state (a yanked version, a wheel added to a locked version): that
is what the window bounds. ``tfgov-ci lock --check`` always resolves.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tfgov_ci._files import atomic_write_json, cache_dir
from tfgov_ci.errors import StageInputError

FOLDER = "lock"  # under the cache: one small file a resolution, safe to delete
REUSE_HOURS = 24.0


def window(options: Mapping[str, Any]) -> float:
    """``stages.lock.options.reuse_hours``, checked: hours a resolution is reused (0: never)."""
    hours = options.get("reuse_hours", REUSE_HOURS)
    if isinstance(hours, bool) or not isinstance(hours, int | float) or hours < 0:
        raise StageInputError(
            f"stages.lock.options.reuse_hours: {hours!r} is not a number of hours",
            "give hours as a number (24, the default; 0 resolves every run)",
        )
    return float(hours)


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
    exactly the lock on disk; else None."""
    entry = _path(key)
    if hours <= 0 or not entry.is_file() or not lock.is_file():
        return None
    try:
        kept = json.loads(entry.read_text())
        made = datetime.fromisoformat(kept["resolved_at"])
        text = kept["text"]
    except (OSError, ValueError, KeyError, TypeError):
        return None  # a damaged entry is a cache miss; the resolution writes it again
    age = (now or datetime.now(UTC)) - made
    if not timedelta(0) <= age < timedelta(hours=hours) or text != lock.read_text():
        return None
    return str(kept["resolved_at"])


def keep(key: str, text: str, now: datetime | None = None) -> str | None:
    """Keep a resolution's output for the next run: the error, if the cache cannot take it (the
    lock itself is written regardless; the next run resolves again)."""
    made = (now or datetime.now(UTC)).isoformat(timespec="seconds")
    try:
        atomic_write_json(_path(key), {"resolved_at": made, "text": text})
    except OSError as exc:
        return f"the resolution is not kept for the next run: {_path(key).parent}: {exc.strerror}"
    return None


def _path(key: str) -> Path:
    return cache_dir() / FOLDER / f"{key}.json"
