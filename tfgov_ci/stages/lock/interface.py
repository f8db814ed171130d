"""What a lock backend promises: a hashed requirements lock for the image's Python and platform,
with the base's own packages as constraints, written whole or not at all."""

from __future__ import annotations

from tfgov_ci.errors import TfgovError


class LockStageError(TfgovError):
    """Requirements that cannot be locked (unsatisfiable, unhashable): exit 2."""

    exit_code = 2
