"""One module per schema version, oldest first (Alembic loads them by ``revision`` and ``down_revision``)."""
