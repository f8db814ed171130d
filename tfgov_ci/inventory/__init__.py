"""The fleet inventory: every image in one place, a read model of build records and their evidence.

The store (:mod:`.store`) is SQLAlchemy Core on SQLite by default or PostgreSQL by URL
(:mod:`.location`), its schema (:mod:`.tables`) kept by the Alembic migrations shipped in
``migrations/`` and run on open. Records and out directories are read whole (:mod:`.evidence`) and
written one image a transaction (:mod:`.ingest`); the fleet questions (``trace``, ``which``,
``inventory list``) are modules of their own. Losing the store loses no evidence: it is rebuilt by
importing the records again.
"""
