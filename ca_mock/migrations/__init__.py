"""Alembic migrations of the mock CA's store (``ca_mock.db.migrate``)."""
