"""``python -m tfgov_ci``: the same as the ``tfgov-ci`` command."""

from __future__ import annotations

from tfgov_ci._cli import entry

if __name__ == "__main__":  # not when a worker process imports the main module (spawn)
    raise SystemExit(entry())
