"""What a publish backend promises."""

from __future__ import annotations

from tfgov_ci.errors import GateFailed, ToolError


class PublishError(ToolError):
    """The registry could not be reached, refused us, or failed mid-push (exit 3)."""


class TagConflict(GateFailed):
    """A commit tag already points at another digest: tags are immutable (exit 1)."""
