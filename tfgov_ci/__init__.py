"""tfgov-ci: governed TensorFlow container images from CI.

The public entry points are the ``tfgov-ci`` command (:mod:`tfgov_ci._cli`), the config loader
(:func:`tfgov_ci.config.load`), the commit context (:func:`tfgov_ci.context.discover`) and the
stage runner (:mod:`tfgov_ci.pipeline`).
"""

from __future__ import annotations

__version__ = "0.1.0"
