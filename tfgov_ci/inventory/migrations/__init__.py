"""The inventory's Alembic migrations (``versions/``), run by :func:`tfgov_ci.inventory.store.migrate`."""
