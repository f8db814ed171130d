"""Alembic's environment for the inventory: run on the connection the store hands over.

There is no alembic.ini: :func:`tfgov_ci.inventory.store.migrate` configures Alembic in code and
passes its open connection (inside its transaction and lock) as ``config.attributes["connection"]``.
"""

from __future__ import annotations

from alembic import context

connection = context.config.attributes["connection"]
context.configure(connection=connection, transaction_per_migration=False)
with context.begin_transaction():
    context.run_migrations()
