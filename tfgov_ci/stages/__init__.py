"""Stage backends: one folder a stage, ``interface.py`` plus one module a backend.

The stage table is :data:`tfgov_ci.pipeline.STAGES`; backends register through the
``tfgov_ci.backends`` entry-point group (pyproject.toml), built-ins exactly as plug-ins do.
"""
