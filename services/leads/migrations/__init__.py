"""Alembic migrations of the leads store; `percept.leads.store.migrate` runs them."""
