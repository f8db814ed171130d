"""``python -m tfgov_ci``: the same as the ``tfgov-ci`` command."""

from __future__ import annotations

from tfgov_ci._cli import main

raise SystemExit(main())
